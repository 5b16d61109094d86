"""Analysis by synthesis: the recipe of a drum sound, refined against the sound itself.

The encoder gives a recipe in one pass (its latent mean, decoded to weights). Here that recipe
is refined by gradient descent on what a listener compares: the features of the actual audio
mix (the training loss) plus a term on log-mel spectrograms (dB, 80 dB floor below the target's
peak), which the linear features alone neglect. Per target [S]:

    J(v) = mean_d (features(v @ sources)_d - features(target)_d)^2
           + db_weight * mean_{t,m} (max(L(v @ sources), fl) - max(L(target), fl))^2
           + centroid_weight * ((c(v @ sources) - c(target)) / 100 Hz)^2
           + mfcc_weight * || sum_t r_t max(L(v @ sources), fl)_t D - m(target) ||^2
           + lsd_weight * LSD(v @ sources, target)

with v >= 0 the mix's weights times its gain, L the 2048-point log-mel power spectrogram
(128 bands), fl the target's loudest band minus 80 dB, c the centroid of the feature
spectrum, r the mix's frames' RMS weights (spectral.frame_rms, summing to 1), D the
13-coefficient DCT-II and m(target) the target's RMS-weighted mean MFCC: the evaluation's MFCC
distance, but for the mix's dB floored with the target's; LSD the evaluation's log-spectral
distance (2048-point power spectra in dB, per frame the RMS over bins, the mean over the
target's live frames), which only the exact mix has: the surrogate leaves it out, the exact
steps, the gradient on the shaping and every comparison of results count it. Chosen by
measurement on the test split and the out-of-library set (docs/evaluation.md, docs/shaping.md).

Modes:
- 'none': the encoder's recipe, as it is;
- 'latent': the latent z and a gain, refined; the recipe stays the decoder's output;
- 'weights': the weights themselves and a gain, refined on the non-negative orthant
  (at most `max_layers` layers), from the encoder's recipe. The recipe keeps the encoder's z
  and the difference between the refined weights and the decoder's (`residual`), so moving z
  still moves the sound.
- 'shape' (default): 'weights', then each layer's shaping too (recipes.shaping: pitch, a filter, a
  decay), chosen from a grid (`shape_*`) whose copies of every source are rendered once (the
  bank): sweeps of swaps (recipes.swaps) put each layer on the copy of its source, and the
  weight, that lowers the surrogate J most, with a cost per shaped layer that keeps a layer
  plain unless shaping pays; then the chosen copies' weights are refined again, and the
  cutoff, decay and start delay of the leading layers by gradient on the exact J
  (recipes.tune). The result is kept only where its J (with the cost) is below the 'weights'
  result's.

The exact objective costs two STFTs per step and its gradient as much again. Most steps run on a
surrogate that costs a matrix product: the weighted sum of the sources' feature spectra (the
matching-pursuit model) and of their mel power spectrograms (mixed incoherently), re-anchored
every round to the exact values at the current weights (the surrogate plus the exact-minus-
surrogate difference there); the last `exact_steps` steps use the exact features and LSD (the
mel term stays the anchored surrogate's).
The result is never worse than the start in J: a refined recipe whose exact J exceeds the
encoder's is replaced by the encoder's.

Pure JAX, batched over targets: one jit per batch shape, a fixed number of steps, no Python loop
per target. Everything is per-target, so a batch gives what each target would alone, to float
rounding; with shaping, Adam's steps (where a gradient is tiny its step is its sign), a near-tie
between candidates in a second sweep and a delay rounded to a whole sample can carry that
rounding further (J within a few percent: tests/test_analyze.py).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.features import batching, descriptors, extractor, spectral
from drumlayer.model import vae as model_lib
from drumlayer.recipes import shaping, swaps, tune
from drumlayer.recipes.recipe import CUTOFF_HZ, GAIN_DB, LayerShape
from drumlayer.recipes.surrogate import (
    CENTROID_HZ,
    MEL_BANDS,
    MEL_FFT,
    TOP_DB,
    Features,
    Layers,
    adam,
    centroid,
    db_distance,
    frame_energy,
    lsd_term,
    make_anchor,
    mel_power,
    mfcc_distance,
    power,
    rms_weights,
    surrogate,
    to_db,
)

MFCC_COEFFS = 13  # as the evaluation's MFCC distance
SHAPE_MFCC_WEIGHT = 0.001
MODES = ("none", "latent", "weights", "shape")
# What the refinement matches first: AnalyzeConfig overrides (docs/shaping.md). 'timbre' (the
# default) is ahead of the weights refinement on every measure of both test sets;
# 'spectrogram' weighs the dB term 20x (and the cost of a shaped layer and the centroid term
# with it) and adds the LSD itself: 0.4-0.6 dB lower LSD on both sets, at a higher MFCC
# distance and feature MSE.
FITS = {"timbre": {},
        "spectrogram": {"db_weight": 1.0, "shape_cost": 0.3, "centroid_weight": 0.03,
                        "lsd_weight": 10.0}}


def fit_name(config: AnalyzeConfig) -> str:
    """The name in FITS whose overrides config holds ('timbre' when none does)."""
    return next((name for name, o in FITS.items()
                 if o and all(getattr(config, k) == v for k, v in o.items())), "timbre")


@dataclasses.dataclass(frozen=True)
class AnalyzeConfig:
    mode: str = "shape"  # ahead of 'weights' on every measure of both test sets (docs/shaping.md)
    rounds: int = 4  # surrogate rounds, each re-anchored by one exact forward pass
    dense_rounds: int = 1  # 'weights': the first rounds, where every source may enter
    inner: int = 50  # surrogate Adam steps per round
    exact_steps: int = 6  # Adam steps on the exact features at the end
    learning_rate: float = 0.02
    db_weight: float = 0.05
    centroid_weight: float = 0.01  # on ((centroid - target's) / 100 Hz)^2
    # on the squared distance of the RMS-weighted mean MFCCs; None: SHAPE_MFCC_WEIGHT in
    # 'shape' and 0 in the others (in 'weights' it cost the test split up to 1 dB of LSD in a
    # seed; with shaping it gained on every measure: docs/shaping.md)
    mfcc_weight: float | None = None
    lsd_weight: float = 0.0  # on the LSD in dB of the exact mix ('spectrogram' fit: 10)
    max_layers: int = 15  # 'weights': the layers kept after the dense rounds
    floor: float = 1e-3  # 'weights': added to every weight at first, so unused layers can return
    # 'shape': the grid each layer's shaping is chosen from (recipes.shaping.grid), and the cost
    # of shaping: J grows by shape_cost for each shaped layer
    shape_pitches: tuple = (-700.0, -300.0, 300.0, 700.0)
    shape_tones: tuple = (("lpf", 3000.0), ("hpf", 600.0))
    shape_decays: tuple = (0.08, 0.25)
    shape_cost: float = 0.03
    shape_rounds: int = 2  # 'shape': sweeps of swaps over the recipe's layers
    # 'shape': then the cutoff, decay and delay of each target's leading layers by gradient on
    # the exact J (recipes.tune): that many layers, steps (0: none) and the step size
    tune_slots: int = 4
    tune_steps: int = 8
    tune_learning_rate: float = 0.03

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mfcc_weight is None:
            object.__setattr__(self, "mfcc_weight",
                               SHAPE_MFCC_WEIGHT if self.mode == "shape" else 0.0)
        for name in ("rounds", "inner", "exact_steps", "tune_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_layers", "tune_slots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# the refinement the studio answers with while its default is still starting (no bank)
QUICK = AnalyzeConfig(mode="weights")


class Recipes(NamedTuple):
    """Refined recipes of a batch of B targets over k sources (L latent dimensions)."""

    latent: jax.Array  # [B, L]
    weights: jax.Array  # [B, k] >= 0, each row summing to 1
    gain: jax.Array  # [B] linear: the mix is gain * weights @ sources
    residual: jax.Array  # [B, k] weights - decode(latent)
    start: jax.Array  # [B] J of the encoder's recipe
    objective: jax.Array  # [B] J of the result (<= start)
    variant: jax.Array  # [B, k] int: each layer's shaping, an index of Analyzer.variants (0: none)
    cutoff: jax.Array  # [B, k] Hz: a filtered layer's cutoff (its variant's, or tuned)
    decay: jax.Array  # [B, k] s: a decaying layer's decay (its variant's, or tuned; 0: none)
    delay: jax.Array  # [B, k] samples at 22.05 kHz: each layer's start delay


class Constants(NamedTuple):
    """The sources as the surrogate sees them: audio [k, S], feature spectra [k, D - 1] (linear,
    before compression), mel power spectrograms [k, T * M], frame energies [k, T]; the mel
    filterbank [M, F]."""

    sources: jax.Array
    spectra: jax.Array
    mel_power: jax.Array
    energy: jax.Array
    filterbank: jax.Array

    def layers(self, index: jax.Array | None = None) -> Layers:
        """Every source (index None) or each target's own [B, K], as the surrogate mixes them."""
        if index is None:
            return Layers(None, self.spectra, self.mel_power, self.energy)
        return Layers(index, self.spectra[index], self.mel_power[index], self.energy[index])


