"""The refinement's modes side by side on a trained run's test split and out-of-library set,
every recipe rendered as the studio plays it (its shaping included), at 22.05 kHz.

    compare(workdir) -> {split: {"clips": n, "matching_pursuit": {measure: median},
                                 "phase_randomised": {measure: median},
                                 mode: {measure: median, "active_layers": median,
                                        "shaped_layers": median, "most_active": max,
                                        "ms_per_sound": ...}}}

Matching pursuit's medians are read from the run's own evaluation (eval/metrics.json), over
the same sources and clips. `python docs/regenerate.py shaping` writes docs/shaping.md from it.
"""

from __future__ import annotations

import json
import time

import numpy as np

from drumlayer.data.dataset import OUTSIDE
from drumlayer.evaluation.evaluate import load_test, recipe_mixes
from drumlayer.features import batching, measures
from drumlayer.recipes import refine
from drumlayer.recipes.bundle import Bundle
from drumlayer.workdir import Workdir


def _mode(b: Bundle, clips: np.ndarray, config: refine.AnalyzeConfig) -> dict:
    an = refine.Analyzer.from_bundle(b, config)
    size = batching.block_size(len(clips), 64)
    an(np.zeros((size, clips.shape[1]), np.float32))  # compiled for its block before it is timed
    t0 = time.perf_counter()
    r = refine.refine_all(an, clips)
    seconds = (time.perf_counter() - t0) / len(clips)
    x, active, shaped = recipe_mixes(b, an, r)
    return {**_medians(b, x, clips),
            "active_layers": float(np.median(active)), "most_active": int(max(active)),
            "shaped_layers": float(np.median(shaped)), "ms_per_sound": 1e3 * seconds}


MEASURES = (*measures.DISTANCES, "feature_mse")


def _medians(b: Bundle, x: np.ndarray, clips: np.ndarray) -> dict:
    """The medians of the distances of x to clips ([N, S] each) and of their features' MSE."""
    d = measures.batch_distances(x, clips)
    d["feature_mse"] = np.mean((np.asarray(b.features(x)) - np.asarray(b.features(clips))) ** 2,
                               axis=-1)
    return {k: float(np.median(d[k])) for k in MEASURES}


def phase_randomised(clips: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each clip [N, S] with the magnitudes of its STFT (the LSD's: 2048 points, hop 512) and
    random phases, resynthesised by overlap-add: a sound with the target's time-frequency
    envelope and another fine structure, the reference for what a mix of other recordings
    can reach."""
    from scipy import signal

    rng = np.random.default_rng(seed)
    out = np.empty_like(clips)
    for i, x in enumerate(clips):
        z = signal.stft(x, nperseg=2048, noverlap=1536)[2]
        y = signal.istft(np.abs(z) * np.exp(2j * np.pi * rng.random(z.shape)), nperseg=2048,
                         noverlap=1536)[1]
        out[i] = y[: len(x)]
    return out


def compare(workdir: str, modes: tuple = ("weights", "shape"),
            overrides: dict | None = None) -> dict:
    """Every mode on both sets (module docstring); overrides: AnalyzeConfig fields for all."""
    b = Bundle.load(workdir)
    with open(Workdir(workdir).eval.metrics) as f:
        metrics = json.load(f)
    out = {}
    for split, rec in (("test", metrics["reconstruction"]),
                       (OUTSIDE, metrics.get("outside", {}).get("reconstruction"))):
        test = load_test(workdir, split) if split == OUTSIDE else load_test(workdir)
        if test is None or rec is None:
            continue
        clips = np.asarray(test.audio, np.float32)
        row = {"clips": len(clips), "matching_pursuit": {
            k: rec["matching_pursuit"][k]["median"] for k in MEASURES},
            "phase_randomised": _medians(b, phase_randomised(clips), clips)}
        for mode in modes:
            row[mode] = _mode(b, clips, refine.AnalyzeConfig(mode=mode, **(overrides or {})))
        out[split] = row
    return out
