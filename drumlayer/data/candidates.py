"""A sound found on disk (a file, or a region of a kit) and how to read it as a clip.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from drumlayer.data import audio as audio_lib


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
    start: int = 0  # the file's frames [start, end) only: an SFZ region's offset and end
    end: int | None = None
    gain: float = 1.0  # the amplitude the kit plays it at (Hydrogen's layer and instrument gains)


def read_candidate(cand: Candidate, max_seconds: float = 10.0,
                   max_duration: float | None = None) -> tuple[np.ndarray, float]:
    """Candidate -> (its recording [frames, channels] float32, its rate in Hz), as decoded: the
    file (its frames [start, end), at most max_seconds of them, at the kit's gain), or an SF2
    zone's 16-bit data at the key's playback rate.
    Raises audio.AudioError naming the file."""
    if not cand.spans:
        x, rate = audio_lib.read_audio(cand.file, max_seconds=max_seconds,
                                       max_duration=max_duration, start=cand.start,
                                       end=cand.end)
        return (x * np.float32(cand.gain) if cand.gain != 1.0 else x), rate
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
