"""What the studio does to a recipe, in numpy: the same arithmetic the page runs in JavaScript
(static/app.js), so the page's mix and the server's render agree to float32 rounding.

A recipe (see recipe.Recipe) holds a latent z and the edits on top of it:

    decoded = decoder(z)                              [k], non-negative, sums to 1
    w_i     = clip(decoded_i + residual_i, 0, 1)      (residual: a refined recipe's, else 0)
    w_i     = lock_i if i is locked else w_i          (a hand-set weight is a lock)
    w_i     = 0 if w_i < prune, or i muted, or (some layer soloed and i is not)
    mix[t]  = sum_i w_i * shaped_i[t - offset_i]      (offsets >= 0 samples, cut at 1 s)
    out[t]  = mix[t] * envelope[t] * 10^(gain_db / 20)

envelope: a linear rise over `attack` s, 1 for `hold` s, then 10^(-3 (t - attack - hold) /
decay): -60 dB after `decay` s. shaped_i is source i with its layer's pitch, filter and decay
(recipes.shaping; the source itself when the layer has none). An export renders at its own
rate (44.1 / 48 kHz) from the sources resampled to it, as a sampler plays them, and scales the
peak to EXPORT_PEAK_DB; stems get the same scale, so they sum to the exported mix.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import soundfile as sf

from drumlayer.data import audio
from drumlayer.recipes import sfz, shaping

EXPORT_PEAK_DB = -1.05  # "under -1 dBFS" with room for 24-bit rounding
EXPORT_RATES = (44100, 48000)
SILENCE_DB = -120.0  # a mix whose peak is below this is not exported


def numpy_decoder(params: dict) -> dict:
    """The decoder's float32 numpy arrays, from a bundle's params."""
    return {k: {n: np.asarray(a, np.float32) for n, a in v.items()}
            for k, v in params["decoder"].items()}


def decode(params: dict, z: np.ndarray, normaliser: str) -> np.ndarray:
    """The decoder in float32 numpy: z [..., L] -> weights [..., k] (model.Decoder + normalise).
    params: the flax decoder subtree {'hidden': {'kernel', 'bias'}, 'out': {...}}."""
    z = np.asarray(z, np.float32)
    h = np.maximum(z @ params["hidden"]["kernel"] + params["hidden"]["bias"], 0.0)
    logits = h @ params["out"]["kernel"] + params["out"]["bias"]
    if normaliser == "softmax":
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if normaliser == "sparsemax":
        s = np.sort(logits, axis=-1)[..., ::-1]
        k = np.arange(1, logits.shape[-1] + 1, dtype=np.float32)
        cum = np.cumsum(s, axis=-1)
        k_z = np.sum(1.0 + k * s > cum, axis=-1, keepdims=True)
        tau = (np.take_along_axis(cum, k_z - 1, axis=-1) - 1.0) / k_z
        return np.maximum(logits - tau, 0.0)
    if normaliser == "relu":
        w = np.maximum(logits, 0.0) + 1e-6
        return w / w.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown normaliser {normaliser!r}")


def edit_weights(decoded: np.ndarray, locks: dict[int, float], muted: set[int],
                 solo: set[int], prune: float, residual=None) -> np.ndarray:
    """The recipe's edits on decoded weights [k] -> the weights that are mixed [k]."""
    w = np.array(decoded, np.float32)
    if residual is not None:
        w = np.clip(w + np.asarray(residual, np.float32), np.float32(0.0), np.float32(1.0))
    for i, v in locks.items():
        w[i] = v
    w[w < prune] = 0.0
    w[list(muted)] = 0.0
    if solo:
        keep = np.zeros_like(w, bool)
        keep[list(solo)] = True
        w[~keep] = 0.0
    return w


