"""Seeded audio augmentations that turn one drum hit into plausible variants of it.

A small corpus (the open kits hold about 150 distinct snares; the paper had 2,495) needs more
training targets than it has. Each variant applies a random chain of musical edits a producer
would make: pitch (resampling), decay shortening, EQ tilt, saturation, transient emphasis and a
short room. Pure numpy on canonical clips; nothing here reads files.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from drumlayer.audio import SAMPLE_RATE, resample


def pitch(x: np.ndarray, semitones: float) -> np.ndarray:
    """Play faster/slower (pitch and length change together, like a sampler). [S] -> [S]."""
    ratio = 2.0 ** (semitones / 12.0)
    y = resample(x, SAMPLE_RATE * ratio, SAMPLE_RATE)
    return np.pad(y, (0, max(0, x.size - y.size)))[: x.size]


def decay(x: np.ndarray, tau: float) -> np.ndarray:
    """Shorten the tail with an exponential envelope of time constant tau seconds."""
    t = np.arange(x.size) / SAMPLE_RATE
    return x * np.exp(-t / tau)


def tilt(x: np.ndarray, db: float) -> np.ndarray:
    """EQ tilt: db > 0 brightens, db < 0 darkens, pivoting around ~1 kHz (first-order shelf)."""
    sos = signal.butter(1, 1000.0, btype="high", fs=SAMPLE_RATE, output="sos")
    high = signal.sosfilt(sos, x)
    gain = 10.0 ** (db / 20.0) - 1.0
    return x + gain * high


def saturate(x: np.ndarray, drive: float) -> np.ndarray:
    """tanh saturation with `drive` (>= 1) of the peak-normalised input."""
    return np.tanh(drive * x) / np.tanh(drive)


def transient(x: np.ndarray, amount: float, ms: float = 15.0) -> np.ndarray:
    """Emphasise (amount > 0) or soften (< 0) the first `ms` of the hit."""
    n = int(ms * 1e-3 * SAMPLE_RATE)
    env = np.ones(x.size)
    env[:n] += amount * np.linspace(1.0, 0.0, n)
    return x * env


def room(x: np.ndarray, rng: np.random.Generator, rt: float, wet: float) -> np.ndarray:
    """A short room: convolution with decaying noise of reverberation time rt seconds."""
    n = int(rt * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt)  # -60 dB at rt
    ir /= np.sqrt(np.sum(ir**2))
    wet_sig = signal.fftconvolve(x, ir)[: x.size]
    return (1.0 - wet) * x + wet * wet_sig


def augment_clip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random chain of the edits above: float32 [S] -> float32 [S], peak 1."""
    y = x.astype(np.float64)
    if rng.random() < 0.8:
        y = pitch(y, rng.uniform(-3.0, 3.0))
    if rng.random() < 0.5:
        y = decay(y, rng.uniform(0.05, 0.4))
    if rng.random() < 0.6:
        y = tilt(y, rng.uniform(-6.0, 6.0))
    if rng.random() < 0.3:
        y = saturate(y / (np.abs(y).max() + 1e-12), rng.uniform(1.5, 4.0))
    if rng.random() < 0.4:
        y = transient(y, rng.uniform(-0.5, 1.5))
    if rng.random() < 0.3:
        y = room(y, rng, rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.35))
    peak = np.abs(y).max()
    return (y / peak if peak > 0 else y).astype(np.float32)


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
