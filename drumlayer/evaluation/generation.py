"""Are the sounds the latent space generates good drums? The sounds a person hears from the
model without a target, measured against real held-out clips in a descriptor space.

Generated (`generated`), each `DRAWS` mixes of the bundle's sources:
- 'random_point': the studio's "random point", a Gaussian along each principal direction of
  the latent means (its variance), decoded;
- 'prior': z ~ N(0, I), decoded (what a VAE's prior promises);
- 'variations': each test clip's latent mean moved as the kit export's round robins are
  (`features.measures.jitter`), decoded;
- baselines: 'random_sparse_mixes', Dirichlet weights over as many random sources as the
  random points' median number of active layers; 'random_single_sources', the sources
  themselves (each once, at most DRAWS).

Measured (`measure`), in the standardised space of `descriptor_matrix` (RMS-weighted MFCC
means and spreads, the RMS-weighted centroid in octaves, the log attack time and the decay
time): the manifold measures (`manifold.matched`: precision, recall, density, coverage, each
set measured in subsets as large as the real one) against the held-out clips (test split and
out of library), with the training clips against the same held-out clips as the reference
line; and novelty, the median distance from each
sound to its nearest training clip and to its nearest single source, beside the held-out
clips' own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.evaluation import manifold
from drumlayer.features import descriptors as descriptors_lib
from drumlayer.features import measures, spectral
from drumlayer.features.attack import soft_log_attack_time
from drumlayer.features.batching import in_blocks

DRAWS = 256
DECAY_DB = 20.0  # the decay time: from the loudest frame until 20 dB below it
SETS = ("random_point", "prior", "variations", "random_sparse_mixes", "random_single_sources")
BASELINES = ("random_sparse_mixes", "random_single_sources")


def _frame_descriptors(clips):
    """clips [B, S] -> ([B, 13] MFCC means, [B, 13] MFCC spreads (RMS-weighted), [B] centroid
    in octaves above 55 Hz, [B] log attack time, [B] decay time in s)."""
    m = descriptors_lib.mfcc(clips)  # [B, T, 13]
    rms = spectral.frame_rms(clips)[..., :m.shape[-2]]  # [B, T]
    w = rms / jnp.maximum(rms.sum(-1, keepdims=True), 1e-12)
    mean = jnp.einsum("bt,btc->bc", w, m)
    spread = jnp.sqrt(jnp.einsum("bt,btc->bc", w, (m - mean[:, None]) ** 2) + 1e-12)
    centroid = descriptors_lib.weighted_centroid(clips, chunk=None)
    octaves = jnp.log2(jnp.maximum(centroid, 55.0) / 55.0)
    db = 20.0 * jnp.log10(jnp.maximum(rms, 1e-9))
    peak = jnp.argmax(db, axis=-1)
    t = jnp.arange(db.shape[-1])
    below = (db <= db.max(-1, keepdims=True) - DECAY_DB) & (t[None] > peak[:, None])
    last = jnp.where(below.any(-1), jnp.argmax(below, axis=-1), db.shape[-1])
    decay = (last - peak) * spectral.HOP / spectral.SAMPLE_RATE
    return mean, spread, octaves, soft_log_attack_time(clips, spectral.SAMPLE_RATE), decay


_jitted = jax.jit(_frame_descriptors)


def descriptor_matrix(clips: np.ndarray) -> np.ndarray:
    """clips [N, S] at 22.05 kHz -> [N, 29]: MFCC means (13) and spreads (13), centroid
    (octaves above 55 Hz), log attack time, decay time (s)."""
    mean, spread, octaves, attack, decay = in_blocks(_jitted,
                                                     np.asarray(clips, np.float32))
    return np.concatenate([np.asarray(mean), np.asarray(spread), np.asarray(octaves)[:, None],
                           np.asarray(attack)[:, None], np.asarray(decay)[:, None]], axis=1)


def dirichlet_mixes(k: int, layers: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, k] weights: each over `layers` random sources (of k), Dirichlet(1) shares."""
    w = np.zeros((n, k), np.float32)
    layers = int(min(max(layers, 1), k))
    for i in range(n):
        pick = rng.choice(k, size=layers, replace=False)
        w[i, pick] = rng.dirichlet(np.ones(layers))
    return w


def generated(b, z_test: np.ndarray, decode, seed: int = 0, draws: int = DRAWS) -> dict:
    """{set: weights [draws, k]} of each of SETS for the bundle b, z_test [N, L] the test
    clips' latent means (for 'variations'); decode(b, z [M, L]) -> weights [M, k]."""
    rng = np.random.default_rng(seed)
    pca = b.pca
    centre = np.asarray(pca["center"], np.float32)
    comps = np.asarray(pca["components"], np.float32)
    spread = np.sqrt(np.asarray(pca["variance"], np.float32))
    out = {"random_point": centre + (rng.standard_normal((draws, len(spread))) * spread)
           @ comps,
           "prior": rng.standard_normal((draws, b.latent)).astype(np.float32)}
    per = int(np.ceil(draws / len(z_test)))
    out["variations"] = np.concatenate([measures.jitter(pca, z, per, seed + i)
                                        for i, z in enumerate(z_test)])[:draws]
    weights = {name: decode(b, z.astype(np.float32)) for name, z in out.items()}
    active = float(np.median(np.asarray(measures.active_layers(weights["random_point"]))))
    weights["random_sparse_mixes"] = dirichlet_mixes(b.k, round(active), draws, rng)
    # each source once (a repeated source would shrink its neighbours' balls to nothing)
    weights["random_single_sources"] = np.eye(b.k, dtype=np.float32)[
        rng.permutation(b.k)[:draws]]
    return weights


def measure(held_out: np.ndarray, train: np.ndarray, sources: np.ndarray,
            sets: dict[str, np.ndarray], k: int = manifold.K) -> dict:
    """Descriptor matrices: held_out [N, D] real clips, train [T, D] training clips, sources
    [K, D], sets {name: [M, D]} -> {'k', 'real_against_real': manifold measures of train
    against held_out, 'held_out_novelty': {to_train, to_sources} medians, name: {manifold
    measures, 'novelty': {to_train, to_sources}}}; k shrinks to fit the smallest set."""
    k = int(min(k, len(held_out) - 1, *(len(v) - 1 for v in (train, *sets.values()))))
    if k < 1:
        raise ValueError(f"{len(held_out)} held-out clips: too few for the manifold measures")
    z_real, z_train, z_src, *z_sets = manifold.standardise(held_out, train, sources,
                                                           *sets.values())

    def novelty(x):
        return {"to_train": float(np.median(manifold.nearest(x, z_train))),
                "to_sources": float(np.median(manifold.nearest(x, z_src)))}

    out = {"k": k, "held_out": len(held_out),
           "real_against_real": manifold.matched(z_real, z_train, k),
           "held_out_novelty": novelty(z_real)}
    for name, z in zip(sets, z_sets, strict=True):
        out[name] = {**manifold.matched(z_real, z, k), "novelty": novelty(z)}
    return out
