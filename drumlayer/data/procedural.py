"""A seeded procedural snare generator: the fallback corpus when no real samples are found.

A snare is modelled as its two parts: the drum head (a few inharmonic, pitch-dropping damped
modes) and the snare wires (band-passed noise with its own decay), plus a click transient.
Every parameter is drawn per clip, so the set is diverse; the same seed gives the same set.
This is no substitute for recordings (see docs/data.md for real kits); it keeps the pipeline
runnable.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from drumlayer.data.audio import SAMPLE_RATE


def procedural_snare(rng: np.random.Generator, samples: int, rate: int = SAMPLE_RATE):
    """One synthetic snare -> float32 [samples], peak 1."""
    t = np.arange(samples) / rate
    f0 = rng.uniform(150.0, 280.0)
    drop = rng.uniform(0.0, 0.3)  # pitch drop of the head after the strike
    head = np.zeros(samples)
    for ratio, amp in ((1.0, 1.0), (1.59, rng.uniform(0.2, 0.7)), (2.14, rng.uniform(0.1, 0.5))):
        f = f0 * ratio * (1.0 + drop * np.exp(-t / 0.01))
        phase = 2 * np.pi * np.cumsum(f) / rate
        head += amp * np.sin(phase) * np.exp(-t / rng.uniform(0.03, 0.15))
    lo = rng.uniform(1500.0, 4000.0)
    hi = min(lo * rng.uniform(2.0, 4.0), 0.45 * rate)
    sos = signal.butter(2, [lo, hi], btype="band", fs=rate, output="sos")
    wires = signal.sosfilt(sos, rng.standard_normal(samples))
    wires *= np.exp(-t / rng.uniform(0.05, 0.3))
    click = np.exp(-t / 0.0015) * rng.standard_normal(samples) * rng.uniform(0.0, 0.5)
    mix = rng.uniform(0.3, 1.0) * head / (np.abs(head).max() + 1e-9)
    mix += rng.uniform(0.3, 1.0) * wires / (np.abs(wires).max() + 1e-9) + click
    return (mix / np.abs(mix).max()).astype(np.float32)


def procedural_snares(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """n synthetic snares -> float32 [n, samples]; seeded, deterministic."""
    rng = np.random.default_rng(seed)
    return np.stack([procedural_snare(rng, samples) for _ in range(n)])