def envelope(n: int, sample_rate: int, attack: float, hold: float, decay: float) -> np.ndarray:
    """The output envelope [n] (see the module docstring); times in seconds."""
    t = np.arange(n, dtype=np.float64) / sample_rate
    # an attack shorter than one sample is no attack (and no division by almost zero)
    rise = np.minimum(t / attack, 1.0) if attack * sample_rate >= 1 else np.ones_like(t)
    fall = 10.0 ** (-3.0 * np.maximum(t - (attack + hold), 0.0) / decay)
    return (rise * fall).astype(np.float32)


def at_rate(weights: np.ndarray, sources: np.ndarray, sample_rate: int,
            rate: int) -> np.ndarray:
    """The sources [k, n] at sample_rate resampled to rate, the audible ones (weights > 0)
    only; the rest are zeros: [k, n * rate // sample_rate]."""
    live = np.flatnonzero(weights)
    out = np.zeros((len(sources), sources.shape[1] * rate // sample_rate), np.float32)
    if len(live):
        y = audio.resample(sources[live], sample_rate, rate)[:, : out.shape[1]]
        out[live, : y.shape[1]] = y
    return out


def shaped(sources: np.ndarray, i: int, shapes: dict, rate: int) -> np.ndarray:
    """Source i [S] with its layer's shaping (shapes: layer -> LayerShape), at `rate`."""
    s = shapes.get(i)
    if shaping.is_plain(s):
        return sources[i]
    return shaping.shape_layer(sources[i], rate, s)


def layers(weights: np.ndarray, sources: np.ndarray, offsets: dict[int, int],
           shapes: dict | None = None, rate: int = audio.SAMPLE_RATE) -> dict:
    """Each audible layer as audio: {i: w_i * shaped source i delayed by offsets[i] samples
    [S]}; shapes: layer -> LayerShape, for sources at `rate`."""
    n = sources.shape[1]
    out = {}
    for i in np.flatnonzero(weights):
        d = min(max(int(offsets.get(int(i), 0)), 0), n)
        x = np.zeros(n, np.float32)
        x[d:] = weights[i] * shaped(sources, int(i), shapes or {}, rate)[: n - d]
        out[int(i)] = x
    return out


def offsets(offsets_ms: dict, rate: int) -> dict[int, int]:
    """A recipe's start delays in ms -> in samples at rate (the positive ones)."""
    return {int(i): int(round(ms * rate / 1000)) for i, ms in offsets_ms.items() if ms > 0}


def render(weights: np.ndarray, sources: np.ndarray, offsets: dict[int, int], env: np.ndarray,
           gain_db: float, shapes: dict | None = None,
           rate: int = audio.SAMPLE_RATE) -> np.ndarray:
    """The sound of a recipe [S] at the sources' rate, not normalised."""
    gain = np.float32(10.0 ** (gain_db / 20.0))
    live = {i: s for i, s in (shapes or {}).items() if not shaping.is_plain(s) and weights[i]}
    if not offsets and not live:
        mix = np.asarray(weights, np.float32) @ sources  # one matrix product: the common case
    else:
        mix = sum(layers(weights, sources, offsets, live, rate).values(),
                  np.zeros(sources.shape[1], np.float32))
    return (mix * env * gain).astype(np.float32)


class SilentError(ValueError):
    """There is nothing to export: every layer is muted or pruned, or the level is negligible."""


def export_scale(x: np.ndarray, sample_rate: int, rate: int) -> tuple[np.ndarray, float]:
    """(x resampled to rate as float64, the factor that puts its peak at EXPORT_PEAK_DB).
    Raises SilentError below SILENCE_DB: raising that to -1 dBFS would export only noise."""
    y = audio.resample(x, sample_rate, rate) if rate != sample_rate else x
    y = np.asarray(y, np.float64)
    peak = float(np.max(np.abs(y)))
    if not peak > 10 ** (SILENCE_DB / 20):
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise SilentError(f"the sound is silent (peak {level}): unmute or lock a layer, lower "
                          "the pruning threshold, or raise the gain")
    return y, 10 ** (EXPORT_PEAK_DB / 20) / peak


def wav_bytes(x: np.ndarray, rate: int, subtype: str) -> bytes:
    """x [n] as a WAV file's bytes (subtype: 'PCM_16', 'PCM_24' or 'FLOAT'); the same x gives
    the same bytes (libsndfile's PEAK chunk of a float WAV, which holds the time of writing, is
    left out)."""
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format="WAV")
    return _without_chunk(buf.getvalue(), b"PEAK")


def _without_chunk(wav: bytes, name: bytes) -> bytes:
    """A RIFF/WAVE file's bytes without its chunks called `name` (the RIFF size updated)."""
    body, pos = [wav[8:12]], 12
    while pos + 8 <= len(wav):
        size = int.from_bytes(wav[pos + 4:pos + 8], "little")
        end = pos + 8 + size + (size & 1)  # chunks are padded to an even length
        if wav[pos:pos + 4] != name:
            body.append(wav[pos:end])
        pos = end
    out = b"".join(body)
    return b"RIFF" + len(out).to_bytes(4, "little") + out


def export_wav(x: np.ndarray, sample_rate: int, rate: int) -> bytes:
    """The export: 24-bit at rate, peak at EXPORT_PEAK_DB."""
    y, scale = export_scale(x, sample_rate, rate)
    return wav_bytes(y * scale, rate, "PCM_24")


def common_scale(xs) -> float:
    """The one factor that puts the loudest peak of the sounds xs [m, n] at EXPORT_PEAK_DB
    (`export_scale`): sounds exported together keep their levels' differences."""
    return export_scale(xs[int(np.argmax([np.max(np.abs(x)) for x in xs]))], 1, 1)[1]


def export_arrays(xs: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """Sounds xs [m, n] at sample_rate as exported together: resampled to rate and scaled by
    their `common_scale` (a pad's velocity layers and round robins) -> [m, n'] float64."""
    ys = np.stack([audio.resample(x, sample_rate, rate) if rate != sample_rate else x
                   for x in np.asarray(xs)]).astype(np.float64)
    return ys * common_scale(ys)


def export_wavs(xs: np.ndarray, sample_rate: int, rate: int) -> list[bytes]:
    """`export_arrays` as 24-bit WAV files' bytes."""
    return [wav_bytes(y, rate, "PCM_24") for y in export_arrays(xs, sample_rate, rate)]


def safe_name(name: str, most: int = 60) -> str:
    """A name as a file name: letters, digits, '-', '_' only; a longer one keeps its start and
    its end, where the names of one kit's velocity layers or round robins differ."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    if len(s) > most:
        s = s[:most // 3] + "-" + s[len(s) - (most - most // 3 - 1):]
    return s or "layer"


def stems_zip(parts: dict[int, np.ndarray], names: list[str], env: np.ndarray, gain_db: float,
              sample_rate: int, rate: int, recipe: dict) -> bytes:
    """Per-layer stems (24-bit, rate) that sum to the exported mix, with recipe.json: a zip."""
    gain = np.float32(10.0 ** (gain_db / 20.0))
    total = sum(parts.values(), np.zeros_like(env)) * env * gain
    _, scale = export_scale(total, sample_rate, rate)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, (i, x) in enumerate(sorted(parts.items())):
            y = x * env * gain
            y = audio.resample(y, sample_rate, rate) if rate != sample_rate else y
            z.writestr(f"stems/{n:02d}_{i:03d}_{safe_name(names[i])}.wav",
                       wav_bytes(y * scale, rate, "PCM_24"))
        z.writestr("recipe.json", json.dumps(recipe, indent=1))
    return buf.getvalue()


# sfizz's ampeg decay is exp(-9 t / ampeg_decay): 180 / ln 10 = 78.2 dB over ampeg_decay (measured
# in tests/test_sfizz.py); the studio's envelope falls 60 dB over its decay
SFZ_DECAY_DB = 180.0 / np.log(10.0)


def _region(x: np.ndarray, s, sample_rate: int, own_envelope: bool) -> tuple[np.ndarray, dict,
                                                                               str]:
    """A layer's sample [n] (at sample_rate), its shaping's opcodes and a note on what was
    rendered into the sample. A decay is the region's own envelope, unless the mix has an
    envelope of its own (own_envelope False): a region holds one, so then the layer's whole
    shaping is rendered into its sample (the decay follows the pitch and the filter)."""
    if shaping.is_plain(s):
        return x, {}, ""
    if s.decay is not None and not own_envelope:
        return (shaping.shape_layer(x, sample_rate, s), {},
                " (shaping rendered into the sample: the mix has its own envelope)")
    return x, shaping.sfz_opcodes(s, SFZ_DECAY_DB / 60.0), ""


def sfz_zip(weights: np.ndarray, sources: np.ndarray, names: list[str],
            offsets: dict[int, int], attack: float, hold: float, decay: float, gain_db: float,
            sample_rate: int, rate: int, recipe: dict, shapes: dict | None = None) -> bytes:
    """An SFZ instrument whose regions are the layers (each source at its weight as volume, its
    offset as delay, its shaping as transpose/tune, fil_type/cutoff and ampeg_decay; the
    envelope as ampeg_*), with the samples (24-bit, rate): a zip."""
    idx = [int(i) for i in np.flatnonzero(weights)]
    shapes = shapes or {}
    env = envelope(sources.shape[1], sample_rate, attack, hold, decay)
    _, scale = export_scale(render(weights, sources, offsets, env, gain_db, shapes, sample_rate),
                            sample_rate, rate)
    master = 20 * np.log10(scale)  # the level of the WAV export (its peak at `rate`)
    # the mix's envelope is 1 over the whole sound: a layer's decay can be its region's envelope
    flat = attack * sample_rate < 1 and hold >= sources.shape[1] / sample_rate
    # The master level goes into every region's volume: a region's `volume` replaces the
    # <global> one rather than adding to it (sfizz plays it so).
    headers = [sfz.header("global", {
        "lokey": 0, "hikey": 127, "pitch_keycenter": 60, "ampeg_attack": f"{attack:.4f}",
        "ampeg_hold": f"{hold:.4f}", "ampeg_decay": f"{decay * SFZ_DECAY_DB / 60.0:.4f}",
        "ampeg_sustain": 0})]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, i in enumerate(idx):
            fname = f"{n:02d}_{i:03d}_{safe_name(names[i])}.wav"
            x, ops, note = _region(sources[i], shapes.get(i), sample_rate, flat)
            x = audio.resample(x, sample_rate, rate) if rate != sample_rate else x
            z.writestr(f"{sfz.SAMPLES}/{fname}", wav_bytes(x, rate, "PCM_24"))
            delay = offsets.get(i, 0) / sample_rate
            # half a sample more: a player that floors delay * rate (sfizz does) starts the
            # region on the sample the WAV does
            delay_text = f"{delay + 0.5 / rate:.7f}" if delay > 0 else "0"
            volume = max(20 * np.log10(weights[i]) + master + gain_db, -144.0)  # SFZ's range
            # a region's envelope starts with the region: a delayed layer holds that much less,
            # so that its decay starts when the mix's does
            held = ({"ampeg_hold": f"{max(hold - delay, 0.0):.4f}"}
                    if delay > 0 and "ampeg_decay" not in ops else {})
            headers.append(sfz.header("region", {"sample": fname, "volume": f"{volume:.3f}",
                                                 "delay": delay_text, **held, **ops},
                                      names[i] + note))
        z.writestr("layered.sfz", sfz.instrument(
            "drumlayer: a layered one-shot; every region is one layer of the mix", headers))
        z.writestr("recipe.json", json.dumps(recipe, indent=1))
    return buf.getvalue()
