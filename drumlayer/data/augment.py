"""Seeded audio augmentations that turn one drum hit into plausible variants of it.

A small corpus (the open kits hold about 150 distinct snares; the paper had 2,495) needs more
training targets than it has. Each variant applies a random chain of musical edits a producer
would make: pitch (resampling), decay shortening, EQ tilt, saturation, transient emphasis and a
short room. Pure numpy on canonical clips; nothing here reads files. Every edit takes the clip's
`rate`, so that a variant can be made again from the full-band recording (`fullband`): the same
random draws give the same edits at any rate.
"""

from __future__ import annotations

import numpy as np

from drumlayer.data.audio import SAMPLE_RATE, resample


def pitch(x: np.ndarray, semitones: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play faster/slower (pitch and length change together, like a sampler). [S] -> [S]."""
    ratio = 2.0 ** (semitones / 12.0)
    y = resample(x, rate * ratio, rate)
    return np.pad(y, (0, max(0, x.size - y.size)))[: x.size]


def decay(x: np.ndarray, tau: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Shorten the tail with an exponential envelope of time constant tau seconds."""
    t = np.arange(x.size) / rate
    return x * np.exp(-t / tau)


def tilt(x: np.ndarray, db: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """EQ tilt: db > 0 brightens, db < 0 darkens, pivoting around ~1 kHz (first-order shelf)."""
    from scipy import signal  # ~1.7 s to import: only where a variant is made (not the studio)

    sos = signal.butter(1, 1000.0, btype="high", fs=rate, output="sos")
    high = signal.sosfilt(sos, x)
    gain = 10.0 ** (db / 20.0) - 1.0
    return x + gain * high


def saturate(x: np.ndarray, drive: float) -> np.ndarray:
    """tanh saturation with `drive` (>= 1) of the peak-normalised input."""
    return np.tanh(drive * x) / np.tanh(drive)


def transient(x: np.ndarray, amount: float, ms: float = 15.0,
              rate: int = SAMPLE_RATE) -> np.ndarray:
    """Emphasise (amount > 0) or soften (< 0) the first `ms` of the hit."""
    n = int(ms * 1e-3 * rate)
    env = np.ones(x.size)
    env[:n] += amount * np.linspace(1.0, 0.0, n)
    return x * env


def room(x: np.ndarray, rng: np.random.Generator, rt: float, wet: float,
         rate: int = SAMPLE_RATE) -> np.ndarray:
    """A short room: convolution with decaying noise of reverberation time rt seconds. The
    noise is drawn at SAMPLE_RATE at any rate (then resampled, at the gain that keeps the
    convolution's level), so that the same draws make the same room."""
    n = int(rt * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt)  # -60 dB at rt
    ir /= np.sqrt(np.sum(ir**2))
    if rate != SAMPLE_RATE:
        ir = resample(ir, SAMPLE_RATE, rate) * (SAMPLE_RATE / rate)
    from scipy import signal  # as in tilt

    wet_sig = signal.fftconvolve(x, ir)[: x.size]
    return (1.0 - wet) * x + wet * wet_sig


def augment_clip(x: np.ndarray, rng: np.random.Generator,
                 rate: int = SAMPLE_RATE) -> np.ndarray:
    """A random chain of the edits above: float32 [S] (at `rate`) -> float32 [S], peak 1."""
    y = x.astype(np.float64)
    if rng.random() < 0.8:
        y = pitch(y, rng.uniform(-3.0, 3.0), rate)
    if rng.random() < 0.5:
        y = decay(y, rng.uniform(0.05, 0.4), rate)
    if rng.random() < 0.6:
        y = tilt(y, rng.uniform(-6.0, 6.0), rate)
    if rng.random() < 0.3:
        y = saturate(y / (np.abs(y).max() + 1e-12), rng.uniform(1.5, 4.0))
    if rng.random() < 0.4:
        y = transient(y, rng.uniform(-0.5, 1.5), rate=rate)
    if rng.random() < 0.3:
        y = room(y, rng, rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.35), rate)
    peak = np.abs(y).max()
    return (y / peak if peak > 0 else y).astype(np.float32)


def variant(clip: np.ndarray, seed: int, parent: int, j: int,
            rate: int = SAMPLE_RATE) -> np.ndarray:
    """Variant j of corpus clip `parent` [S] (at `rate`), as the augmentation stage of a run
    with seed `seed` makes it: its random draws depend only on (seed, parent, j)."""
    rng = np.random.default_rng([seed * 1_000_003 + parent, 0, j])
    return augment_clip(np.asarray(clip), rng, rate)


def augment(clips: np.ndarray, per_clip: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """clips [n, S] -> (variants [n*per_clip, S] float32, parent index [n*per_clip] int).

    Deterministic for a seed: variant j of clip i depends only on (seed, i, j).
    """
    n = clips.shape[0]
    out = np.empty((n * per_clip, clips.shape[1]), np.float32)
    parents = np.repeat(np.arange(n), per_clip)
    for i in range(n):
        for j in range(per_clip):
            rng = np.random.default_rng([seed, i, j])
            out[i * per_clip + j] = augment_clip(np.asarray(clips[i]), rng)
    return out, parents


def layered(clips: np.ndarray, seed: int, i: int, j: int) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Layered target j of clip i: clips[i] with one or two other clips of `clips` [n, S]
    (n >= 2) mixed under it at random gains, as a producer layers samples. Its draws depend only
    on (seed, i, j). Returns (mix float32 [S], peak 1; the clips' indices [m], i first; their
    gains [m], 1 for clips[i])."""
    rng = np.random.default_rng([seed * 1_000_003 + i, 1, j])
    n = len(clips)
    others = rng.choice(n - 1, size=min(n - 1, int(rng.integers(1, 3))), replace=False)
    idx = np.concatenate([[i], others + (others >= i)]).astype(np.int64)
    gains = np.concatenate([[1.0], rng.uniform(0.15, 0.8, len(others))])
    y = gains @ np.asarray(clips[idx], np.float64)
    peak = np.abs(y).max()
    return (y / peak if peak > 0 else y).astype(np.float32), idx, gains