class Analyzer:
    """Refines recipes for one trained model.

    feature_config: the run's {'n_fft', 'hop', 'compression'}; encode(model_args, feats [B, D])
    -> latent means [B, L] and decode(model_args, z [B, L]) -> [B, k], both jax-traceable, with
    model_args the arrays they read (the parameters). Those and the sources are arguments of
    the compiled program, not constants baked into it: with them inside, the paper-scale
    program was 75 MB of text and took ~2 s longer to compile."""

    def __init__(self, sources: np.ndarray, feature_config: dict, encode, decode,
                 config: AnalyzeConfig = AnalyzeConfig(), model_args=()):
        self.n_fft = int(feature_config["n_fft"])
        self.hop = int(feature_config["hop"])
        self.compression = str(feature_config["compression"])
        self._encode, self._decode, self.model_args = encode, decode, model_args
        self.config = config
        fb = jnp.asarray(descriptors.mel_filterbank(spectral.SAMPLE_RATE, MEL_FFT, MEL_BANDS))
        self.dct = jnp.asarray(descriptors.dct_matrix(MEL_BANDS, MFCC_COEFFS))
        self.constants = self._constants(sources, fb)
        self.variants = [shaping.Variant()]
        self.bank = None  # 'shape': the constants of every source in every variant [k * V, ...]
        if config.mode == "shape":
            self.variants = shaping.grid(config.shape_pitches, config.shape_tones,
                                         config.shape_decays)
            self.bank = self._constants(shaping.bank(np.asarray(sources, np.float32),
                                                     spectral.SAMPLE_RATE, self.variants), fb)
        self._run = jax.jit(self._traced)

    def _constants(self, sources: np.ndarray, fb: jax.Array) -> Constants:
        src = jnp.asarray(sources, jnp.float32)
        spectra = spectral.weighted_spectrum(src, self.n_fft, self.hop)
        return Constants(src, spectra, mel_power(src, fb).reshape(len(src), -1),
                         frame_energy(src), fb)

    @classmethod
    def from_bundle(cls, bundle, config: AnalyzeConfig = AnalyzeConfig()) -> Analyzer:

        model = bundle.model

        def encode(args, feats):
            params, mean, std = args
            return model.apply({"params": params}, (feats - mean) / std,
                               method=model_lib.LayeringVAE.encode)[0]

        def decode(args, z):
            return model.apply({"params": args[0]}, z, method=model_lib.LayeringVAE.decode)

        args = (bundle.params, jnp.asarray(bundle.mean), jnp.asarray(bundle.std))
        return cls(bundle.sources, bundle.config["features"], encode, decode, config, args)

    def _traced(self, constants: Constants, bank: Constants | None, model_args,
                clips: jax.Array) -> Recipes:
        """`_refine` of an analyzer whose constants and model arrays are the traced arguments."""
        an = copy.copy(self)
        an.constants, an.bank, an.model_args = constants, bank, model_args
        return _refine(an, clips)

    def encode(self, feats: jax.Array) -> jax.Array:
        return self._encode(self.model_args, feats)

    def decode(self, z: jax.Array) -> jax.Array:
        return self._decode(self.model_args, z)

    def exact(self, v: jax.Array) -> Features:
        """The features of the mixes of v [B, k] (weights times gain)."""
        x = v @ self.constants.sources
        return self.target(x)._replace(mfcc=None)

    def objective(self, mix: Features, target: Features) -> jax.Array:
        """J per target: [B]."""
        cfg = self.config
        j = (jnp.mean((mix.feats - target.feats) ** 2, axis=-1)
             + cfg.db_weight * db_distance(mix.mel_db, target.mel_db))
        if cfg.centroid_weight:
            c = [centroid(f.feats, self.compression, self.n_fft) for f in (mix, target)]
            j = j + cfg.centroid_weight * ((c[0] - c[1]) / CENTROID_HZ) ** 2
        if cfg.mfcc_weight:
            j = j + cfg.mfcc_weight * mfcc_distance(mix, target, self.dct)
        if cfg.lsd_weight and mix.bin_db is not None:
            j = j + cfg.lsd_weight * lsd_term(mix.bin_db, target.bin_db)
        return j

    def features(self, x: jax.Array) -> jax.Array:
        """The model's features of audio x [B, S]: [B, D]."""
        return extractor.features(x, self.n_fft, self.hop, compression=self.compression)

    def target(self, clips: jax.Array) -> Features:
        """What J compares of clips [B, S]: their features, mel dB, the RMS weights of their
        frames (spectral.frame_rms, as the evaluation's MFCC weights them) and their weighted
        mean MFCC (librosa's: dB floored 80 below the clip's loudest band)."""
        feats = extractor.features(clips, self.n_fft, self.hop, compression=self.compression)
        pw = power(clips)
        mel_db = to_db(pw @ self.constants.filterbank.T)
        bin_db = to_db(pw) if self.config.lsd_weight else None
        weights = rms_weights(frame_energy(clips))
        floor = jnp.max(mel_db, axis=(-2, -1), keepdims=True) - TOP_DB
        mfcc = jnp.einsum("bt,btm->bm", weights, jnp.maximum(mel_db, floor)) @ self.dct
        return Features(feats, mel_db, weights, mfcc, bin_db)

    def __call__(self, clips: jax.Array) -> Recipes:
        """clips [B, S] (22.05 kHz, 1 s) -> Recipes."""
        return self._run(self.constants, self.bank, self.model_args,
                         jnp.asarray(clips, jnp.float32))


