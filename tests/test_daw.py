"""Into the DAW: the Ableton Live Drum Rack (drumlayer/kit/ableton.py) against the Live presets
it is made from, the grooves as MIDI files (drumlayer/kit/midi.py) read back with mido against
the groove's audio, and one General MIDI map behind every format."""

import gzip
import importlib.util
import io
import json
import os
import xml.etree.ElementTree as ET

import mido
import numpy as np
import pytest
import soundfile as sf

from drumlayer.data import categories
from drumlayer.kit import export, groove, midi, velocity

# the General MIDI drum map, by hand (GM1 percussion key map)
GM = {"kick": 36, "rim": 37, "snare": 38, "clap": 39, "closed-hat": 42, "tom": 45,
      "open-hat": 46, "cymbal": 49}
# what a Live 11 Instrument Rack lacks of a Drum Rack's parameters (a blank Instrument Rack
# saved by Live 11.0 has every other child of the blank Drum Rack, in the same order)
DRUM_ONLY = {"IsMidiSectionVisible", "AreSendsVisible", "ArePadsVisible", "PadScrollPosition",
             "DrumPadsListWrapper", "VisibleDrumPadsListWrapper"}
RATE = 48000


def live_template(name: str) -> ET.Element:
    """A file of the abletondrumrack package (the dev extra installs it): presets Live saved."""
    spec = importlib.util.find_spec("abletondrumrack")
    path = os.path.join(os.path.dirname(spec.origin), "ableton_files", name)
    return ET.parse(path).getroot()


def synthetic_pads(cats=("kick", "snare", "closed-hat", "open-hat"), layers=3, rr=2):
    """Pads of noise bursts of different lengths (a pad's layers differ in length)."""
    rng = np.random.default_rng(0)
    out = {}
    for i, c in enumerate(cats):
        n = 3000 + 500 * i
        audio = rng.standard_normal((layers, rr, n)).astype(np.float32) * 0.1
        out[c] = export.pad([{"lovel": lo, "hivel": hi} for lo, hi in velocity.ranges(layers)],
                            [], audio, 22050, [])
    return out


def same_shape(t: ET.Element, e: ET.Element, where: str, free: set[str]) -> None:
    """e has t's tag, t's attributes (a Value may differ only at the tags in free) and children
    of the same tags in the same order, recursively."""
    assert e.tag == t.tag, where
    for k, v in t.attrib.items():
        if not (k == "Value" and t.tag in free) and k != "Id":
            assert e.get(k) == v, f"{where}/{t.tag}@{k}: {e.get(k)!r} != {v!r}"
    assert [c.tag for c in e] == [c.tag for c in t], where
    for tc, ec in zip(t, e, strict=True):
        same_shape(tc, ec, f"{where}/{t.tag}", free)


def read_adg(path) -> ET.Element:
    with gzip.open(path) as f:
        head = f.read(60)
    assert head.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(gzip.decompress(open(path, "rb").read()))


def test_the_vendored_live_presets_are_the_ones_live_saved():
    for ours, theirs in (("drum_rack.xml", "blank_drum_rack"), ("drum_cell.xml",
                                                                "able_drum_item.xml")):
        a = ET.tostring(ET.parse(os.path.join(export.ableton.TEMPLATES, ours)).getroot())
        assert a == ET.tostring(live_template(theirs)), ours


