"""Small drum kits written by the tests themselves: folders, Hydrogen, SFZ and SF2 files."""

from __future__ import annotations

import os
import struct

import numpy as np
import soundfile as sf


def hit(rate: int, seconds: float = 0.4, freq: float = 200.0, noise: float = 0.5, seed: int = 0,
        lead: float = 0.0) -> np.ndarray:
    """A drum-like hit: a damped sine plus decaying noise, with `lead` seconds of silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.08)
    x += noise * rng.standard_normal(t.size) * np.exp(-t / 0.05)
    x = 0.8 * x / np.abs(x).max()
    return np.concatenate([np.zeros(int(lead * rate)), x]).astype(np.float32)


def write_hydrogen_kit(folder: str, name: str = "TestKit", licence: str = "CC0") -> dict:
    """A Hydrogen kit: snare with 2 velocity layers, a kick, a snare roll, a side stick."""
    os.makedirs(folder, exist_ok=True)
    files = {"sn_soft.wav": hit(44100, freq=190, seed=1), "sn_hard.flac": hit(48000, freq=200,
             seed=2), "kick.wav": hit(44100, freq=60, noise=0.1, seed=3),
             "roll.wav": hit(44100, freq=210, seed=4), "stick.wav": hit(44100, freq=900, seed=5)}
    for fname, x in files.items():
        rate = 48000 if fname.endswith(".flac") else 44100
        sf.write(os.path.join(folder, fname), x, rate)
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <name>{name}</name><license>{licence}</license>
 <instrumentList>
  <instrument><id>0</id><name>Kick</name><filename>kick.wav</filename></instrument>
  <instrument><id>1</id><name>Snare</name>
   <instrumentComponent>
    <layer><filename>sn_soft.wav</filename><min>0</min><max>0.5</max></layer>
    <layer><filename>sn_hard.flac</filename><min>0.5</min><max>1</max></layer>
   </instrumentComponent>
  </instrument>
  <instrument><id>2</id><name>Snare Roll</name>
   <layer><filename>roll.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>3</id><name>Side Stick</name>
   <layer><filename>stick.wav</filename><min>0</min><max>1</max></layer></instrument>
 </instrumentList>
</drumkit_info>
"""
    with open(os.path.join(folder, "drumkit.xml"), "w") as f:
        f.write(xml)
    return files


def write_sfz_kit(folder: str) -> None:
    """An SFZ kit whose samples live in a subfolder named by default_path."""
    os.makedirs(os.path.join(folder, "samples"), exist_ok=True)
    for i, (name, freq) in enumerate((("a.wav", 60), ("b.wav", 200), ("c.wav", 210),
                                      ("d.wav", 5000))):
        sf.write(os.path.join(folder, "samples", name), hit(44100, freq=freq, seed=10 + i), 44100)
    text = """// a tiny kit
<control> default_path=samples/
<group> lovel=0 hivel=127
<region> sample=a.wav key=36
<region> sample=b.wav key=d2 /* GM 38: acoustic snare */
<group> group_label=Snare Roll
<region> sample=c.wav key=40
<group>
<region> sample=d.wav key=42
"""
    with open(os.path.join(folder, "kit.sfz"), "w") as f:
        f.write(text)


