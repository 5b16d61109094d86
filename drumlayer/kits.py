"""Find one-shots in folders and drum-kit files, and name what each one is.

This module reads directory trees and kit descriptions (Hydrogen `drumkit.xml`, SFZ, SF2) and
returns `Candidate`s: where the audio is, which kit and instrument it belongs to, its category
(snare, kick, closed-hat, open-hat, tom, clap, rim, cymbal, other) and licence. It decodes no
audio: that is `drumlayer.audio` (files) and `load_candidate` below (which also reads SF2 sample
data).

Classification trusts, in order: the kit's instrument or sample name, then a General MIDI drum key
where the kit format maps keys (SF2 percussion banks, SFZ kits), then file and folder names. Rolls,
snares-off hits, side-sticks, rim clicks, rimshots and claps are never snares. Hats are open
(also half-open, let ring; GM key 46) or closed (also pedal, foot, choked; GM 42 and 44); a hat
that says neither takes its key's, else closed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import struct
import xml.etree.ElementTree as ET

import numpy as np

from drumlayer import audio as audio_lib

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .aif .aiff .aifc .flac .ogg .oga .opus .mp3 .w64 .rf64 .caf .au .snd".split()
)
CATEGORIES = ("snare", "kick", "closed-hat", "open-hat", "tom", "clap", "rim", "cymbal", "other")
KIT_FILES = frozenset((".sfz", ".sf2"))  # and Hydrogen's drumkit.xml
SKIPPED = "skipped: "  # how a file that is neither audio nor a kit starts its reason
_CONVERT = "convert it to WAV, FLAC or AIFF"
# Formats drum sounds come in that drumlayer does not read, and what to do with them.
UNREAD_FORMATS = {
    ".pat": f"a GUS patch, which drumlayer does not read: {_CONVERT}",
    ".raw": "headerless audio: its sample rate and encoding are unknown; convert it to WAV "
            "stating them (e.g. sox -t raw -r 44100 -e signed -b 16 -c 1 in.raw out.wav)",
    ".sf3": "a compressed SF3 soundfont, which drumlayer does not read: convert it to SF2",
    ".gig": f"a GigaSampler instrument, which drumlayer does not read: {_CONVERT}",
    ".nki": f"a Kontakt instrument, which drumlayer does not read: {_CONVERT}",
    ".exs": f"an EXS24 instrument, which drumlayer does not read: {_CONVERT}",
}
UNREAD_FORMATS[".pcm"] = UNREAD_FORMATS[".raw"]

# ----------------------------------------------------------------------------- classification

_HAT = r"(hi ?hat|high ?hat|\bhh|\bhat|\bhi ?h\b)"
# (category, pattern) tried in order on a normalised name; the first match wins. Exclusions come
# first so that "snare roll", "snares off" and "snare side stick" never count as snares.
_NAME_RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (cat, re.compile(pat))
    for cat, pat in (
        ("other", r"\brolls?\b|\broll\d|\bflam|\bbuzz|\bswirl|\bswish"),
        ("other", r"snares? ?off|no ?snares?|snare ?less|\bsnoff|cowbell|tambourine|\btamb\b"),
        ("other", r"\bwaves?\b|ocean|noise|\bzap|laser|scratch|\bs?fx\b|whistle"),
        ("clap", r"clap|\bsnaps?\b|\bsnap\d|finger ?snap"),
        ("rim", r"side ?stick|cross ?stick|x ?stick|\bsticks?\b|rim ?click|\brims?\b|\brim\d"
                r"|\bss\b|\bxs\b|rim ?shots?"),
        ("cymbal", r"crash|\bride|splash|china|cymbal|\bcym|\bbell\b"),
        # hats: open (also half-open, let ring) or closed (also pedal, foot, choked); a hat
        # that says neither is 'hi-hat' here, and `classify` asks the GM key
        ("open-hat", rf"{_HAT}.*(open|\bop\b|\bfree\b|\bring\b)|(open\w*|\bop) ?{_HAT}|\bohh"),
        ("closed-hat", rf"{_HAT}.*(clos|\bcl\b|pedal|\bpd\b|foot|choke|tight)"
                       rf"|(clos\w*|pedal|foot) ?{_HAT}|\bchh|\bphh"),
        ("hi-hat", _HAT),
        ("tom", r"\btoms?\b|\btom\d|floor|\btom ?(hi|mid|lo)|\bft\b|\bht\b|\blt\b|\bmt\b"),
        ("kick", r"kick|\bkik|bass ?drum|bassdrum|\bbd\b|\bbd\d|\bbdrum"),
        ("snare", r"snare|\bsnr\b|\bsnr\d|\bsd\b|\bsd\d|\bsn\b|\bsn\d"),
    )
)

# General MIDI percussion keys (GM1 35-81, GM2 27-34, 82-87) -> category.
_GM_KEYS: dict[int, str] = {
    **dict.fromkeys((35, 36), "kick"),
    **dict.fromkeys((37,), "rim"),
    **dict.fromkeys((38, 40), "snare"),
    **dict.fromkeys((39,), "clap"),
    **dict.fromkeys((41, 43, 45, 47, 48, 50), "tom"),
    **dict.fromkeys((42, 44), "closed-hat"),  # closed, pedal
    **dict.fromkeys((46,), "open-hat"),
    **dict.fromkeys((49, 51, 52, 53, 55, 57, 59), "cymbal"),
}


def normalise_name(name: str) -> str:
    """'SnareRoll_02-hard.wav' -> 'snare roll 02 hard wav': lower case, words split."""
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Za-z])(\d)", r"\1 \2", name)
    name = re.sub(r"(\d)([A-Za-z])", r"\1 \2", name)
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def category_from_name(name: str) -> str | None:
    """The category a name states, or None when it states none."""
    text = normalise_name(name)
    # Keep the digits glued to words too, so 'sd1' / 'bd2' style abbreviations match.
    glued = re.sub(r"[^a-z0-9]+", " ", name.lower())
    for cat, pattern in _NAME_RULES:
        if pattern.search(text) or pattern.search(glued):
            return cat
    return None


def category_from_gm_key(key: int | None) -> str | None:
    return None if key is None else _GM_KEYS.get(int(key), "other" if 27 <= key <= 87 else None)


def classify(*names: str, key: int | None = None) -> str:
    """Category from names (most specific first), else from a GM drum key, else 'other'."""
    for name in names:
        if name:
            cat = category_from_name(name)
            if cat == "hi-hat":  # open or closed unsaid: the GM key's, else closed (most are)
                return "open-hat" if category_from_gm_key(key) == "open-hat" else "closed-hat"
            if cat is not None:
                return cat
    return category_from_gm_key(key) or "other"


# ----------------------------------------------------------------------------- candidates


@dataclasses.dataclass(frozen=True)
class Sf2Span:
    """Sample data inside an SF2 file: 16-bit PCM frames [start, end) of the smpl chunk,
    played at `rate` (the sample's rate times the key's pitch ratio)."""

    data_offset: int  # byte offset of the smpl chunk's data in the file
    start: int
    end: int
    rate: float


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One potential one-shot. `file` is the audio file, or the SF2 file for `spans`."""

    file: str
    kit: str
    instrument: str
    category: str
    source_format: str  # folder | hydrogen | sfz | sf2
    licence: str = ""
    key: int | None = None
    layer: str = ""  # velocity layer, e.g. '0-0.2' or '100-127'
    spans: tuple[Sf2Span, ...] = ()  # SF2 only: one span per channel (stereo pairs mix)


