"""Audio I/O boundary: decode any file libsndfile reads into the canonical one-shot, and write WAV.

The canonical clip (the paper's Section 3.1, docs/data.md) is mono (mean of
channels), 22,050 Hz through a band-limited resampler (libsoxr, very high quality), with leading
silence trimmed (below -60 dB re peak, 1 ms kept), cut to 1 s with a 10 ms fade-out or zero-padded,
and peak-normalised to 1.0.

`canonical` is pure numpy and knows nothing of files; `read_audio` / `load_clip` / `write_wav` are
the only functions here that touch the file system. Every failure of a file is one error type,
`AudioError`, whose message names the file, says what is wrong and, where it can, what to do.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 22050
CLIP_SECONDS = 1.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
# libsndfile decodes in blocks of this many frames; long files are never read whole.
_BLOCK_FRAMES = 65536
# What a drum recording can be: more channels or a rate outside these is a damaged or hostile
# header (a 119 KB file can claim 255 channels at 192 kHz), refused before decoding.
MAX_CHANNELS = 64
RATES = (1000, 768000)


class AudioError(Exception):
    """A file (or array) that cannot become a clip. `reason` is short and fit for rejected.csv."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None, hint: str = ""):
        self.reason = reason
        self.path = None if path is None else os.fspath(path)
        self.hint = hint
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{reason}" + (f" ({hint})" if hint else ""))

    def with_path(self, path: str | os.PathLike) -> AudioError:
        return AudioError(self.reason, path, self.hint)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """How a recording becomes a clip: the knobs of `canonical`."""

    sample_rate: int = SAMPLE_RATE
    seconds: float = CLIP_SECONDS
    silence_db: float = -60.0  # leading samples below this, re peak, are trimmed
    keep_ms: float = 1.0  # kept before the first sample above the threshold
    fade_ms: float = 10.0  # fade-out applied when a recording is cut
    silent_peak: float = 1e-4  # a recording whose peak is below this is rejected as silent

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.seconds))


