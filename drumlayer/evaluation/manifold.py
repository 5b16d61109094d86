"""How generated sounds sit among real ones: the k-nearest-neighbour manifold measures of
generative models, in a descriptor space where every axis counts alike.

Pure numpy. Each set is a matrix of descriptors [N, D] (one row a sound); `standardise`
puts both sets on the real set's scale first.

- **Precision** (Kynkäänniemi et al. 2019): the share of generated sounds inside the real
  manifold, the union of balls around each real sound reaching its k-th nearest real neighbour.
- **Recall**: the share of real sounds inside the generated manifold (the same, the other way).
- **Density** (Naeem et al. 2020): how many real balls a generated sound is in, over k,
  averaged: 1 where generated sounds are spread as the real ones are, above 1 where they crowd
  the real sounds' dense regions.
- **Coverage** (Naeem et al. 2020): the share of real sounds whose ball holds a generated one.
Sets of one size (`matched`): a larger generated set is measured in subsets as large as the
real one.

- **Novelty** (`nearest`): each generated sound's distance to its nearest sound of a reference
  set (a copy of a training clip scores 0).
"""

from __future__ import annotations

import numpy as np

K = 5


def standardise(real: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """[real, *others], each [N, D], centred and scaled by the real set's mean and spread per
    axis (an axis that does not vary is left unscaled)."""
    real = np.asarray(real, np.float64)
    mean, spread = real.mean(axis=0), real.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    return [(np.asarray(x, np.float64) - mean) / spread for x in (real, *others)]


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [N, M] between the rows of a [N, D] and b [M, D]."""
    d2 = (np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None]
          - 2.0 * a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def radii(x: np.ndarray, k: int = K) -> np.ndarray:
    """[N] each row's distance to its k-th nearest other row of x [N, D] (N > k)."""
    if len(x) <= k:
        raise ValueError(f"{len(x)} sounds: the k = {k} nearest neighbours need more than {k}")
    d = pairwise(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the row itself


def measures(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    """{'precision', 'recall', 'density', 'coverage'} of fake [M, D] against real [N, D] (the
    same space; `standardise` first)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_real, r_fake = radii(real, k), radii(fake, k)
    d = pairwise(real, fake)  # [N, M]
    inside_real = d <= r_real[:, None]  # fake j inside real i's ball
    return {"precision": float(np.mean(inside_real.any(axis=0))),
            "recall": float(np.mean((d <= r_fake[None]).any(axis=1))),
            "density": float(inside_real.sum() / (k * fake.shape[0])),
            "coverage": float(np.mean(d.min(axis=1) <= r_real))}


def matched(real: np.ndarray, fake: np.ndarray, k: int = K, seed: int = 0) -> dict[str, float]:
    """`measures` of fake against real at one size: averaged over disjoint random subsets of
    fake [M, D] as large as real [N, D] (all of fake when M < 2N). The measures assume sets of
    one size: the balls of a larger set are smaller, and its recall lower."""
    fake = np.asarray(fake, np.float64)
    parts = max(len(fake) // len(real), 1)
    order = np.random.default_rng(seed).permutation(len(fake))
    subsets = [fake] if parts == 1 else [fake[order[i * len(real):(i + 1) * len(real)]]
                                         for i in range(parts)]
    each = [measures(real, f, k) for f in subsets]
    return {m: float(np.mean([e[m] for e in each])) for m in each[0]}


def nearest(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[N] each row of x [N, D]'s distance to its nearest row of reference [M, D]."""
    return pairwise(np.asarray(x, np.float64), np.asarray(reference, np.float64)).min(axis=1)