def read_candidate(cand: Candidate, max_seconds: float = 10.0,
                   max_duration: float | None = None) -> tuple[np.ndarray, float]:
    """Candidate -> (its recording [frames, channels] float32, its rate in Hz), as decoded: the
    file (at most max_seconds of it), or an SF2 zone's 16-bit data at the key's playback rate.
    Raises audio.AudioError naming the file."""
    if not cand.spans:
        return audio_lib.read_audio(cand.file, max_seconds=max_seconds,
                                    max_duration=max_duration)
    where = f"{cand.file}#{cand.instrument}"
    chans = []
    try:
        mm = np.memmap(cand.file, dtype="<i2", mode="r")
    except (OSError, ValueError) as e:
        raise audio_lib.AudioError(f"cannot read SF2 sample data: {e}", where) from None
    rate = cand.spans[0].rate
    for s in cand.spans:
        first = s.data_offset // 2 + s.start
        n = min(s.end - s.start, int(max_seconds * s.rate))
        if s.end <= s.start or first + n > mm.shape[0]:
            raise audio_lib.AudioError("SF2 sample header points outside the file", where)
        x = np.asarray(mm[first : first + n], dtype=np.float32) / 32768.0
        if s.rate != rate:
            x = audio_lib.resample(x, s.rate, rate)
        chans.append(x)
    length = max(c.size for c in chans)
    return np.stack([np.pad(c, (0, length - c.size)) for c in chans], axis=1), rate


