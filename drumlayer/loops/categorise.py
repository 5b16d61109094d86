"""Which drums sound at an onset: a small network over the onset's log-mel patch, trained on
onsets mixed from the kit corpus's own one-shots (training and validation splits only).

- **The patch** (`patch`): the mel band powers (`transcribe.BANDS`) of `FRAMES` frames of
  1024 samples every `HOP`, from two frames before the onset (what rings on from earlier hits)
  to ~130 ms after it, in dB below the loudest band after the onset (floored at -80 dB): the
  level of the hit does not matter, its shape does.
- **The mixtures** (`mixtures`): what a loop's onset looks like, made from one-shots whose
  category is known: one to three drums at once (a few ms apart, as a drummer's hands are) at
  levels 0-22 dB apart, after up to three earlier hits 30-300 ms before that ring on, and
  before a next hit 30-350 ms after. The drums are drawn by `PRIOR` (a loop holds more hats
  than toms).
- **The network** (`Categoriser`): one hidden layer of `HIDDEN` ReLUs and a sigmoid per
  category (a kick and a hat at one instant are both present), trained with Adam on the
  binary cross-entropy; a category sounds where its probability is at least `THRESHOLD`.

Measured against the decomposition over templates alone on the loops benchmark:
docs/loops.md.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os

import numpy as np

from drumlayer.loops import transcribe as tr
from drumlayer.workdir import write_file

log = logging.getLogger(__name__)

FRAMES, FRAME, HOP = 14, 1024, 256
BEFORE = 2  # frames of the patch before the onset
FLOOR_DB = -80.0
HIDDEN = 256
STEPS = 8000
BATCH = 256
MIXTURES = 30000
THRESHOLD = 0.5
# how often each drum is one of an onset's drums in the mixtures (a loop's share, roughly)
PRIOR = {"kick": 0.2, "snare": 0.17, "closed-hat": 0.3, "open-hat": 0.07, "tom": 0.07,
         "clap": 0.05, "rim": 0.05, "cymbal": 0.09}
VERSION = 1  # of the mixtures and the network: a cached categoriser of another is trained again


def patch(x: np.ndarray, at: int, fb: np.ndarray) -> np.ndarray:
    """The onset at sample `at` of x [S] at `transcribe.RATE`: [FRAMES * BANDS] dB below the
    loudest band after the onset, frame f starting at at + (f - BEFORE) * HOP - FRAME / 2."""
    start = at - BEFORE * HOP - FRAME // 2
    seg = np.zeros((FRAMES - 1) * HOP + FRAME)
    a, b = max(start, 0), min(start + len(seg), len(x))
    if b > a:
        seg[a - start:b - start] = x[a:b]
    idx = np.arange(FRAME)[None] + HOP * np.arange(FRAMES)[:, None]
    power = np.abs(np.fft.rfft(seg[idx] * np.hanning(FRAME), axis=-1)) ** 2
    db = 10.0 * np.log10(power @ fb.T + 1e-10)
    return np.maximum(db - db[BEFORE:].max(), FLOOR_DB).ravel()


def mixtures(pool: dict[str, list[np.ndarray]], n: int, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """n onsets mixed from one-shots pool {category: [clip at RATE]} -> (patches [n, FRAMES *
    BANDS], which drums sound [n, C] (0/1), the categories (C, in pool's order))."""
    cats = tuple(c for c in pool if len(pool[c]))
    prior = np.array([PRIOR.get(c, 0.05) for c in cats])
    prior /= prior.sum()
    rng = np.random.default_rng(seed)
    fb = tr.filterbank()
    rate = tr.RATE
    xs, ys = np.zeros((n, FRAMES * tr.BANDS), np.float32), np.zeros((n, len(cats)), np.float32)

    def add(buf, at, c, db):
        clip = pool[c][rng.integers(len(pool[c]))]
        seg = clip[:len(buf) - at]
        buf[at:at + len(seg)] += 10.0 ** (db / 20.0) * seg

    for i in range(n):
        buf = np.zeros(2 * rate)
        at = int(rng.uniform(0.3, 0.6) * rate)
        for _ in range(rng.integers(0, 4)):  # earlier hits, ringing on
            add(buf, at - int(rng.uniform(0.03, 0.3) * rate), cats[rng.choice(len(cats),
                                                                               p=prior)],
                rng.uniform(-24.0, 0.0))
        k = rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15])
        for j in rng.choice(len(cats), size=min(k, len(cats)), replace=False, p=prior):
            late = int(abs(rng.normal(0.0, 0.002)) * rate) if k > 1 else 0
            add(buf, at + late, cats[j], rng.uniform(-22.0, 0.0))
            ys[i, j] = 1.0
        if rng.random() < 0.8:  # the next hit
            add(buf, at + int(rng.uniform(0.03, 0.35) * rate),
                cats[rng.integers(len(cats))], rng.uniform(-24.0, 0.0))
        xs[i] = patch(buf, at, fb)
    return xs, ys, cats


