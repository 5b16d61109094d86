"""Numbers that describe mixes and how close they are to their targets: pure, jit-compiled JAX.

- descriptors of a sound: RMS-weighted spectral centroid (Hz) and 13 MFCCs (the paper's 4.1);
- distances between a reconstruction and its target: log-spectral distance (dB), multi-resolution
  STFT distance, MFCC distance, centroid error;
- cardinality of weight vectors; linearity (R^2) of a curve; PCA of latent vectors.

Clips are [..., S] at 22,050 Hz; weights are [..., k]. Nothing here does I/O or knows a config.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.features import batching, spectral
from drumlayer.features import descriptors as descriptors_lib

MRSTFT_SIZES = (512, 1024, 2048)  # hop = size // 4 (Yamamoto et al. 2020, Engel et al. 2020)
CARDINALITY_THRESHOLDS = (0.001, 0.01, 0.04)
ACTIVE = 0.01  # a layer "is active" when its share of the mix exceeds this
PRUNE = 0.04  # the paper's listening threshold (Section 4.4)
JITTER = 0.5  # variants: this many standard deviations along each principal direction, at most


def descriptors(clips: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(RMS-weighted centroid in Hz [...], RMS-weighted MFCC [..., 13]) of clips [..., S]."""
    return descriptors_lib.weighted_centroid(clips), descriptors_lib.weighted_mfcc(clips)


def _power_db(clips: jax.Array, n_fft: int, hop: int) -> jax.Array:
    return 10.0 * jnp.log10(jnp.maximum(jnp.abs(spectral.stft(clips, n_fft, hop)) ** 2, 1e-10))


@functools.partial(jax.jit, static_argnames=("n_fft", "hop", "top_db"))
def log_spectral_distance(est: jax.Array, ref: jax.Array, n_fft: int = 2048, hop: int = 512,
                          top_db: float = 80.0) -> jax.Array:
    """Log-spectral distance in dB: est, ref [..., S] -> [...].

    Power spectra in dB, both floored at (the reference's loudest bin - top_db) so that silence
    does not count as an infinite difference; per frame the RMS over bins of the dB difference,
    then the mean over the frames where the reference is not entirely at the floor."""
    return db_spectral_distance(_power_db(est, n_fft, hop), _power_db(ref, n_fft, hop), top_db)


def db_spectral_distance(e: jax.Array, r: jax.Array, top_db: float = 80.0,
                         eps: float = 0.0) -> jax.Array:
    """`log_spectral_distance` of power spectrograms in dB e, r [..., T, F] -> [...]; eps is
    added under each frame's square root (> 0 where a gradient is taken: the root's is infinite
    at 0)."""
    floor = jnp.max(r, axis=(-2, -1), keepdims=True) - top_db
    e, r = jnp.maximum(e, floor), jnp.maximum(r, floor)
    per_frame = jnp.sqrt(jnp.mean((e - r) ** 2, axis=-1) + eps)
    live = jnp.any(r > floor, axis=-1).astype(per_frame.dtype)
    return jnp.sum(per_frame * live, axis=-1) / jnp.maximum(jnp.sum(live, axis=-1), 1.0)


