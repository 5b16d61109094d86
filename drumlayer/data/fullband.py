"""Full-band audio of corpus clips: what a person hears, where the model hears 22.05 kHz.

Training and features stay at the paper's 22,050 Hz. Every sound a person hears or exports is
mixed from the same sources at full band instead: each source read again from its recording
(the file, or the SF2 zone), made canonical at `render_rate` (the same trim, 1 s cut and fade),
an augmented source re-made by the same seeded edits at that rate (`augment.variant`), and
scaled so that, resampled to 22,050 Hz, it is the clip the model was trained on (least squares).

A source whose recording cannot be read again (moved or deleted since the corpus was built, a
procedural clip), or whose full-band version does not match its clip (the file changed), is
used band-limited: its 22.05 kHz clip resampled, with the reason counted in the bundle.

Reads files; pure numpy otherwise. Nothing here knows models or workdirs. The kit readers and
the augmentations are imported where a recording is read again, so that the studio and the
evaluation, which import this module, do not load the corpus builder's parsers until then.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging

import numpy as np

from drumlayer.data import audio, augment, candidates, kit_formats

log = logging.getLogger(__name__)

VERSION = 1  # in the bundle stage's stamp: bundles made before full band are made again
MAX_RATE = 48000  # recordings above are resampled to this
RATES = (audio.SAMPLE_RATE, 44100, MAX_RATE)  # the render rates: the standard ones
# the largest relative error of a full-band clip, resampled to 22.05 kHz, against the corpus
# clip: above it the recording is not the one the corpus read. Measured on snare_paper's 200
# sources: files median 2e-4, at most 7e-3; variants median 6e-3, at most 0.12 (saturation,
# whose harmonics alias at 22.05 kHz and not at 48 kHz); another snare is ~1.
MATCH_TOLERANCE = 0.3


@dataclasses.dataclass(frozen=True)
class FullBand:
    audio: np.ndarray  # float32 [k, rate * seconds]
    rate: int
    band_limited: dict[str, int]  # reason -> how many of the clips are their 22.05 kHz clip
    errors: np.ndarray  # [k] relative error against the corpus clip (nan: band-limited)

    def summary(self) -> dict:
        return {"rate": self.rate, "full_band": int(np.sum(np.isfinite(self.errors))),
                "band_limited": self.band_limited}


def render_rate(native_rates) -> int:
    """The standard rate (22,050, 44,100 or 48,000 Hz) that holds the fastest recording's band
    (up to MAX_RATE)."""
    top = max([audio.SAMPLE_RATE, *native_rates])
    return next((r for r in RATES if r >= top - 1), MAX_RATE)


@functools.lru_cache(maxsize=64)
def _sf2(path: str) -> dict:

    return {(c.kit, c.instrument, str(c.key), c.layer): c for c in kit_formats.parse_sf2(path)}


def candidate(row: dict):
    """The candidate a manifest row was made from (an SF2 zone is looked up in its font again).
    Raises audio.AudioError when it cannot be found. -> kits.Candidate"""

    if row["source_format"] == "procedural":
        raise audio.AudioError("procedural: synthesised at 22.05 kHz, no recording")
    if row["source_format"] != "sf2":
        return candidates.Candidate(row["file"], row["kit"], row["instrument"], row["category"],
                              row["source_format"])
    try:
        zones = _sf2(row["file"])
    except (OSError, ValueError) as e:
        raise audio.AudioError(f"cannot read the soundfont: {e}", row["file"]) from None
    key = (row["kit"], row["instrument"], str(row["key"] or None), row["layer"])
    if key not in zones:
        raise audio.AudioError("the soundfont no longer has this zone", row["file"])
    return zones[key]


def native_rate(row: dict) -> float | None:
    """The rate of the recording behind a manifest row, without decoding it (None: none)."""
    try:
        c = candidate(row)
        if c.spans:
            return c.spans[0].rate
        import soundfile as sf

        return float(sf.info(c.file).samplerate)
    except (audio.AudioError, RuntimeError, OSError):
        return None


def clip(row: dict, rate: int, spec: audio.ClipSpec = audio.ClipSpec()) -> np.ndarray:
    """A manifest row's recording as a canonical clip at `rate` (spec's trim, cut and fade):
    float32 [rate * spec.seconds], peak 1. Raises audio.AudioError."""

    c = candidate(row)
    recording, native = candidates.read_candidate(c)
    try:
        return audio.canonical(recording, native, dataclasses.replace(spec, sample_rate=rate))
    except audio.AudioError as e:
        raise e.with_path(c.file) from None


def match(full: np.ndarray, rate: int, clip22: np.ndarray) -> tuple[np.ndarray, float]:
    """full [n] scaled so that resampled to 22.05 kHz it is closest to clip22 [S] (least
    squares), and the relative error that remains."""
    down = audio.resample(full, rate, audio.SAMPLE_RATE)[: clip22.size]
    down = np.pad(down, (0, clip22.size - down.size)).astype(np.float64)
    target = np.asarray(clip22, np.float64)
    gain = float(down @ target / max(down @ down, 1e-30))
    err = float(np.linalg.norm(gain * down - target) / max(np.linalg.norm(target), 1e-30))
    return (full * gain).astype(np.float32), err


def band_limited(clip22: np.ndarray, rate: int, samples: int) -> np.ndarray:
    """A 22.05 kHz clip [S] at `rate`: the same sound, no band above 11 kHz. -> [samples]."""
    y = audio.resample(clip22, audio.SAMPLE_RATE, rate)[:samples]
    return np.pad(y, (0, samples - y.size)).astype(np.float32)


def clips(rows: list[dict], clips22: np.ndarray, variants: list[tuple[int, int] | None],
          seed: int, rate: int | None = None,
          spec: audio.ClipSpec = audio.ClipSpec()) -> FullBand:
    """Full-band versions of clips22 [k, S].

    rows[i]: the manifest row of clip i (of its parent, for a variant); variants[i]: None, or
    (parent corpus id, j) for variant j made by `augment.variant` with `seed`; rate: the render
    rate (None: `render_rate` of the recordings)."""

    if rate is None:
        rate = render_rate([r for r in map(native_rate, rows) if r is not None])
    samples = int(round(rate * spec.seconds))
    out = np.zeros((len(rows), samples), np.float32)
    errors = np.full(len(rows), np.nan)
    why: collections.Counter[str] = collections.Counter()
    for i, (row, c22, var) in enumerate(zip(rows, clips22, variants, strict=True)):
        try:
            x = clip(row, rate, spec)
            if var is not None:
                x = augment.variant(x, seed, var[0], var[1], rate)
            x, err = match(x, rate, c22)
            if not err <= MATCH_TOLERANCE:
                raise audio.AudioError(f"differs from the corpus clip (relative error {err:.2f}):"
                                       " the file changed since the corpus was built",
                                       row["file"])
            out[i], errors[i] = x, err
        except audio.AudioError as e:
            reason = e.reason.split(" (relative error")[0]
            why[reason] += 1
            log.debug("full band: %s: %s", row["file"], e)
            out[i] = band_limited(c22, rate, samples)
    ok = int(np.sum(np.isfinite(errors)))
    log.info("full band: %d of %d clips at %d Hz from their recordings (median error against "
             "the 22.05 kHz clips %.1e)%s", ok, len(rows), rate,
             np.nanmedian(errors) if ok else float("nan"),
             "".join(f"; {n} band-limited: {r}" for r, n in why.most_common()))
    return FullBand(out, rate, dict(why), errors)