@dataclasses.dataclass(frozen=True)
class Categoriser:
    """The network: categories (C), the patches' standardisation mean and spread [D], and its
    weights w1 [D, H], b1 [H], w2 [H, C], b2 [C]."""

    categories: tuple[str, ...]
    mean: np.ndarray
    spread: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        """[N, D] patches -> [N, C] the probability that each category sounds."""
        h = np.maximum(((np.asarray(patches, np.float64) - self.mean) / self.spread) @ self.w1
                       + self.b1, 0.0)
        return 1.0 / (1.0 + np.exp(-(h @ self.w2 + self.b2)))

    def at_onsets(self, x: np.ndarray, at: np.ndarray) -> list[dict[str, float]]:
        """Per onset (samples `at` [N] of x [S]) {category: probability}."""
        if not len(at):
            return []
        fb = tr.filterbank()
        p = self.probabilities(np.stack([patch(x, int(n), fb) for n in at]))
        return [dict(zip(self.categories, map(float, row), strict=True)) for row in p]

    def scores(self, x: np.ndarray, at: np.ndarray) -> list[dict[str, float]]:
        """`at_onsets` over THRESHOLD: a category sounds where its score is at least 1."""
        return [{c: p / THRESHOLD for c, p in probs.items()} for probs in self.at_onsets(x, at)]

    def save(self, path: str, key: str = "") -> None:
        buf = io.BytesIO()
        np.savez(buf, categories=np.array(self.categories), key=np.array(key),
                 version=np.array(VERSION), **{f.name: getattr(self, f.name)
                                               for f in dataclasses.fields(self)
                                               if f.name != "categories"})
        write_file(path, buf.getvalue())

    @classmethod
    def load(cls, path: str, key: str = "") -> Categoriser | None:
        """The categoriser saved at path for key, or None (none there, or another key or
        version)."""
        try:
            z = np.load(path)
        except (OSError, ValueError):
            return None
        if str(z["key"]) != key or int(z["version"]) != VERSION:
            return None
        return cls(tuple(str(c) for c in z["categories"]),
                   **{f.name: z[f.name] for f in dataclasses.fields(cls)
                      if f.name != "categories"})


def train(xs: np.ndarray, ys: np.ndarray, categories: tuple[str, ...], steps: int = STEPS,
          hidden: int = HIDDEN, seed: int = 0) -> Categoriser:
    """The network fitted to patches xs [N, D] and their drums ys [N, C]."""
    import jax
    import jax.numpy as jnp
    import optax

    mean, spread = xs.mean(axis=0), xs.std(axis=0) + 1e-6
    z = ((xs - mean) / spread).astype(np.float32)
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = {"w1": jax.random.normal(k1, (z.shape[1], hidden)) / np.sqrt(z.shape[1]),
              "b1": jnp.zeros(hidden),
              "w2": jax.random.normal(k2, (hidden, ys.shape[1])) / np.sqrt(hidden),
              "b2": jnp.zeros(ys.shape[1])}

    def loss(p, x, y):
        logits = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        decay = jnp.sum(p["w1"] ** 2) + jnp.sum(p["w2"] ** 2)
        return optax.sigmoid_binary_cross_entropy(logits, y).mean() + 1e-4 * decay

    opt = optax.adam(3e-3)

    @jax.jit
    def step(p, s, x, y):
        g = jax.grad(loss)(p, x, y)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = opt.init(params)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        b = rng.integers(len(z), size=min(BATCH, len(z)))
        params, state = step(params, state, z[b], ys[b])
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    return Categoriser(tuple(categories), mean.astype(np.float64), spread.astype(np.float64),
                       p["w1"], p["b1"], p["w2"], p["b2"])


def for_clips(pool: dict[str, list[np.ndarray]], n: int = MIXTURES, steps: int = STEPS,
              seed: int = 0) -> Categoriser:
    """A categoriser trained on n mixtures of the one-shots pool {category: [clip at RATE]}."""
    xs, ys, cats = mixtures(pool, n, seed)
    return train(xs, ys, cats, steps, seed=seed)


def for_workdir(root: str, pool_of, key: str, n: int = MIXTURES, steps: int = STEPS
                ) -> Categoriser:
    """The categoriser of a kit workdir: read from ROOT/loops/categoriser.npz when it was
    trained for key (the corpus's fingerprint), else trained on pool_of() ({category: [clip]})
    and kept there (where the folder can be written)."""
    path = os.path.join(root, "loops", "categoriser.npz")
    found = Categoriser.load(path, key)
    if found is not None:
        return found
    log.info("loops: training the onset categoriser on the kit corpus (once: %s)", path)
    c = for_clips(pool_of(), n, steps)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        c.save(path, key)
    except OSError as e:
        log.warning("loops: the categoriser is not kept (%s): it is trained again next time",
                    e)
    return c