def test_the_drum_rack_is_live_s_own_structure_with_a_cell_per_pad_and_velocity_chains(
        tmp_path):
    pads = synthetic_pads()
    paths = export.write(pads, str(tmp_path / "kit"), name="my kit")
    root = read_adg(paths["ableton"])
    rack_t, cell_t = live_template("blank_drum_rack"), live_template("able_drum_item.xml")
    # the rack: the blank Drum Rack's every element and attribute, its name and cells added
    cells = root.find("GroupDevicePreset/BranchPresets")
    bare = ET.fromstring(ET.tostring(root))
    bare.find("GroupDevicePreset/BranchPresets").clear()
    same_shape(rack_t, bare, "", {"UserName"})
    assert root.find(".//DrumGroupDevice/UserName").get("Value") == "my kit"
    assert root.get("Creator", "").startswith("Ableton Live 11")
    simpler_free = {"Name", "SampleEnd", "End", "RelativePathType", "RelativePath", "Path",
                    "OriginalFileSize", "OriginalCrc", "LastModDate", "BrowserContentPath",
                    "DefaultDuration", "DefaultSampleRate", "Manual"}
    drum_t = rack_t.find("GroupDevicePreset/Device/DrumGroupDevice")
    adg_dir = os.path.dirname(paths["ableton"])
    seen = {}
    for cell in cells:
        assert cell.tag == "DrumBranchPreset"
        name = cell.find("Name").get("Value")
        pad = {categories.PAD_NAMES[c]: c for c in pads}[name]  # the pad's name on the cell
        note = 128 - int(cell.find("ZoneSettings/ReceivingNote").get("Value"))
        seen[pad] = note
        choke = cell.find("ZoneSettings/ChokeGroup").get("Value")
        assert choke == ("1" if pad in ("closed-hat", "open-hat") else "0"), pad
        # the cell: the template's, holding an Instrument Rack
        outer = ET.fromstring(ET.tostring(cell))
        outer.find("DevicePresets").clear()
        t = ET.fromstring(ET.tostring(cell_t))
        t.find("DevicePresets").clear()
        same_shape(t, outer, "cell", {"Name", "ReceivingNote", "ChokeGroup",
                                      "BrowserContentPath"})
        group = cell.find("DevicePresets/GroupDevicePreset")
        inst = group.find("Device/InstrumentGroupDevice")
        assert [c.tag for c in inst] == [c.tag for c in drum_t if c.tag not in DRUM_ONLY]
        chains = group.find("BranchPresets")
        zones = []
        for chain in chains:
            assert chain.tag == "InstrumentBranchPreset"
            z = chain.find("ZoneSettings")
            assert [c.tag for c in z] == ["KeyRange", "VelocityRange"]
            v = z.find("VelocityRange")
            lo, hi = int(v.find("Min").get("Value")), int(v.find("Max").get("Value"))
            assert (v.find("CrossfadeMin").get("Value"), v.find("CrossfadeMax").get("Value")) \
                == (str(lo), str(hi))  # no crossfades: a hit plays one layer
            assert z.find("KeyRange/Min").get("Value") == "0"
            assert z.find("KeyRange/Max").get("Value") == "127"
            zones.append((lo, hi))
            sim = chain.find("DevicePresets/AbletonDevicePreset")
            same_shape(cell_t.find("DevicePresets/AbletonDevicePreset"), sim, "simpler",
                       simpler_free)
            assert sim.find(".//Globals/PlaybackMode").get("Value") == "1"  # one-shot
            ref = sim.find(".//MultiSamplePart/SampleRef")
            rel = ref.find("FileRef/RelativePath").get("Value")
            assert ref.find("FileRef/RelativePathType").get("Value") == "1"
            assert not os.path.isabs(rel)
            wav = os.path.join(adg_dir, rel)
            info = sf.info(wav)  # the sample exists next to the preset, as it says
            assert int(ref.find("DefaultDuration").get("Value")) == info.frames
            assert int(ref.find("DefaultSampleRate").get("Value")) == info.samplerate
            assert int(ref.find("FileRef/OriginalFileSize").get("Value")) == os.path.getsize(wav)
            assert int(sim.find(".//MultiSamplePart/SampleEnd").get("Value")) == info.frames - 1
            # the layer's own sample: the zone's layer, its first round robin
            layer = velocity.ranges(3).index((lo, hi)) + 1
            assert os.path.basename(rel) == f"{pad}_v{layer}_1.wav"
        covered = sorted(v for lo, hi in zones for v in range(lo, hi + 1))
        assert covered == list(range(1, 128)), pad  # no gap, no overlap
    assert seen == {c: GM[c] for c in pads}


def test_names_xml_and_live_cannot_take_round_trip(tmp_path):
    name = 'Kit <"A&B"> \'808\'\x01\x1f é 🥁'
    paths = export.write(synthetic_pads(("kick",), layers=1, rr=1), str(tmp_path / "k"),
                         name=name)
    clean = 'Kit <"A&B"> \'808\' é 🥁'
    assert read_adg(paths["ableton"]).find(".//DrumGroupDevice/UserName").get("Value") == clean
    assert ET.parse(paths["hydrogen"]).getroot().find(
        "{http://www.hydrogen-music.org/drumkit}name").text == clean


def test_a_pad_on_no_gm_note_is_refused_by_name_before_rendering(tmp_path):
    pads = synthetic_pads(("kick",), layers=1, rr=1)
    pads["other"] = pads["kick"]
    with pytest.raises(categories.NoGmNote, match="'other' has no General MIDI note"):
        export.write(pads, str(tmp_path / "k"))
    assert not os.path.exists(tmp_path / "k")
    with pytest.raises(categories.NoGmNote, match="'cowbell'"):
        midi.pattern_midi([(0, "cowbell", 100)], 120.0, 100, "x")


def clicks(pads, layers=2):
    """Voices whose every sample is a click at its first sample."""
    a = np.zeros((layers, 1, 100), np.float32)
    a[:, :, 0] = 1.0
    return {p: (velocity.ranges(layers), a) for p in pads}


