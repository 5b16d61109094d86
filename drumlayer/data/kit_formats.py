"""Drum kits as producers own them, read into candidates: Hydrogen drumkit.xml, SFZ, SF2.
"""

from __future__ import annotations

import os
import re
import struct
import xml.etree.ElementTree as ET

import numpy as np

from drumlayer.data.candidates import Candidate, Sf2Span
from drumlayer.data.categories import category_from_name, classify, normalise_name


def _strip_ns(tree: ET.Element) -> ET.Element:
    for el in tree.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return tree


def parse_hydrogen(path: str) -> list[Candidate]:
    """Hydrogen drumkit.xml -> one candidate per instrument velocity layer."""
    root = _strip_ns(ET.parse(path).getroot())
    kit = (root.findtext("name") or os.path.basename(os.path.dirname(path))).strip()
    licence = (root.findtext("license") or "").strip()
    base = os.path.dirname(path)
    out = []
    for inst in root.iter("instrument"):
        name = (inst.findtext("name") or "").strip()
        layers = list(inst.iter("layer"))
        files = [(lay.findtext("filename"), lay.findtext("min"), lay.findtext("max"),
                  _number(lay, "gain")) for lay in layers]
        if not layers and inst.findtext("filename"):
            files = [(inst.findtext("filename"), None, None, 1.0)]
        # what Hydrogen plays a layer at: its gain, the instrument's gain and its volume
        level = _number(inst, "gain") * _number(inst, "volume")
        cat = classify(name)
        for fname, lo, hi, gain in files:
            if not fname:
                continue
            layer = f"{float(lo):.2f}-{float(hi):.2f}" if lo and hi else ""
            out.append(Candidate(
                file=os.path.join(base, fname.strip()), kit=kit, instrument=name,
                category=cat if name else classify(fname), source_format="hydrogen",
                licence=licence, layer=layer, gain=gain * level,
            ))
    return out


def _number(el: ET.Element, tag: str, default: float = 1.0) -> float:
    """A child's number (Hydrogen's gains and volume), default where it is missing, not a
    number or negative."""
    try:
        v = float(el.findtext(tag) or default)
    except ValueError:
        return default
    return v if v >= 0 and v == v and v != float("inf") else default


_SFZ_NOTE = re.compile(r"^([a-gA-G])([#b]?)(-?\d+)$")
_NOTE_BASE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def sfz_key(value: str | None) -> int | None:
    """SFZ key: a MIDI number or a note name with c4 = 60 ('c#3' -> 49)."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    m = _SFZ_NOTE.match(value)
    if not m:
        return None
    semis = _NOTE_BASE[m.group(1).lower()] + {"#": 1, "b": -1, "": 0}[m.group(2)]
    return (int(m.group(3)) + 1) * 12 + semis


def parse_sfz_text(text: str) -> list[dict[str, str]]:
    """SFZ text -> the opcodes of each <region>, with <control>/<global>/<master>/<group>
    opcodes inherited."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    levels = {"control": {}, "global": {}, "master": {}, "group": {}}
    order = ["control", "global", "master", "group"]
    regions, current = [], None
    for header, body in re.findall(r"<(\w+)>([^<]*)", text):
        ops = dict(re.findall(r"(\w+)=(.*?)(?=\s+\w+=|\s*$)", body.strip(), flags=re.S))
        ops = {k: v.strip() for k, v in ops.items()}
        if header in levels:
            # A new level resets the levels below it.
            for lower in order[order.index(header):]:
                levels[lower] = {}
            levels[header] = ops
            current = None
        elif header == "region":
            current = {}
            for lvl in order:
                current.update(levels[lvl])
            current.update(ops)
            regions.append(current)
    return regions


def parse_sfz(path: str) -> list[Candidate]:
    """An SFZ instrument -> one candidate per region with a sample."""
    with open(path, encoding="utf-8", errors="replace") as f:
        regions = parse_sfz_text(f.read())
    base = os.path.dirname(path)
    kit = os.path.splitext(os.path.basename(path))[0]
    keys = {sfz_key(r.get("key") or r.get("lokey")) for r in regions}
    is_kit = len(keys - {None}) >= 3  # a kit maps drums to keys; one instrument needs not
    out = []
    for r in regions:
        sample = r.get("sample")
        if not sample:
            continue
        sample = sample.replace("\\", "/")
        if sample.startswith("*"):
            continue  # built-in generators (*sine, *noise) are not recordings
        file = os.path.normpath(os.path.join(base, r.get("default_path", "").replace("\\", "/"),
                                             sample))
        key = sfz_key(r.get("key") or r.get("pitch_keycenter") or r.get("lokey"))
        stem = os.path.splitext(os.path.basename(sample))[0]
        name = r.get("region_label") or r.get("group_label") or stem
        cat = classify(r.get("region_label", ""), r.get("group_label", ""), stem,
                       key=key if is_kit else None)
        if cat == "other" and not is_kit:
            cat = classify(kit)
        layer = f"{r['lovel']}-{r['hivel']}" if "lovel" in r and "hivel" in r else ""
        start, last = _frame(r.get("offset")), _frame(r.get("end"))
        out.append(Candidate(file=file, kit=kit, instrument=name, category=cat,
                             source_format="sfz", key=key, layer=layer, start=start or 0,
                             end=None if last is None else last + 1))
    return out