def _rounds(an: Analyzer, target: Features, params, to_v, project, layers: Layers, n: int):
    """n surrogate rounds on params, whose weights over `layers` are to_v(params): a loop, so
    the program holds one round (compiled once, not n times)."""
    cfg = an.config

    def one(_, params):
        anchor = make_anchor(an, layers, to_v(params))

        def loss(p):
            return an.objective(surrogate(an, layers, to_v(p), anchor), target)

        return adam(loss, params, cfg.inner, cfg.learning_rate, project)

    return jax.lax.fori_loop(0, n, one, params)


def _exact_steps(an: Analyzer, target: Features, params, to_v, project, layers: Layers):
    """Steps on the exact features and LSD; the mel term stays the anchored surrogate's."""
    cfg = an.config
    if not cfg.exact_steps:
        return params
    anchor = make_anchor(an, layers, to_v(params))

    def loss(p):
        v = to_v(p)
        x = layers.mix(v, an.constants.sources)
        bin_db = to_db(power(x)) if cfg.lsd_weight else None
        return an.objective(surrogate(an, layers, v, anchor)._replace(
            feats=an.features(x), bin_db=bin_db), target)

    return adam(loss, params, cfg.exact_steps, cfg.learning_rate, project)


def _nonneg(p):
    return jnp.maximum(p, 0.0)