def _chunk(cid: bytes, data: bytes) -> bytes:
    return struct.pack("<4sI", cid, len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, chunks: list[bytes]) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def write_soundfont(path: str, samples: list[tuple], instruments: list[tuple[str, list[dict]]],
                    presets: list[tuple[str, int, list[dict]]], info: dict[bytes, bytes] | None
                    = None) -> None:
    """An SF2 soundfont as the spec lays it out, written field by field.

    samples: (name, int16 data, rate, original_pitch[, correction, type, link]).
    instruments: (name, zones); presets: (name, bank, zones); a zone is {generator: amount}
    (43 key range and 44 velocity range as (lo, hi)), its generators written in that order.
    info: INFO sub-chunks (INAM, ICOP), none by default.
    """
    smpl, shdr, offset = b"", b"", 0
    for name, data, rate, pitch, *rest in samples:
        correction, kind, link = (tuple(rest) + (0, 1, 0)[len(rest):])
        data = np.asarray(data, "<i2")
        smpl += data.tobytes() + b"\0" * 92  # 46 zero frames after each sample, as the spec asks
        shdr += struct.pack("<20sIIIIIBbHH", name.encode(), offset, offset + data.size, offset,
                            offset + data.size, rate, pitch, correction, link, kind)
        offset += data.size + 46
    shdr += struct.pack("<20sIIIIIBbHH", b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0)

    def gens(zone: dict) -> bytes:
        return b"".join(struct.pack("<HBB", op, *v) if isinstance(v, tuple)
                        else struct.pack("<Hh", op, v) for op, v in zone.items())

    def table(headers, fmt, term, extra) -> tuple[bytes, bytes, bytes]:
        """(header, bag, gen) chunks of named zone lists, each ended by its terminal record."""
        hdr, bag, gen, n_bag, n_gen = b"", b"", b"", 0, 0
        for name, *rest, zones in headers:
            hdr += struct.pack(fmt, name.encode(), *extra(rest, n_bag))
            for z in zones:
                bag += struct.pack("<HH", n_gen, 0)
                gen += gens(z)
                n_gen += len(z)
                n_bag += 1
        hdr += struct.pack(fmt, term, *extra([0], n_bag))
        return hdr, bag + struct.pack("<HH", n_gen, 0), gen + struct.pack("<Hh", 0, 0)

    inst, ibag, igen = table(instruments, "<20sH", b"EOI", lambda rest, n: (n,))
    phdr, pbag, pgen = table(presets, "<20sHHHIII", b"EOP",
                             lambda rest, n: (0, rest[0], n, 0, 0, 0))
    infos = [_chunk(b"ifil", struct.pack("<HH", 2, 1))]
    infos += [_chunk(k, v + b"\0") for k, v in (info or {}).items()]
    body = b"sfbk" + _list(b"INFO", infos)
    body += _list(b"sdta", [_chunk(b"smpl", smpl)])
    body += _list(b"pdta", [_chunk(b"phdr", phdr), _chunk(b"pbag", pbag),
                            _chunk(b"pmod", b"\0" * 10), _chunk(b"pgen", pgen),
                            _chunk(b"inst", inst), _chunk(b"ibag", ibag),
                            _chunk(b"imod", b"\0" * 10), _chunk(b"igen", igen),
                            _chunk(b"shdr", shdr)])
    with open(path, "wb") as f:
        f.write(_chunk(b"RIFF", body))


def write_sf2(path: str, samples: list[tuple[str, np.ndarray, int, int]],
              drum_zones: list[tuple[int, int, int]], melodic: bool = True,
              kit: str = "Test Kit", bank: int = 128) -> None:
    """A minimal SF2 soundfont named 'Test Font' (licence 'CC0 test data').

    samples: (name, int16 data, rate, original_pitch). drum_zones: (lo_key, hi_key, sample index)
    of one preset named `kit` in `bank` (128: percussion) with overridingRootKey unset; a melodic
    preset (bank 0) using sample 0 is added when `melodic`.
    """
    instruments = [("Drums", [{43: (lo, hi), 53: s} for lo, hi, s in drum_zones]),
                   ("Piano", [{53: 0}])]
    presets = [(kit, bank, [{41: 0}])] + ([("Piano", 0, [{41: 1}])] if melodic else [])
    write_soundfont(path, samples, instruments, presets,
                    {b"INAM": b"Test Font", b"ICOP": b"CC0 test data"})


def write_kits(root, n: int = 20, claps: int = 3, rate: int = 44100) -> None:
    """n folders (kits), each with a kick and a snare; the first `claps` also a clap. At `rate`:
    their noise reaches up to rate / 2, above the band the model hears."""
    for k in range(n):
        d = root / f"kit{k:02d}"
        d.mkdir(parents=True)
        sf.write(d / "kick.wav", hit(rate, freq=45 + 4 * k, noise=0.1, seed=100 + k), rate)
        sf.write(d / "snare.wav", hit(rate, freq=170 + 9 * k, noise=0.6, seed=200 + k), rate)
        if k < claps:
            sf.write(d / "clap.wav", hit(rate, freq=900 + 60 * k, noise=0.95, seed=300 + k),
                     rate)