def _frame(value: str | None) -> int | None:
    """An SFZ sample position (offset, end: frames, end inclusive), None where it is missing or
    not a whole number of frames >= 0."""
    try:
        v = int((value or "").strip())
    except ValueError:
        return None
    return v if v >= 0 else None


_KEY_RANGE, _VEL_RANGE, _INSTRUMENT, _SAMPLE_ID = 43, 44, 41, 53
_COARSE, _FINE, _SCALE, _ROOT = 51, 52, 56, 58
_PHDR = np.dtype([("name", "S20"), ("preset", "<u2"), ("bank", "<u2"), ("bag", "<u2"),
                  ("library", "<u4"), ("genre", "<u4"), ("morph", "<u4")])
_BAG = np.dtype([("gen", "<u2"), ("mod", "<u2")])
_GEN = np.dtype([("oper", "<u2"), ("amount", "<i2")])
_INST = np.dtype([("name", "S20"), ("bag", "<u2")])
_SHDR = np.dtype([("name", "S20"), ("start", "<u4"), ("end", "<u4"), ("loop_start", "<u4"),
                  ("loop_end", "<u4"), ("rate", "<u4"), ("pitch", "u1"), ("correction", "i1"),
                  ("link", "<u2"), ("type", "<u2")])


def _riff_chunks(f, end: int):
    """Yield (id, data_offset, size) of the chunks between the file's position and `end`."""
    while f.tell() + 8 <= end:
        head = f.read(8)
        if len(head) < 8:
            return
        cid, size = struct.unpack("<4sI", head)
        off = f.tell()
        yield cid, off, size
        f.seek(off + size + (size & 1))


def _zones(bags: np.ndarray, gens: np.ndarray, first: int, last: int) -> list[dict[int, int]]:
    """Zones [first, last) of a preset or instrument -> list of {generator: raw amount}."""
    zones = []
    for b in range(first, last):
        z = {}
        for g in gens[bags[b]["gen"] : bags[b + 1]["gen"]]:
            z[int(g["oper"])] = int(g["amount"])
        zones.append(z)
    return zones


def _split(zones: list[dict[int, int]], terminal: int) -> tuple[dict[int, int], list[dict]]:
    """Separate the global zone (first zone without the terminal generator) from the rest."""
    if zones and terminal not in zones[0]:
        return zones[0], [z for z in zones[1:] if terminal in z]
    return {}, [z for z in zones if terminal in z]


def _range(amount: int | None) -> tuple[int, int]:
    if amount is None:
        return 0, 127
    raw = amount & 0xFFFF
    return raw & 0xFF, raw >> 8


_KIT_PRESET = re.compile(r"\b(drums?|drum ?kit|kit|perc|percussion|[6-9]0[6-9])\b")


def _drum_preset(name: str, bank: int, font_has_percussion: bool, sample_names) -> str | None:
    """How a preset holds drums: 'gm' (a kit on the General MIDI key map: bank 128, or, in a
    font without one, a normal preset named like a kit), 'sounds' (in a font without bank 128,
    a normal preset whose name or most sample names say drums, as soundfonts made for one drum
    sound or a few are: one sound per zone, at its root key), or None (melodic: skipped). A
    general soundfont's normal presets stay melodic even when named 'Synth Drum'."""
    if bank == 128:
        return "gm"
    if font_has_percussion:
        return None
    if _KIT_PRESET.search(normalise_name(name)):
        return "gm"
    if category_from_name(name) not in (None, "other"):
        return "sounds"
    cats = [category_from_name(s) for s in sample_names]
    if cats and sum(c not in (None, "other") for c in cats) * 2 >= len(cats):
        return "sounds"
    return None


