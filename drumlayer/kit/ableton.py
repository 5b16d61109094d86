"""A kit as an Ableton Live Drum Rack preset (`kit.adg`: gzip-compressed XML).

Every element comes from presets saved by Live 11 (`live/`: the blank Drum Rack and the drum
cell that the MIT-licensed `abletondrumrack` package ships, its licence beside them): the rack is
the blank Drum Rack; each pad is a drum cell (a DrumBranchPreset) on its General MIDI note, named
after the pad, holding an Instrument Rack whose chains are the pad's velocity layers. Each chain
is the cell's chain with its zone set to the layer's velocities (the zones cover 1-127 without
gaps), holding the cell's Simpler in one-shot mode playing the layer's sample (its first round
robin: Live's Simpler plays one sample). The Instrument Rack is the Drum Rack with the six
parameters that only a Drum Rack has taken out, as Live 11 saves it.

Samples are named relative to the preset (`samples/...`, RelativePathType 1: relative to the
document), so the folder can be moved. Live stores a cell's note as 128 - note (the cells of
its default kit start at 92 = C1, 36). The closed and the open hat share choke group 1.
"""

from __future__ import annotations

import copy
import gzip
import os
import re
import xml.etree.ElementTree as ET

from drumlayer.data.categories import PAD_NAMES, gm_note

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "live")
DRUM_ONLY = ("IsMidiSectionVisible", "AreSendsVisible", "ArePadsVisible", "PadScrollPosition",
             "DrumPadsListWrapper", "VisibleDrumPadsListWrapper")
CHOKE_GROUPS = {"closed-hat": 1, "open-hat": 1}
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(s: str) -> str:
    """s without the characters XML 1.0 cannot hold (control characters, lone surrogates)."""
    return _NOT_XML.sub("", s)


def template(name: str) -> ET.Element:
    """The root of a Live template in `live/` (drum_rack.xml, drum_cell.xml)."""
    return ET.parse(os.path.join(TEMPLATES, name)).getroot()


def receiving_note(note: int) -> int:
    """A drum cell's ReceivingNote for a MIDI note (Live stores 128 - note)."""
    return 128 - note


def _set(root: ET.Element, path: str, value, index: int | None = None) -> None:
    """Set the Value attribute of the element at path (of every match, or of match `index`)."""
    found = root.findall(path)
    if not found:
        raise KeyError(f"the Live template has no {path}")
    for e in (found if index is None else [found[index]]):
        e.set("Value", str(value))


def _range(tag: str, lo: int, hi: int) -> ET.Element:
    e = ET.Element(tag)
    for k, v in (("Min", lo), ("Max", hi), ("CrossfadeMin", lo), ("CrossfadeMax", hi)):
        ET.SubElement(e, k, Value=str(v))
    return e


def simpler(cell: ET.Element, path: str, frames: int, rate: int, size: int) -> ET.Element:
    """The template cell's Simpler device preset, playing the sample at path (relative to the
    preset; frames long at rate, size bytes) one-shot at 0 dB, velocity not scaling its volume
    (each layer's sample holds its level)."""
    preset = copy.deepcopy(cell.find("DevicePresets/AbletonDevicePreset"))
    s = preset.find("Device/OriginalSimpler")
    _set(s, "Globals/PlaybackMode", 1)  # one-shot
    _set(s, "VolumeAndPan/Volume/Manual", 0)
    _set(s, "VolumeAndPan/VolumeVelScale/Manual", 0)
    part = s.find(".//MultiSamplePart")
    _set(part, "Name", os.path.splitext(os.path.basename(path))[0])
    for p in ("SampleEnd", "SustainLoop/End", "ReleaseLoop/End"):
        _set(part, p, frames - 1)
    ref = part.find("SampleRef")
    _set(ref, "FileRef/RelativePathType", 1)
    _set(ref, "FileRef/RelativePath", path)
    _set(ref, "FileRef/Path", path)
    _set(ref, "FileRef/OriginalFileSize", size)
    _set(ref, "FileRef/OriginalCrc", 0)
    _set(ref, "LastModDate", 0)
    _set(ref, ".//OriginalFileRef/FileRef/Path", path)
    _set(ref, ".//BrowserContentPath", "")
    _set(ref, "DefaultDuration", frames)
    _set(ref, "DefaultSampleRate", rate)
    return preset


def instrument_rack(rack: ET.Element) -> ET.Element:
    """An empty Instrument Rack's GroupDevicePreset, from the Drum Rack's."""
    g = copy.deepcopy(rack.find("GroupDevicePreset"))
    dev = g.find("Device/DrumGroupDevice")
    dev.tag = "InstrumentGroupDevice"
    for tag in DRUM_ONLY:
        dev.remove(dev.find(tag))
    for ref in g.iter("DeviceId"):
        ref.set("Name", "InstrumentGroupDevice")
    for fr in g.iter("FileRef"):
        for child in ("RelativePath", "Path"):
            e = fr.find(child)
            e.set("Value", e.get("Value").replace("Drum Racks/Drum Rack",
                                                  "Instrument Racks/Instrument Rack"))
    return g


def drum_rack(name: str, pads: dict[str, list[dict]]) -> bytes:
    """The .adg (gzip, deterministic) of a kit. pads: {pad category: its velocity layers, softest
    first: [{'lovel', 'hivel', 'path' (relative to the preset), 'frames', 'rate', 'size'}]}."""
    rack, cell_t = template("drum_rack.xml"), template("drum_cell.xml")
    inner_t = instrument_rack(rack)
    _set(rack, "GroupDevicePreset/Device/DrumGroupDevice/UserName", xml_text(name))
    cells = rack.find("GroupDevicePreset/BranchPresets")
    for i, (pad, layers) in enumerate(pads.items()):
        note = gm_note(pad)
        cell = copy.deepcopy(cell_t)
        cell.set("Id", str(i))
        _set(cell, "Name", PAD_NAMES[pad])
        _set(cell, "SourceContext//BrowserContentPath", "")
        _set(cell, "ZoneSettings/ReceivingNote", receiving_note(note))
        _set(cell, "ZoneSettings/SendingNote", 60)
        _set(cell, "ZoneSettings/ChokeGroup", CHOKE_GROUPS.get(pad, 0))
        inner = copy.deepcopy(inner_t)
        _set(inner, "Device/InstrumentGroupDevice/UserName", PAD_NAMES[pad])
        chains = inner.find("BranchPresets")
        for j, lay in enumerate(layers):
            chain = copy.deepcopy(cell_t)
            chain.tag = "InstrumentBranchPreset"
            chain.set("Id", str(j))
            _set(chain, "Name", f"{PAD_NAMES[pad]} {lay['lovel']}-{lay['hivel']}")
            _set(chain, "SourceContext//BrowserContentPath", "")
            devices = chain.find("DevicePresets")
            devices.clear()
            devices.append(simpler(cell_t, lay["path"], lay["frames"], lay["rate"], lay["size"]))
            zones = chain.find("ZoneSettings")
            zones.clear()
            zones.append(_range("KeyRange", 0, 127))
            zones.append(_range("VelocityRange", lay["lovel"], lay["hivel"]))
            chains.append(chain)
        devices = cell.find("DevicePresets")
        devices.clear()
        devices.append(inner)
        cells.append(cell)
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(rack, encoding="unicode")
    return gzip.compress(xml.encode("utf-8"), mtime=0)
