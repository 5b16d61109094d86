"""Velocity layers: a pad's sound at N velocities, the soft hits quieter and darker, as a real
drum's are.

Layer v of `n` covers velocities `ranges(n)[v]` (v = n - 1, the loudest, is the pad's own sound).
Its timbre comes from the pad's own latent space (`plan`): the direction along which the
model's sounds get louder and brighter around the pad's latent (`fit_direction`: least squares
of their standardised log RMS plus standardised RMS-weighted centroid on their standardised PCA
coordinates, on sounds drawn near the latent), and a step down it for each softer layer, chosen
darker than the layer above (`choose_steps`). It is played `level_db(hivel)` below the top.
Within a layer a player interpolates the gain linearly from `level_db(lovel) - level_db(hivel)`
at `lovel` to 0 dB at `hivel` (SFZ's amp_velcurve points; the studio's page does the same), so
the level follows the velocity without steps; the timbre steps from layer to layer.

Where the model cannot darken a layer enough (a weak direction, or one that bends back), the
layer's sound is low-passed as a sampler's velocity filter would (`darken`: the gentlest 2-pole
low-pass that puts its centroid at its target: DARKEN of the top layer's, spread over the
layers), so soft hits are always darker; the recipes say which cutoff each layer got.
"""

from __future__ import annotations

import numpy as np

from drumlayer.features import measures
from drumlayer.recipes import shaping

LAYERS = 4  # velocity layers per pad, by default
RANGE_DB = 24.0  # level of velocity 1 below velocity 127
SPAN = 1.5  # the softest layer lies about this many standard deviations below the pad's sound
POINTS = 64  # sounds near a pad's latent that its direction is fitted on
RADIUS = 0.5  # ... within this many standard deviations of it
GRID = 13  # sounds measured along the direction, from -2 SPAN to 0
DARKEN = 0.15  # the softest layer's centroid lies at least this fraction below the loudest's
CUTOFFS = np.geomspace(20000.0, 100.0, 48)  # the low-passes `darken` tries, gentlest first