@functools.partial(jax.jit, static_argnames=("sizes",))
def multi_resolution_stft(est: jax.Array, ref: jax.Array,
                          sizes: tuple[int, ...] = MRSTFT_SIZES) -> jax.Array:
    """Multi-resolution STFT distance: est, ref [..., S] -> [...]. The mean over FFT sizes of
    spectral convergence ||R - E||_F / ||R||_F plus mean |log(R + 1e-7) - log(E + 1e-7)|, with
    R, E the STFT magnitudes (Hann window, hop = size / 4)."""
    total = 0.0
    for n in sizes:
        e = jnp.abs(spectral.stft(est, n, n // 4))
        r = jnp.abs(spectral.stft(ref, n, n // 4))
        sc = jnp.sqrt(jnp.sum((r - e) ** 2, axis=(-2, -1))) / jnp.maximum(
            jnp.sqrt(jnp.sum(r**2, axis=(-2, -1))), 1e-12)
        mag = jnp.mean(jnp.abs(jnp.log(r + 1e-7) - jnp.log(e + 1e-7)), axis=(-2, -1))
        total = total + sc + mag
    return total / len(sizes)


DISTANCES = ("log_spectral_distance_db", "mfcc_distance", "centroid_error_hz")


def distances(est: jax.Array, ref: jax.Array, ref_descriptors: tuple | None = None) -> dict:
    """{'log_spectral_distance_db', 'mfcc_distance', 'centroid_error_hz'} [B] of est against
    ref (both [B, S]); ref_descriptors: ref's (centroid [B], MFCC [B, 13]) when already known."""
    c, m = descriptors(est)
    rc, rm = descriptors(ref) if ref_descriptors is None else ref_descriptors
    return {"log_spectral_distance_db": log_spectral_distance(est, ref),
            "mfcc_distance": jnp.linalg.norm(m - rm, axis=-1),
            "centroid_error_hz": jnp.abs(c - rc)}


_distances = jax.jit(distances)


def batch_distances(est: np.ndarray, ref: np.ndarray) -> dict:
    """`distances` of est against ref ([N, S] each), in jit-compiled blocks -> dict of [N]."""
    return batching.in_blocks(_distances, est, ref, block=batching.block_size(len(ref), 64))


def active_layers(weights: jax.Array, threshold: float = ACTIVE) -> jax.Array:
    """Layers whose share of the weights' sum exceeds threshold: [..., k] -> [...] (int)."""
    share = weights / jnp.maximum(jnp.sum(weights, axis=-1, keepdims=True), 1e-12)
    return jnp.sum(share > threshold, axis=-1)


def prune(weights: jax.Array, threshold: float = PRUNE) -> jax.Array:
    """Weights below threshold removed and the rest renormalised to the original sum; a row with
    nothing above the threshold keeps its largest weight. [..., k] -> [..., k]."""
    largest = jax.nn.one_hot(jnp.argmax(weights, axis=-1), weights.shape[-1]) > 0
    keep = (weights >= threshold) | largest
    kept = jnp.where(keep, weights, 0.0)
    return kept * jnp.sum(weights, -1, keepdims=True) / jnp.sum(kept, -1, keepdims=True)


def cardinality(weights: np.ndarray,
                thresholds: tuple[float, ...] = CARDINALITY_THRESHOLDS) -> dict:
    """Per weight vector of [N, k]: how many exceed each threshold, and the largest.
    Returns {'above_<t>': [N] ints, 'max_weight': [N]}."""
    w = np.asarray(weights)
    out = {f"above_{t:g}": np.sum(w > t, axis=-1) for t in thresholds}
    out["max_weight"] = np.max(w, axis=-1)
    return out


def r_squared(y: np.ndarray, x: np.ndarray | None = None) -> float:
    """How linear a curve y [T] is: R^2 of its least-squares line over x (default 0..1)."""
    y = np.asarray(y, np.float64)
    x = np.linspace(0.0, 1.0, len(y)) if x is None else np.asarray(x, np.float64)
    slope, icept = np.polyfit(x, y, 1)
    ss_res = np.sum((y - (slope * x + icept)) ** 2)
    ss_tot = np.sum((y - y.mean()) ** 2)
    return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else 1.0


def pca(z: np.ndarray, n: int) -> dict:
    """Principal directions of z [N, L]: {'center' [L], 'components' [n, L] (unit rows, by
    decreasing variance, sign fixed so the largest entry is positive), 'variance' [n] (along
    each, ddof 1), 'explained' [n] (fraction of the total variance)}."""
    z = np.asarray(z, np.float64)
    n = min(n, z.shape[1])
    center = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - center, full_matrices=False)
    comps = vt[:n]
    comps *= np.sign(comps[np.arange(n), np.argmax(np.abs(comps), axis=1)])[:, None]
    var = s**2 / max(len(z) - 1, 1)
    return {"center": center.astype(np.float32), "components": comps.astype(np.float32),
            "variance": var[:n], "explained": var[:n] / max(var.sum(), 1e-30)}


def jitter(pca: dict, z: np.ndarray, n: int, seed: int, amount: float = JITTER) -> np.ndarray:
    """n seeded variants of z [L]: z moved by up to `amount` standard deviations along each
    principal direction of the latent PCA (`pca`) -> [n, L] (a kit pad's round robins)."""
    comps = np.asarray(pca["components"], np.float32)
    spread = np.sqrt(np.asarray(pca["variance"], np.float32))
    steps = np.random.default_rng(seed).uniform(-amount, amount, (n, len(spread))) * spread
    return (np.asarray(z, np.float32)[None] + steps @ comps).astype(np.float32)


def path_distances(weights: jax.Array, centroid: jax.Array, mfcc: jax.Array) -> dict:
    """Distances from the start of each path: weights [P, T, k], centroid [P, T], mfcc [P, T, 13]
    -> {'weights': L2 [P, T], 'centroid': absolute Hz [P, T], 'mfcc': L2 [P, T]}."""
    return {"weights": jnp.linalg.norm(weights - weights[:, :1], axis=-1),
            "centroid": jnp.abs(centroid - centroid[:, :1]),
            "mfcc": jnp.linalg.norm(mfcc - mfcc[:, :1], axis=-1)}


def new_layers_mid_path(weights: np.ndarray, threshold: float = ACTIVE) -> np.ndarray:
    """Layers active somewhere strictly inside a path but at neither end: [P, T, k] -> [P]."""
    active = np.asarray(weights) > threshold
    ends = active[:, 0] | active[:, -1]
    inside = active[:, 1:-1].any(axis=1)
    return np.sum(inside & ~ends, axis=-1)