@pytest.mark.parametrize("name", list(groove.PATTERNS))
@pytest.mark.parametrize("tempo", [87.0, 100.0, 174.5])
def test_the_groove_midi_reads_back_as_the_groove_and_its_hits_are_the_wav_s(name, tempo):
    pads = list(GM)
    f = mido.MidiFile(file=io.BytesIO(midi.groove_midi(name, tempo, pads)))
    assert f.type == 0 and len(f.tracks) == 1
    tempos = [m.tempo for m in f.tracks[0] if m.type == "set_tempo"]
    assert len(tempos) == 1 and 60e6 / tempos[0] == pytest.approx(tempo, rel=1e-5)
    sig = [m for m in f.tracks[0] if m.type == "time_signature"]
    assert [(m.numerator, m.denominator) for m in sig] == [(4, 4)]
    bar = 4 * 60.0 / tempo
    assert f.length == pytest.approx(bar, abs=1e-4)  # one bar: the DAW loops it there
    t, hits = 0.0, []
    for m in f:  # mido's playback: seconds from the file's own tempo
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            assert m.channel == 9  # channel 10
            hits.append((t * RATE, m.note, m.velocity))
    want = sorted((GM[c], s * bar / 16 * RATE, v)  # by hand: a sixteenth is a 16th of a bar
                  for c, notes in groove.PATTERNS[name].items() for s, v in notes)
    got = sorted((n, at, v) for at, n, v in hits)
    assert [(n, v) for n, _, v in got] == [(n, v) for n, _, v in want]
    np.testing.assert_allclose([at for _, at, _ in got], [at for _, at, _ in want], atol=0.5)
    # every note on a hit of the groove's audio, within 1 ms at 48 kHz
    for pad in {c for c in groove.PATTERNS[name]}:
        x = groove.render(name, tempo, clicks([pad]), RATE)
        onsets = np.flatnonzero(np.abs(x) > 1e-6)
        notes = sorted(at for at, n, _ in hits if n == GM[pad])
        assert len(onsets) == len(notes)
        assert np.max(np.abs(onsets - np.array(notes))) <= 0.001 * RATE


def test_notes_of_one_pad_never_overlap_and_each_has_its_off():
    data = midi.pattern_midi([(0, "kick", 100), (10, "kick", 90), (10, "snare", 80)], 120.0,
                             480, "x")
    on, now = {}, 0
    for m in mido.MidiFile(file=io.BytesIO(data)).tracks[0]:
        now += m.time
        if m.type == "note_on":
            assert m.note not in on, "a note on before its note off"
            on[m.note] = now
        elif m.type == "note_off":
            assert now > on.pop(m.note)
    assert not on and now == 480
    with pytest.raises(ValueError, match="inside the pattern"):
        midi.pattern_midi([(480, "kick", 100)], 120.0, 480, "x")


def test_every_format_takes_its_notes_from_the_one_table(tmp_path, monkeypatch):
    """Move the kick to GM 35 (acoustic bass drum) in the one table: every format follows."""
    monkeypatch.setitem(categories.GM_NOTES, "kick", 35)
    want = {"kick": 35, "snare": 38}
    paths = export.write(synthetic_pads(("kick", "snare"), layers=2, rr=1),
                         str(tmp_path / "k"), groove="rock", tempo=100)
    sfz = open(paths["sfz"]).read()
    assert {int(k) for k in __import__("re").findall(r"\bkey=(\d+)", sfz)} == {35, 38}
    ds = ET.parse(paths["decentsampler"]).getroot()
    assert {int(s.get("rootNote")) for s in ds.iter("sample")} == {35, 38}
    ns = "{http://www.hydrogen-music.org/drumkit}"
    hyd = ET.parse(paths["hydrogen"]).getroot()
    assert {i.find(f"{ns}name").text: int(i.find(f"{ns}midiOutNote").text)
            for i in hyd.iter(f"{ns}instrument")} == {"Kick": 35, "Snare": 38}
    adg = read_adg(paths["ableton"])
    assert {c.find("Name").get("Value"): 128 - int(c.find("ZoneSettings/ReceivingNote")
                                                   .get("Value"))
            for c in adg.find("GroupDevicePreset/BranchPresets")} == {"Kick": 35, "Snare": 38}
    notes = {m.note for m in mido.MidiFile(paths["groove_midi"]) if m.type == "note_on"}
    assert notes == {35, 38}
    recipes = json.load(open(paths["recipes"]))
    assert {c: r["gm_key"] for c, r in recipes.items()} == want