def _same(p):
    return p


def _weights(an: Analyzer, target: Features, w0: jax.Array) -> jax.Array:
    """'weights': w0 [B, k] refined -> v [B, k] (at most max_layers non-zero a row). Every
    source may enter in the dense rounds; then each target keeps its max_layers largest and the
    surrogate mixes only those (a K-column product instead of k)."""
    cfg, c = an.config, an.constants
    k = c.sources.shape[0]
    half = min(cfg.dense_rounds, cfg.rounds)
    every = c.layers()
    v = _rounds(an, target, w0 + cfg.floor, _same, _nonneg, every, half)
    vs, idx = jax.lax.top_k(v, min(cfg.max_layers, k))
    few = c.layers(idx)
    vs = _rounds(an, target, vs, _same, _nonneg, few, cfg.rounds - half)
    return few.full(_exact_steps(an, target, vs, _same, _nonneg, few), k)


def _shape(an: Analyzer, target: Features, v: jax.Array) -> tuple:
    """'shape' from the 'weights' result v [B, k] -> (v [B, k], variant [B, k], (cutoff, decay,
    delay) [B, k] each, J [B] with the cost), each row the better of v unshaped and v shaped
    by J."""
    cfg, bank = an.config, an.bank
    b, k = v.shape
    nv = len(an.variants)
    sh = copy.copy(an)
    sh.constants = bank
    shaped = (jnp.arange(nv) > 0).astype(v.dtype)
    # the recipe's layers, each on its plain copy; sweeps of swaps choose their copies
    vs, idx = jax.lax.top_k(v, min(cfg.max_layers, k))
    pick = jnp.zeros(idx.shape, jnp.int32)

    def sweep(_, carry):
        return swaps.sweep(sh, target, idx, carry[0], carry[1], cfg.shape_cost)

    pick, vs = jax.lax.fori_loop(0, cfg.shape_rounds, sweep, (pick, vs))
    cols = idx * nv + pick
    few = bank.layers(cols)
    vs = _rounds(sh, target, vs, _same, _nonneg, few, max(cfg.rounds - cfg.dense_rounds, 0))
    table = tune.grid_table(an.variants)
    if cfg.tune_steps:  # its steps are exact steps on the weights too
        tuned, j_shaped = tune.tune(sh, target, idx, pick, vs, table)
    else:
        vs = _exact_steps(sh, target, vs, _same, _nonneg, few)
        tuned = tune.Tuned(vs, jnp.asarray(table.cutoff)[pick], jnp.asarray(table.decay)[pick],
                           jnp.zeros(vs.shape))
        # the cost: per audible shaped layer
        j_shaped = (sh.objective(sh.target(few.mix(vs, bank.sources)), target)
                    + cfg.shape_cost * jnp.sum(shaped[pick] * (vs > 0), -1))
    j_plain = an.objective(an.exact(v), target)
    better = (j_shaped < j_plain)[:, None]
    one_hot = jax.nn.one_hot(idx, k, dtype=vs.dtype)

    def spread(x):  # [B, K] over the recipe's layers -> [B, k]
        return jnp.einsum("bj,bjk->bk", x, one_hot)

    variant = spread(jnp.where(tuned.vs > 0, pick, 0).astype(vs.dtype)).astype(jnp.int32)
    shapes = tuple(jnp.where(better, spread(x), 0.0) for x in tuned[1:])
    return (jnp.where(better, spread(tuned.vs), v), jnp.where(better, variant, 0), shapes,
            jnp.minimum(j_shaped, j_plain))