def resample(audio: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Band-limited resampling along the last axis. audio: [..., n] -> [..., round(n*out/in)]."""
    audio = np.asarray(audio, dtype=np.float32)
    if rate_in == rate_out:
        return audio
    flat = audio.reshape(-1, audio.shape[-1])
    # soxr wants [frames, channels]; each row is an independent channel.
    out = soxr.resample(np.ascontiguousarray(flat.T), rate_in, rate_out, quality="VHQ")
    out = np.asarray(out, dtype=np.float32).reshape(-1, flat.shape[0]).T
    return out.reshape(*audio.shape[:-1], out.shape[-1])


def to_mono(audio: np.ndarray) -> np.ndarray:
    """audio: [frames] or [frames, channels] -> [frames], the mean of the channels."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio if audio.ndim == 1 else audio.mean(axis=1)


def canonical(audio: np.ndarray, rate: float, spec: ClipSpec = ClipSpec()) -> np.ndarray:
    """One recording -> the canonical clip.

    audio: [frames] or [frames, channels], any float scale; rate: its sample rate in Hz.
    Returns float32 [spec.samples], onset at the start, peak exactly 1.0.
    Raises AudioError (without a path) when the recording is empty, non-finite or silent.
    """
    x = to_mono(audio)
    if x.size == 0:
        raise AudioError("empty: no audio frames", hint="the file holds a header but no sound")
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise AudioError(f"non-finite: {bad} NaN or infinite samples")
    peak = float(np.max(np.abs(x)))
    if peak < spec.silent_peak:
        raise AudioError(f"silent: peak {peak:.2e} below {spec.silent_peak:.0e}")
    threshold = peak * 10.0 ** (spec.silence_db / 20.0)
    onset = int(np.argmax(np.abs(x) >= threshold))
    start = max(0, onset - int(round(spec.keep_ms * 1e-3 * rate)))
    # Resample a little more than one clip so the cut point is well inside the resampled signal.
    need = int(np.ceil(spec.seconds * rate)) + int(np.ceil(0.01 * rate)) + 1
    seg = x[start : start + need]
    was_cut = x.size - start > int(np.ceil(spec.seconds * rate))
    y = resample(seg, rate, spec.sample_rate)
    n = spec.samples
    if y.size >= n:
        y = y[:n].copy()
        if was_cut:
            fade = max(1, int(round(spec.fade_ms * 1e-3 * spec.sample_rate)))
            y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    else:
        y = np.pad(y, (0, n - y.size))
    peak_out = float(np.max(np.abs(y)))
    if peak_out < spec.silent_peak * 1e-2 or not np.isfinite(peak_out):
        raise AudioError(
            f"silent after resampling to {spec.sample_rate} Hz: its content lies above "
            f"{spec.sample_rate // 2} Hz"
        )
    return (y / peak_out).astype(np.float32)


UNKNOWN_FRAMES = 2**62  # at or above: libsndfile does not know the length (SF_COUNT_MAX)


def _decodes(path: str, n: int) -> bool:
    """Whether the first n frames of path decode (read block by block and dropped)."""
    try:
        with sf.SoundFile(os.fsencode(path)) as f:
            got = 0
            while got < n:
                block = f.read(min(_BLOCK_FRAMES, n - got), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    return False
                got += block.shape[0]
    except (sf.LibsndfileError, RuntimeError):
        return False
    return True


def _stream_length(path: str, most: int | None) -> int:
    """The frames of a file whose header leaves its length open, found by decoding: up to
    `most` (None: to its end). libsndfile answers a read past such a stream's end with an error
    (and the handle is lost), not with fewer frames: the block where that happens is bisected
    (a read that reaches the last frame errs too: that frame, at the end of a decay, is lost)."""
    ok, step = 0, _BLOCK_FRAMES
    while most is None or ok < most:
        n = ok + step if most is None else min(ok + step, most)
        if not _decodes(path, n):
            break
        ok, step = n, step * 2  # doubling: a long stream costs a few passes, not one a block
    else:
        return ok
    lo, hi = ok, n  # lo decodes, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _decodes(path, mid) else (lo, mid)
    return lo


def read_audio(
    path: str | os.PathLike, max_seconds: float | None = None,
    max_duration: float | None = None, start: int = 0, end: int | None = None,
) -> tuple[np.ndarray, int]:
    """Decode a file (anything libsndfile reads) -> (audio [frames, 1] float32: the mean of its
    channels, mixed block by block; rate).

    At most `max_seconds` are decoded, block by block, so a multi-hour or many-channel file costs
    no more than that much mono audio. A file longer than `max_duration` seconds is refused
    before decoding (a loop or a song is no one-shot), and so is a header outside MAX_CHANNELS
    and RATES. start, end: only the frames [start, end) of the file (an SFZ region's `offset`
    and `end`; end None: to the file's end), to which max_seconds and max_duration apply.
    Raises AudioError naming the file.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        reason = "symlink loop" if e.errno == 40 else f"cannot open: {e.strerror}"
        raise AudioError(reason, path) from None
    if not os.path.isfile(path):
        raise AudioError("not a regular file", path)
    if st.st_size == 0:
        raise AudioError("empty file (0 bytes)", path)
    try:
        open(path, "rb").close()
    except PermissionError:
        raise AudioError("cannot read: permission denied", path,
                         hint="give your user read permission on it (chmod)") from None
    try:
        # bytes: libsndfile then opens any name the file system holds, UTF-8 or not
        with sf.SoundFile(os.fsencode(path)) as f:
            rate, channels = int(f.samplerate), int(f.channels)
            if channels > MAX_CHANNELS:
                raise AudioError(f"unsupported: {channels} channels (at most {MAX_CHANNELS})",
                                 path, hint="mix it down to stereo or mono first")
            if not RATES[0] <= rate <= RATES[1]:
                raise AudioError(f"unsupported sample rate: {rate} Hz (drumlayer reads "
                                 f"{RATES[0]:,} to {RATES[1]:,} Hz)", path,
                                 hint="a damaged header, or resample it first")
            # libsndfile's SF_COUNT_MAX: a stream whose header leaves its length open (a FLAC's
            # total_samples = 0, allowed by the format): its length is found by decoding,
            # bounded by max_duration
            unknown = f.frames >= UNKNOWN_FRAMES
            frames = (_stream_length(path, None if max_duration is None else
                                     start + int(max_duration * rate) + 1) if unknown
                      else f.frames)
            if frames == 0:
                raise AudioError("empty: no audio frames", path)
            n = (frames if end is None else min(frames, end)) - start
            if n <= 0:
                raise AudioError(f"empty: frames {start} to {end} of a file of {frames} "
                                 "frames", path, hint="the region's offset or end is past "
                                 "the sample's end")
            if max_duration is not None and n > max_duration * rate:
                raise AudioError("too long for a one-shot (" + (
                    f"more than {max_duration:g} s; its header leaves the length open"
                    if unknown else f"{n / rate:.1f} s > {max_duration:g} s") + ")", path,
                    hint="raise max_duration to include it")
            limit = n if max_seconds is None else min(n, int(max_seconds * rate))
            skip = start  # a stream of unknown length cannot seek: read and dropped
            if start and not unknown:
                f.seek(start)
                skip = 0
            blocks, got = [], 0
            while got < limit:
                block = f.read(min(_BLOCK_FRAMES, skip + limit - got), dtype="float32",
                               always_2d=True)
                if block.shape[0] == 0:
                    break
                block, skip = block[skip:], max(0, skip - block.shape[0])
                if block.shape[0]:
                    blocks.append(block.mean(axis=1, keepdims=True) if channels > 1 else block)
                    got += block.shape[0]
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        msg = str(e).split(": ", 1)[-1] if ": " in str(e) else str(e)
        raise AudioError(
            f"unreadable: {msg}", path, hint="not audio, or a format/codec libsndfile lacks"
        ) from None
    except (OSError, MemoryError) as e:
        raise AudioError(f"cannot read: {e}", path) from None
    if not blocks:
        raise AudioError("empty: no audio frames could be decoded (truncated?)", path)
    return np.concatenate(blocks, axis=0), rate


def load_clip(
    path: str | os.PathLike, spec: ClipSpec = ClipSpec(), max_seconds: float = 10.0,
    max_duration: float | None = None,
) -> np.ndarray:
    """A file -> canonical clip float32 [spec.samples]. Raises AudioError naming the file."""
    audio, rate = read_audio(path, max_seconds=max_seconds, max_duration=max_duration)
    try:
        return canonical(audio, rate, spec)
    except AudioError as e:
        raise e.with_path(path) from None


def write_wav(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    out_rate: int | None = None,
    bits: int = 24,
) -> None:
    """Write audio [frames] or [frames, channels] as a WAV of `bits` (16 or 24) at `out_rate`.

    audio is float in [-1, 1] at `sample_rate`; it is resampled when out_rate differs, and clipped
    to [-1, 1] (the caller sets headroom).
    """
    subtype = {16: "PCM_16", 24: "PCM_24"}.get(bits)
    if subtype is None:
        raise ValueError(f"bits must be 16 or 24, got {bits}")
    audio = np.asarray(audio, dtype=np.float32)
    out_rate = sample_rate if out_rate is None else int(out_rate)
    if out_rate != sample_rate:
        audio = resample(audio.T, sample_rate, out_rate).T
    sf.write(os.fspath(path), np.clip(audio, -1.0, 1.0), out_rate, subtype=subtype, format="WAV")