def ranges(n: int) -> list[tuple[int, int]]:
    """n velocity ranges (lovel, hivel) covering 1..127 in order, without gaps or overlaps."""
    if not 1 <= n <= 127:
        raise ValueError(f"velocity layers must number 1 to 127, got {n}")
    hi = [127 * (v + 1) // n for v in range(n)]
    return [(1 if v == 0 else hi[v - 1] + 1, hi[v]) for v in range(n)]


def level_db(velocity) -> np.ndarray:
    """The level (dB, 0 at velocity 127) of a hit at velocity (1..127): linear in dB over
    RANGE_DB."""
    return -RANGE_DB * (127.0 - np.asarray(velocity, np.float64)) / 126.0


def velocity_gain(velocity: int, lovel: int, hivel: int) -> float:
    """The gain a player applies to a layer (lovel..hivel, its sample at the level of hivel)
    for a hit at velocity: linear from the level of lovel relative to hivel up to 1."""
    lo = 10.0 ** ((level_db(lovel) - level_db(hivel)) / 20.0)
    if hivel == lovel:
        return 1.0
    return float(lo + (1.0 - lo) * (velocity - lovel) / (hivel - lovel))


def _standardise(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / max(float(v.std()), 1e-12)


def fit_direction(coords: np.ndarray, rms: np.ndarray, centroid: np.ndarray,
                  pca: dict) -> dict:
    """The latent direction along which sounds get louder and brighter, from sounds at PCA
    coordinates coords [M, C] (in standard deviations) with RMS [M] and centroid (Hz) [M]:
    {'direction' [L] (a step of 1 is one standard deviation of the PCA's spread along the
    fit), 'rms_db_per_step', 'centroid_hz_per_step' (least-squares slopes along it), 'r2'}."""
    coords = np.asarray(coords, np.float64)
    loud = 20.0 * np.log10(np.maximum(np.asarray(rms, np.float64), 1e-12))
    bright = np.asarray(centroid, np.float64)
    y = _standardise(loud) + _standardise(bright)
    x = coords - coords.mean(axis=0)
    beta, *_ = np.linalg.lstsq(x, y - y.mean(), rcond=None)
    norm = float(np.linalg.norm(beta))
    if not norm > 0:
        raise ValueError("the model's sounds do not change in level or brightness along any "
                         "principal direction: no velocity direction to follow")
    unit = beta / norm  # in standardised PCA coordinates
    t = x @ unit  # each sound's position along it
    slope = lambda v: float(np.dot(t, v - v.mean()) / max(np.dot(t, t), 1e-12))  # noqa: E731
    resid = y - y.mean() - x @ beta
    r2 = 1.0 - float(np.dot(resid, resid) / max(np.dot(y - y.mean(), y - y.mean()), 1e-12))
    spread = np.sqrt(np.asarray(pca["variance"], np.float64))
    d = (unit * spread) @ np.asarray(pca["components"], np.float64)
    return {"direction": d.astype(np.float32), "rms_db_per_step": slope(loud),
            "centroid_hz_per_step": slope(bright), "r2": r2}


def steps(n: int, span: float = SPAN) -> np.ndarray:
    """[n] evenly spaced steps along the direction (in standard deviations) for layers 0..n-1:
    -span .. 0."""
    return np.array([0.0] if n == 1 else -span * (n - 1 - np.arange(n)) / (n - 1), np.float64)


def choose_steps(grid: np.ndarray, centroid: np.ndarray, n: int, span: float = SPAN
                 ) -> list[float]:
    """Steps [n] (softest first, the last 0) for the layers, from the sounds measured along the
    direction at steps grid [T] (one of them 0) with centroids [T]: each softer layer takes the
    step nearest `steps(n, span)` among those further down whose centroid is below the layer
    above's, so the layers darken in order even where the model bends back (measured: a step
    of -3 standard deviations can be brighter than one of -1.5); where none is darker, the
    layer keeps the timbre of the one above (only its level falls)."""
    grid, centroid = np.asarray(grid, np.float64), np.asarray(centroid, np.float64)
    at = int(np.argmin(np.abs(grid)))
    chosen, c_prev, t_prev = [0.0], centroid[at], 0.0
    for target in steps(n, span)[:-1][::-1]:
        ok = np.flatnonzero((grid < t_prev) & (centroid < c_prev))
        if len(ok):
            j = ok[np.argmin(np.abs(grid[ok] - target))]
            t_prev, c_prev = float(grid[j]), centroid[j]
        chosen.append(t_prev)
    return chosen[::-1]


def plan(measure, pca: dict, latent, n: int = LAYERS, span: float = SPAN, seed: int = 0,
         points: int = POINTS, radius: float = RADIUS) -> dict:
    """A pad's n velocity layers around its latent [L]. measure(z [M, L]) -> (RMS [M], centroid
    Hz [M]) of the pad's sound at those latents. The direction is fitted on `points` sounds
    within `radius` standard deviations of the latent (`fit_direction`; the model's response is
    local), the steps chosen on GRID sounds along it (`choose_steps`). Returns the fit's
    {'direction', 'rms_db_per_step', 'centroid_hz_per_step', 'r2'} and 'layers': [{'lovel',
    'hivel', 'step', 'level_db', 'latent' [L]}], softest first."""
    spread = np.sqrt(np.asarray(pca["variance"], np.float64))
    comps = np.asarray(pca["components"], np.float64)
    center = np.asarray(pca["center"], np.float64)
    z0 = np.asarray(latent, np.float64)
    u0 = ((z0 - center) @ comps.T) / spread
    coords = u0 + radius * np.random.default_rng(seed).standard_normal((points, len(spread)))
    rms, centroid = measure((center + (coords * spread) @ comps).astype(np.float32))
    fit = fit_direction(coords, rms, centroid, pca)
    grid = np.linspace(-2 * span, 0.0, GRID)
    line = (z0[None] + grid[:, None] * fit["direction"][None]).astype(np.float32)
    chosen = choose_steps(grid, measure(line)[1], n, span)
    layers = [{"lovel": lo, "hivel": hi, "step": round(t, 4),
               "level_db": round(float(level_db(hi)), 4),
               "latent": (z0 + t * fit["direction"]).astype(np.float32)}
              for (lo, hi), t in zip(ranges(n), chosen, strict=True)]
    return {**fit, "layers": layers}


def mix_measure(mix):
    """measure(z) for `plan` from mix(z [M, L]) -> audio [M, S] at 22.05 kHz: (RMS [M],
    RMS-weighted centroid [M])."""
    def measure(z):
        x = np.asarray(mix(z), np.float32)
        rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1))
        return rms, np.asarray(measures.descriptors(x)[0], np.float64)

    return measure