def _refine(an: Analyzer, clips: jax.Array) -> Recipes:
    cfg, c = an.config, an.constants
    target = an.target(clips)
    z0 = an.encode(target.feats)
    w0 = an.decode(z0)
    start = an.objective(an.exact(w0), target)
    variant = jnp.zeros(w0.shape, jnp.int32)
    shapes = (jnp.zeros(w0.shape),) * 3
    z = z0
    if cfg.mode == "none":
        v = w0
    elif cfg.mode == "latent":
        def to_v(p):
            return jnp.exp(p[1])[:, None] * an.decode(p[0])

        every = c.layers()
        p = _rounds(an, target, (z0, jnp.zeros(len(z0))), to_v, _same, every, cfg.rounds)
        z, log_gain = _exact_steps(an, target, p, to_v, _same, every)
        v = to_v((z, log_gain))
    else:
        v = _weights(an, target, w0)
    if cfg.mode == "shape":
        v, variant, shapes, end = _shape(an, target, v)
    else:
        end = an.objective(an.exact(v), target)
    worse = end > start
    v = jnp.where(worse[:, None], w0, v)
    z = jnp.where(worse[:, None], z0, z)
    variant = jnp.where(worse[:, None], 0, variant)
    shapes = tuple(jnp.where(worse[:, None], 0.0, x) for x in shapes)
    gain = jnp.maximum(jnp.sum(v, axis=-1), 1e-12)
    weights = v / gain[:, None]
    return Recipes(z, weights, gain, weights - an.decode(z), start, jnp.minimum(end, start),
                   variant, *shapes)