def parse_sf2(path: str) -> list[Candidate]:
    """SF2 soundfont -> one candidate per drum preset, key and velocity layer.

    Percussion presets (bank 128), and normal presets named like a kit, map keys on the General
    MIDI drum map. A normal preset whose name or sample names say it holds drums (a soundfont
    made for one drum sound or a few, as many are) gives one candidate per zone, at the sample's
    root key. Melodic presets are skipped. Stereo pairs play together and become one candidate;
    the pitch a key plays at (root key, coarse/fine tuning, scale tuning) becomes the span's
    playback rate.
    """
    chunks: dict[bytes, tuple[int, int]] = {}
    info: dict[bytes, str] = {}
    with open(path, "rb") as f:
        riff, size, form = struct.unpack("<4sI4s", f.read(12))
        if riff != b"RIFF" or form != b"sfbk":
            raise ValueError(f"{path}: not an SF2 soundfont (RIFF form {form!r})")
        for cid, off, sz in _riff_chunks(f, 8 + size):
            if cid != b"LIST":
                continue
            f.seek(off)
            kind = f.read(4)
            for sub, soff, ssz in _riff_chunks(f, off + sz):
                chunks[sub] = (soff, ssz)
                if kind == b"INFO" and sub in (b"INAM", b"ICOP"):
                    pos = f.tell()
                    f.seek(soff)
                    info[sub] = f.read(ssz).split(b"\0")[0].decode("latin-1").strip()
                    f.seek(pos)
            f.seek(off + sz + (sz & 1))
        tables = {}
        for name, dt in ((b"phdr", _PHDR), (b"pbag", _BAG), (b"pgen", _GEN), (b"inst", _INST),
                         (b"ibag", _BAG), (b"igen", _GEN), (b"shdr", _SHDR)):
            if name not in chunks:
                raise ValueError(f"{path}: SF2 lacks the {name.decode()} chunk")
            off, sz = chunks[name]
            f.seek(off)
            tables[name] = np.frombuffer(f.read(sz - sz % dt.itemsize), dtype=dt)
    if b"smpl" not in chunks:
        raise ValueError(f"{path}: SF2 lacks sample data (smpl chunk)")
    data_offset = chunks[b"smpl"][0]
    phdr, pbag, pgen = tables[b"phdr"], tables[b"pbag"], tables[b"pgen"]
    inst, ibag, igen, shdr = tables[b"inst"], tables[b"ibag"], tables[b"igen"], tables[b"shdr"]
    font = info.get(b"INAM") or os.path.splitext(os.path.basename(path))[0]
    licence = info.get(b"ICOP", "")
    out = []
    has_percussion = bool(np.any(phdr["bank"][:-1] == 128))
    sample_names = [n.split(b"\0")[0].decode("latin-1").strip() for n in shdr["name"][:-1]]
    for p in range(len(phdr) - 1):  # the last record is the terminal 'EOP'
        pname = phdr[p]["name"].split(b"\0")[0].decode("latin-1").strip()
        kit = f"{font} / {pname}"
        pglob, pzones = _split(_zones(pbag, pgen, phdr[p]["bag"], phdr[p + 1]["bag"]),
                               _INSTRUMENT)
        kind = _drum_preset(pname, int(phdr[p]["bank"]), has_percussion, sample_names)
        if kind is None:
            continue
        layers: dict[tuple[int, tuple[int, int]], list[Sf2Span]] = {}
        names: dict[tuple[int, tuple[int, int]], str] = {}
        for pz in pzones:
            i = pz[_INSTRUMENT]
            if not 0 <= i < len(inst) - 1:
                continue
            pk = _range(pz.get(_KEY_RANGE, pglob.get(_KEY_RANGE)))
            ptune = (pz.get(_COARSE, pglob.get(_COARSE, 0)) * 100
                     + pz.get(_FINE, pglob.get(_FINE, 0)))
            iglob, izones = _split(_zones(ibag, igen, inst[i]["bag"], inst[i + 1]["bag"]),
                                   _SAMPLE_ID)
            for iz in izones:
                g = {**iglob, **iz}
                s = g[_SAMPLE_ID]
                if not 0 <= s < len(shdr) - 1 or shdr[s]["type"] & 0x8000:
                    continue  # out of range, or a ROM sample with no data in the file
                ik = _range(g.get(_KEY_RANGE))
                vel = _range(g.get(_VEL_RANGE))
                sh = shdr[s]
                root = g.get(_ROOT, -1)
                root = root if root >= 0 else (int(sh["pitch"]) if sh["pitch"] <= 127 else 60)
                lo, hi = max(pk[0], ik[0]), min(pk[1], ik[1])
                if kind == "gm":
                    keys = range(max(lo, 27), min(hi, 87) + 1)
                else:  # the sound itself: at its root key (other keys only re-pitch it)
                    keys = [min(max(root, lo), hi)] if lo <= hi else []
                for key in keys:
                    cents = ((key - root) * g.get(_SCALE, 100) + g.get(_COARSE, 0) * 100
                             + g.get(_FINE, 0) + ptune + int(sh["correction"]))
                    span = Sf2Span(data_offset, int(sh["start"]), int(sh["end"]),
                                   float(sh["rate"]) * 2.0 ** (cents / 1200.0))
                    layers.setdefault((key, vel), []).append(span)
                    names.setdefault((key, vel),
                                     sh["name"].split(b"\0")[0].decode("latin-1").strip())
        for (key, vel), spans in sorted(layers.items()):
            sample_name = names[(key, vel)]
            out.append(Candidate(
                file=path, kit=kit, instrument=sample_name,
                category=classify(sample_name, *(() if kind == "gm" else (pname,)),
                                  key=None if kind != "gm" or "sfx" in pname.lower() else key),
                source_format="sf2", licence=licence, key=key,
                layer="" if vel == (0, 127) else f"{vel[0]}-{vel[1]}", spans=tuple(spans[:2]),
            ))
    return out