def centroid(x: np.ndarray, rate: int, n_fft: int = 2048, hop: int = 512) -> float:
    """The RMS-weighted spectral centroid (Hz) of x [n]: each Hann-windowed frame's centroid
    (of its magnitude spectrum, as librosa's), weighted by the frame's RMS."""
    x = np.asarray(x, np.float64)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=-1))
    hz = np.fft.rfftfreq(n_fft, 1.0 / rate)
    c = mag @ hz / np.maximum(mag.sum(axis=-1), 1e-30)
    rms = np.sqrt(np.mean(np.square(mag), axis=-1))
    return float(c @ rms / max(float(rms.sum()), 1e-30))


def darken(x: np.ndarray, rate: int, target_hz: float
           ) -> tuple[np.ndarray, float | None, float]:
    """(x, None, its centroid) when that is at most target_hz, else (x through the gentlest
    2-pole low-pass of CUTOFFS that brings it there (the steepest when none does), its cutoff,
    the centroid it left)."""
    c = centroid(x, rate)
    if c <= target_hz:
        return x, None, c
    for cut in CUTOFFS[CUTOFFS < rate / 2]:
        y = shaping.tone(x, "lpf", float(cut), rate)
        c = centroid(y, rate)
        if c <= target_hz:
            break
    return y.astype(np.float32), round(float(cut), 1), c


def voices(latents, measure, render, rate: int, pca: dict, n: int = LAYERS,
           span: float = SPAN, seed: int = 0) -> tuple[list[dict], list[dict], np.ndarray]:
    """A pad's velocity layers of each of its round robins. latents [RR, L]: the round robins'
    points; measure: as `plan`'s; render(latent [L], level_db) -> audio [samples] at rate of
    the pad's recipe at that point and level. Returns (layers: [{'lovel', 'hivel', 'level_db',
    'steps' [RR], 'latents' [RR, L], 'lowpass_hz' [RR] (`darken`'s; None where the model
    darkened it enough), 'centroid_hz' [RR]}] softest first, each round robin's fit {'r2',
    'rms_db_per_step', 'centroid_hz_per_step'}, audio [n, RR, samples])."""
    plans = [plan(measure, pca, z, n, span, seed + i) for i, z in enumerate(latents)]
    layers = [{"lovel": lo, "hivel": hi, "level_db": plans[0]["layers"][v]["level_db"],
               "steps": [p["layers"][v]["step"] for p in plans],
               "latents": np.stack([p["layers"][v]["latent"] for p in plans]),
               "lowpass_hz": [None] * len(plans), "centroid_hz": [0.0] * len(plans)}
              for v, (lo, hi) in enumerate(ranges(n))]
    audio = np.stack([np.stack([render(z, layer["level_db"]) for z in layer["latents"]])
                      for layer in layers]).astype(np.float32)
    for j in range(len(plans)):
        above = top = centroid(audio[-1, j], rate)
        layers[-1]["centroid_hz"][j] = round(top, 1)
        for v in range(n - 2, -1, -1):
            target = min(top * (1.0 - DARKEN * (n - 1 - v) / (n - 1)), above * 0.99)
            audio[v, j], layers[v]["lowpass_hz"][j], above = darken(audio[v, j], rate, target)
            layers[v]["centroid_hz"][j] = round(above, 1)
    fits = [{k: round(float(p[k]), 4) for k in ("r2", "rms_db_per_step", "centroid_hz_per_step")}
            for p in plans]
    return layers, fits, audio