def refine_all(an: Analyzer, clips: np.ndarray, block: int = 64) -> Recipes:
    """Recipes of clips [N, S] in padded blocks (at most `block` a call): numpy arrays."""
    size = batching.block_size(len(clips), block)
    return Recipes(*batching.in_blocks(lambda x: tuple(an(x)), clips, block=size))


def recipe_fields(r: Recipes, i: int, variants: list) -> dict:
    """Target i's recipe as the studio's Recipe fields: latent, residual, gain_db (clipped
    to the studio's range, so the studio mixes what is written), the shaping of its layers
    (variants: the Analyzer's; a tuned cutoff or decay replaces the variant's) and their start
    delays (offsets_ms). variants is required: the variant indices of r mean nothing without
    the analyzer that made them."""

    gain_db = 20.0 * np.log10(max(float(r.gain[i]), 1e-12))
    weights, variant = np.asarray(r.weights[i]), np.asarray(r.variant[i])
    shapes = {}
    for j in np.flatnonzero((variant > 0) & (weights > 0)):
        v = variants[variant[j]]._asdict()
        if v["filter"] is not None:
            v["cutoff_hz"] = float(np.clip(r.cutoff[i][j], *CUTOFF_HZ))
        if v["decay"] is not None:
            v["decay"] = float(r.decay[i][j])
        shapes[int(j)] = LayerShape(**{k: x for k, x in v.items() if x is not None})
    delay = np.asarray(r.delay[i])
    offsets = {int(j): float(delay[j] * 1000.0 / spectral.SAMPLE_RATE)
               for j in np.flatnonzero((delay > 0) & (weights > 0))}
    return {"latent": np.asarray(r.latent[i]).tolist(),
            "residual": np.clip(np.asarray(r.residual[i]), -1.0, 1.0).tolist(),
            "gain_db": float(np.clip(gain_db, *GAIN_DB)), "shaping": shapes,
            "offsets_ms": offsets}


def compile_for_one(bundle, analyzer: Analyzer) -> None:
    """Run, hence compile, what one sound's recipe runs: the features and the encoder of one
    clip, and the refinement of one clip (the studio's upload). With JAX's persistent
    compilation cache on, a later process finds them compiled."""
    x = np.asarray(bundle.sources[:1], np.float32)
    jax.block_until_ready(bundle.encode(np.asarray(bundle.features(x))))
    recipe_fields(analyzer(x), 0, analyzer.variants)