def load_candidate(
    cand: Candidate, spec: audio_lib.ClipSpec = audio_lib.ClipSpec(), max_seconds: float = 10.0,
    max_duration: float | None = None,
) -> np.ndarray:
    """Candidate -> canonical clip [spec.samples]. Raises audio.AudioError naming the file."""
    recording, rate = read_candidate(cand, max_seconds, max_duration)
    try:
        return audio_lib.canonical(recording, rate, spec)
    except audio_lib.AudioError as e:
        raise e.with_path(f"{cand.file}#{cand.instrument}" if cand.spans else cand.file) from None


# ----------------------------------------------------------------------------- walking


def walk_files(roots: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """All files under roots (symlinks followed, loops cut) -> (files, problems).

    problems: (path, reason) for directories that could not be listed or that loop back.
    """
    files, problems, seen = [], [], set()
    for root in roots:
        root = os.path.abspath(os.path.expanduser(root))
        if os.path.isfile(root):
            files.append(root)
            continue
        if not os.path.isdir(root):
            problems.append((root, "root does not exist or is not a directory"))
            continue
        stack = [root]
        while stack:
            d = stack.pop()
            try:
                st = os.stat(d)
            except OSError as e:
                problems.append((d, f"cannot open directory: {e.strerror}"))
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue  # a symlink loop, or a folder reached twice: read it once
            seen.add(ident)
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError as e:
                problems.append((d, f"cannot list directory: {e.strerror}"))
                continue
            subdirs = []
            for e in entries:
                try:
                    is_dir = e.is_dir(follow_symlinks=True)
                    fst = None if is_dir else e.stat(follow_symlinks=True)
                except OSError:
                    is_dir, fst = False, None  # broken link or loop: decoding will say which
                if is_dir:
                    subdirs.append(e.path)
                elif fst is None or (fst.st_dev, fst.st_ino, "f") not in seen:
                    if fst is not None:
                        seen.add((fst.st_dev, fst.st_ino, "f"))  # a file linked twice is read once
                    files.append(e.path)
            stack.extend(reversed(subdirs))
    return files, problems


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


_LICENCE = re.compile(r"(licen[cs]e|copying)", re.I)


@functools.lru_cache(maxsize=4096)
def _licence_near(folder: str, stop: str) -> str:
    """First line of a LICENSE/COPYING file in `folder` or an ancestor up to `stop`."""
    d = folder
    stop = os.path.abspath(stop)
    while True:
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        for n in sorted(names):
            if _LICENCE.match(n):
                try:
                    with open(os.path.join(d, n), encoding="utf-8", errors="replace") as f:
                        for line in f:
                            if line.strip():
                                return line.strip()[:200]
                except OSError:
                    pass
        if os.path.abspath(d) in (stop, os.path.dirname(d)) or len(d) <= len(stop):
            return ""
        d = os.path.dirname(d)


# ----------------------------------------------------------------------------- Hydrogen


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
        files = [(lay.findtext("filename"), lay.findtext("min"), lay.findtext("max"))
                 for lay in layers]
        if not layers and inst.findtext("filename"):
            files = [(inst.findtext("filename"), None, None)]
        cat = classify(name)
        for fname, lo, hi in files:
            if not fname:
                continue
            layer = f"{float(lo):.2f}-{float(hi):.2f}" if lo and hi else ""
            out.append(Candidate(
                file=os.path.join(base, fname.strip()), kit=kit, instrument=name,
                category=cat if name else classify(fname), source_format="hydrogen",
                licence=licence, layer=layer,
            ))
    return out


# ----------------------------------------------------------------------------- SFZ

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
        out.append(Candidate(file=file, kit=kit, instrument=name, category=cat,
                             source_format="sfz", key=key, layer=layer))
    return out


# ----------------------------------------------------------------------------- SF2

_PHDR = np.dtype([("name", "S20"), ("preset", "<u2"), ("bank", "<u2"), ("bag", "<u2"),
                  ("library", "<u4"), ("genre", "<u4"), ("morph", "<u4")])
_BAG = np.dtype([("gen", "<u2"), ("mod", "<u2")])
_GEN = np.dtype([("oper", "<u2"), ("amount", "<i2")])
_INST = np.dtype([("name", "S20"), ("bag", "<u2")])
_SHDR = np.dtype([("name", "S20"), ("start", "<u4"), ("end", "<u4"), ("loop_start", "<u4"),
                  ("loop_end", "<u4"), ("rate", "<u4"), ("pitch", "u1"), ("correction", "i1"),
                  ("link", "<u2"), ("type", "<u2")])
_KEY_RANGE, _VEL_RANGE, _INSTRUMENT, _SAMPLE_ID = 43, 44, 41, 53
_COARSE, _FINE, _SCALE, _ROOT = 51, 52, 56, 58


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


# ----------------------------------------------------------------------------- discovery


def discover(roots: list[str]) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Walk roots -> (candidates, rejected [(path, reason)]).

    Files a kit description references belong to that kit; every other audio file is a loose
    one-shot whose kit is its folder. Kit files that cannot be parsed are rejected, not fatal;
    every other file is rejected with a reason that starts with SKIPPED (what it is, and for
    formats drum sounds come in, what to do).
    """
    files, rejected = walk_files(roots)
    candidates: list[Candidate] = []
    claimed: set[str] = set()
    root_of = {}
    for r in roots:
        r = os.path.abspath(os.path.expanduser(r))
        root_of[r] = r
    for path in files:
        ext, base = _ext(path), os.path.basename(path)
        parser = (parse_hydrogen if base == "drumkit.xml" else parse_sfz if ext == ".sfz"
                  else parse_sf2 if ext == ".sf2" else None)
        if parser is None:
            continue
        try:
            found = parser(path)
        except (OSError, ValueError, ET.ParseError, KeyError, IndexError, struct.error) as e:
            rejected.append((path, f"unreadable kit description: {e}"))
            continue
        for c in found:
            claimed.add(os.path.normpath(c.file))
        candidates.extend(found)
    for path in files:
        ext, base = _ext(path), os.path.basename(path)
        if (os.path.normpath(path) in claimed or ext in KIT_FILES or base == "drumkit.xml"
                or _LICENCE.match(base)):  # licences are read for the clips' licence column
            continue
        if ext not in AUDIO_EXTENSIONS:
            rejected.append((path, SKIPPED + UNREAD_FORMATS.get(
                ext, f"not audio or a kit description ({ext or 'no extension'})")))
            continue
        root = next((r for r in root_of if path.startswith(r + os.sep)), os.path.dirname(path))
        folder = os.path.dirname(path)
        rel = os.path.relpath(folder, root) if folder != root else os.path.basename(root)
        stem = os.path.splitext(os.path.basename(path))[0]
        candidates.append(Candidate(
            file=path, kit=rel, instrument=stem,
            category=classify(stem, *reversed(rel.split(os.sep))),
            source_format="folder", licence=_licence_near(folder, root),
        ))
    return candidates, rejected
