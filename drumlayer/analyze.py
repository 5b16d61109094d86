"""Analysis by synthesis: the recipe of a drum sound, refined against the sound itself.

The encoder gives a recipe in one pass (its latent mean, decoded to weights). Here that recipe
is refined by gradient descent on what a listener compares: the features of the actual audio
mix (the training loss) plus a term on log-mel spectrograms (dB, 80 dB floor below the target's
peak), which the linear features alone neglect. Per target [S]:

    J(v) = mean_d (features(v @ sources)_d - features(target)_d)^2
           + db_weight * mean_{t,m} (max(L(v @ sources), fl) - max(L(target), fl))^2
           + centroid_weight * ((c(v @ sources) - c(target)) / 100 Hz)^2

with v >= 0 the mix's weights times its gain, L the 2048-point log-mel power spectrogram
(128 bands), fl the target's loudest band minus 80 dB and c the centroid of the feature
spectrum. Chosen by measurement on both snare configs (README, "Analysis by synthesis").

Modes:
- 'none': the encoder's recipe, as it is;
- 'latent': the latent z and a gain, refined; the recipe stays the decoder's output;
- 'weights' (default): the weights themselves and a gain, refined on the non-negative orthant
  (at most `max_layers` layers), from the encoder's recipe. The recipe keeps the encoder's z
  and the difference between the refined weights and the decoder's (`residual`), so moving z
  still moves the sound.

The exact objective costs two STFTs per step and its gradient as much again. Most steps run on a
surrogate that costs a matrix product: the weighted sum of the sources' feature spectra (the
matching-pursuit model) and of their mel power spectrograms (mixed incoherently), re-anchored
every round to the exact values at the current weights (the surrogate plus the exact-minus-
surrogate difference there); the last `exact_steps` steps use the exact features (the mel
term stays the anchored surrogate's).
The result is never worse than the start in J: a refined recipe whose exact J exceeds the
encoder's is replaced by the encoder's.

Pure JAX, batched over targets: one jit per batch shape, a fixed number of steps, no Python loop
per target. Everything is per-target, so a batch gives what each target would alone (to float
rounding).

The command, a batch latent-space evaluation of a person's own sounds:

    python -m drumlayer.analyze --workdir=runs/snare --out=recipes PATH...

reads every sound under the files and folders given (whatever the corpus reads: audio files,
SFZ, SF2 and Hydrogen kits), and writes for each OUT/<name>.recipe.json (the studio's recipe:
"load recipe" there), OUT/<name>.wav (the mix of the full-band sources at the bundle's rate,
float, at the level the recipe's gain gives it) and one OUT/summary.csv (per sound: active
layers, largest weight, gain, LSD, MFCC distance and centroid error against the sound, measured
at 22.05 kHz, seconds); files that cannot be read are listed in OUT/rejected.csv with the
reason, and the rest go on.
"""

from __future__ import annotations

import collections
import copy
import csv
import dataclasses
import logging
import os
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from drumlayer import audio, blocks, spectral
from drumlayer.errors import DrumlayerError
from drumlayer.workdir import AnalyzeDir

log = logging.getLogger(__name__)

MODES = ("none", "latent", "weights")
MEL_FFT = 2048
MEL_HOP = 512
MEL_BANDS = 128
TOP_DB = 80.0
CENTROID_HZ = 100.0  # the unit of the centroid term


@dataclasses.dataclass(frozen=True)
class AnalyzeConfig:
    mode: str = "weights"
    rounds: int = 4  # surrogate rounds, each re-anchored by one exact forward pass
    dense_rounds: int = 1  # 'weights': the first rounds, where every source may enter
    inner: int = 50  # surrogate Adam steps per round
    exact_steps: int = 6  # Adam steps on the exact features at the end
    learning_rate: float = 0.02
    db_weight: float = 0.05
    centroid_weight: float = 0.01  # on ((centroid - target's) / 100 Hz)^2
    max_layers: int = 15  # 'weights': the layers kept after the dense rounds
    floor: float = 1e-3  # 'weights': added to every weight at first, so unused layers can return

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("rounds", "inner", "exact_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_layers < 1:
            raise ValueError(f"max_layers must be >= 1, got {self.max_layers}")


class Recipes(NamedTuple):
    """Refined recipes of a batch of B targets over k sources (L latent dimensions)."""

    latent: jax.Array  # [B, L]
    weights: jax.Array  # [B, k] >= 0, each row summing to 1
    gain: jax.Array  # [B] linear: the mix is gain * weights @ sources
    residual: jax.Array  # [B, k] weights - decode(latent)
    start: jax.Array  # [B] J of the encoder's recipe
    objective: jax.Array  # [B] J of the result (<= start)


class Features(NamedTuple):
    """What J compares, of a batch of mixes: the model's features [B, D] and log-mel dB
    [B, T, M]."""

    feats: jax.Array
    mel_db: jax.Array


class Constants(NamedTuple):
    """The sources as the surrogate sees them: audio [k, S], feature spectra [k, D - 1] (linear,
    before compression), mel power spectrograms [k, T * M]; the mel filterbank [M, F]."""

    sources: jax.Array
    spectra: jax.Array
    mel_power: jax.Array
    filterbank: jax.Array


def mel_power(clips: jax.Array, filterbank: jax.Array) -> jax.Array:
    """Mel power spectrogram: clips [B, S] -> [B, T, M]."""
    return jnp.abs(spectral.stft(clips, MEL_FFT, MEL_HOP)) ** 2 @ filterbank.T


def to_db(power: jax.Array) -> jax.Array:
    return 10.0 * jnp.log10(jnp.maximum(power, 1e-10))


def db_distance(mel_db: jax.Array, target_db: jax.Array) -> jax.Array:
    """Mean squared dB difference, both floored TOP_DB below the target's loudest band:
    [B, T, M] x 2 -> [B]."""
    floor = jnp.max(target_db, axis=(-2, -1), keepdims=True) - TOP_DB
    d = jnp.maximum(mel_db, floor) - jnp.maximum(target_db, floor)
    return jnp.mean(d * d, axis=(-2, -1))


def centroid(feats: jax.Array, compression: str, n_fft: int) -> jax.Array:
    """The centroid (Hz) of the features' RMS-weighted spectrum: [B, D] -> [B]."""
    spec = feats[:, :-1]
    if compression == "log":
        spec = jnp.expm1(spec)
    hz = jnp.arange(spec.shape[-1], dtype=spec.dtype) * (spectral.SAMPLE_RATE / n_fft)
    return spec @ hz / jnp.maximum(jnp.sum(spec, axis=-1), 1e-9)


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
        src = jnp.asarray(sources, jnp.float32)
        fb = jnp.asarray(spectral.mel_filterbank(spectral.SAMPLE_RATE, MEL_FFT, MEL_BANDS))
        spectra = spectral.weighted_spectrum(src, self.n_fft, self.hop)
        self.constants = Constants(src, spectra, mel_power(src, fb).reshape(len(src), -1), fb)
        self._run = jax.jit(self._traced)

    @classmethod
    def from_bundle(cls, bundle, config: AnalyzeConfig = AnalyzeConfig()) -> Analyzer:
        from drumlayer import model as model_lib

        model = bundle.model

        def encode(args, feats):
            params, mean, std = args
            return model.apply({"params": params}, (feats - mean) / std,
                               method=model_lib.LayeringVAE.encode)[0]

        def decode(args, z):
            return model.apply({"params": args[0]}, z, method=model_lib.LayeringVAE.decode)

        args = (bundle.params, jnp.asarray(bundle.mean), jnp.asarray(bundle.std))
        return cls(bundle.sources, bundle.config["features"], encode, decode, config, args)

    def _traced(self, constants: Constants, model_args, clips: jax.Array) -> Recipes:
        """`_refine` of an analyzer whose constants and model arrays are the traced arguments."""
        an = copy.copy(self)
        an.constants, an.model_args = constants, model_args
        return _refine(an, clips)

    def encode(self, feats: jax.Array) -> jax.Array:
        return self._encode(self.model_args, feats)

    def decode(self, z: jax.Array) -> jax.Array:
        return self._decode(self.model_args, z)

    def exact(self, v: jax.Array) -> Features:
        """The features of the mixes of v [B, k] (weights times gain)."""
        x = v @ self.constants.sources
        feats = spectral.features(x, self.n_fft, self.hop, compression=self.compression)
        return Features(feats, to_db(mel_power(x, self.constants.filterbank)))

    def objective(self, mix: Features, target: Features) -> jax.Array:
        """J per target: [B]."""
        cfg = self.config
        j = (jnp.mean((mix.feats - target.feats) ** 2, axis=-1)
             + cfg.db_weight * db_distance(mix.mel_db, target.mel_db))
        if cfg.centroid_weight:
            c = [centroid(f.feats, self.compression, self.n_fft) for f in (mix, target)]
            j = j + cfg.centroid_weight * ((c[0] - c[1]) / CENTROID_HZ) ** 2
        return j

    def features(self, v: jax.Array) -> jax.Array:
        """The model's features of the mixes of v [B, k]: [B, D]."""
        x = v @ self.constants.sources
        return spectral.features(x, self.n_fft, self.hop, compression=self.compression)

    def target(self, clips: jax.Array) -> Features:
        feats = spectral.features(clips, self.n_fft, self.hop, compression=self.compression)
        return Features(feats, to_db(mel_power(clips, self.constants.filterbank)))

    def __call__(self, clips: jax.Array) -> Recipes:
        """clips [B, S] (22.05 kHz, 1 s) -> Recipes."""
        return self._run(self.constants, self.model_args, jnp.asarray(clips, jnp.float32))


class Layers(NamedTuple):
    """The layers a surrogate mixes: every source (index None, spectra [k, D - 1], mel
    [k, T * M]) or each target's own few (index [B, K], spectra [B, K, D - 1], mel
    [B, K, T * M])."""

    index: jax.Array | None
    spectra: jax.Array
    mel: jax.Array

    def full(self, v: jax.Array, k: int) -> jax.Array:
        """v over these layers [B, K] -> over every source [B, k]."""
        if self.index is None:
            return v
        return jnp.einsum("bj,bjk->bk", v, jax.nn.one_hot(self.index, k, dtype=v.dtype))

    def combine(self, v: jax.Array, table: jax.Array) -> jax.Array:
        return v @ table if self.index is None else jnp.einsum("bj,bjd->bd", v, table)


def surrogate(an: Analyzer, layers: Layers, v: jax.Array, anchor: tuple) -> Features:
    """Features of v [B, K] by the linear models (feature spectra add; mel powers add as
    incoherent sounds' do), shifted by `anchor` (see `make_anchor`)."""
    spec = spectral.compress(layers.combine(v, layers.spectra), an.compression) + anchor[0]
    mel = to_db(layers.combine(v * v, layers.mel)).reshape(anchor[2].shape) + anchor[2]
    return Features(jnp.concatenate([spec, anchor[1]], axis=-1), mel)


def make_anchor(an: Analyzer, layers: Layers, v: jax.Array) -> tuple:
    """(spectrum, attack, mel) offsets that make the surrogate exact at v [B, K]; the attack
    time is held at its exact value (it is not additive)."""
    ex = an.exact(layers.full(v, an.constants.sources.shape[0]))
    zero = (jnp.zeros(ex.feats[:, :-1].shape), ex.feats[:, -1:], jnp.zeros(ex.mel_db.shape))
    sur = surrogate(an, layers, v, zero)
    return jax.lax.stop_gradient(
        (ex.feats[:, :-1] - sur.feats[:, :-1], ex.feats[:, -1:], ex.mel_db - sur.mel_db))


def _adam(loss, params, steps: int, lr: float, project):
    """`steps` Adam steps on sum(loss(params)) (a [B] loss of a pytree of [B, ...] leaves: each
    row's steps depend on its own loss only), each followed by project."""
    if steps == 0:
        return params
    opt = optax.adam(lr)

    def body(carry, _):
        p, s = carry
        g = jax.grad(lambda q: jnp.sum(loss(q)))(p)
        u, s = opt.update(g, s)
        return (project(optax.apply_updates(p, u)), s), None

    return jax.lax.scan(body, (params, opt.init(params)), None, steps)[0][0]


def _refine(an: Analyzer, clips: jax.Array) -> Recipes:
    cfg, c = an.config, an.constants
    k = c.sources.shape[0]
    target = an.target(clips)
    z0 = an.encode(target.feats)
    w0 = an.decode(z0)
    start = an.objective(an.exact(w0), target)
    every = Layers(None, c.spectra, c.mel_power)

    def rounds(params, to_v, project, layers, n):
        """n surrogate rounds on params, whose weights over `layers` are to_v(params): a loop,
        so the program holds one round (compiled once, not n times)."""

        def one(_, params):
            anchor = make_anchor(an, layers, to_v(params))
            return _adam(lambda p: an.objective(surrogate(an, layers, to_v(p), anchor), target),
                         params, cfg.inner, cfg.learning_rate, project)

        return jax.lax.fori_loop(0, n, one, params)

    def exact_steps(params, to_v, project, layers):
        """Steps on the exact features; the mel term stays the anchored surrogate's."""
        if not cfg.exact_steps:
            return params
        anchor = make_anchor(an, layers, to_v(params))

        def loss(p):
            v = to_v(p)
            feats = an.features(layers.full(v, k))
            return an.objective(Features(feats, surrogate(an, layers, v, anchor).mel_db),
                                target)

        return _adam(loss, params, cfg.exact_steps, cfg.learning_rate, project)

    if cfg.mode == "none":
        z, v = z0, w0
    elif cfg.mode == "latent":
        def to_v(p):
            return jnp.exp(p[1])[:, None] * an.decode(p[0])

        def same(p):
            return p

        p = rounds((z0, jnp.zeros(len(z0))), to_v, same, every, cfg.rounds)
        z, log_gain = exact_steps(p, to_v, same, every)
        v = to_v((z, log_gain))
    else:
        def nonneg(p):
            return jnp.maximum(p, 0.0)

        def ident(p):
            return p

        # Every source may enter in the dense rounds; then each target keeps its max_layers
        # largest and the surrogate mixes only those (a K-column product instead of k).
        z, half = z0, min(cfg.dense_rounds, cfg.rounds)
        v = rounds(w0 + cfg.floor, ident, nonneg, every, half)
        n = min(cfg.max_layers, k)
        vs, idx = jax.lax.top_k(v, n)
        few = Layers(idx, c.spectra[idx], c.mel_power[idx])
        vs = rounds(vs, ident, nonneg, few, cfg.rounds - half)
        v = few.full(exact_steps(vs, ident, nonneg, few), k)

    end = an.objective(an.exact(v), target)
    worse = end > start
    v = jnp.where(worse[:, None], w0, v)
    z = jnp.where(worse[:, None], z0, z)
    gain = jnp.maximum(jnp.sum(v, axis=-1), 1e-12)
    weights = v / gain[:, None]
    return Recipes(z, weights, gain, weights - an.decode(z), start, jnp.minimum(end, start))


def refine_all(an: Analyzer, clips: np.ndarray, block: int = 64) -> Recipes:
    """Recipes of clips [N, S] in padded blocks (at most `block` a call): numpy arrays."""
    size = blocks.block_size(len(clips), block)
    return Recipes(*blocks.in_blocks(lambda x: tuple(an(x)), clips, block=size))


def recipe_fields(r: Recipes, i: int) -> dict:
    """Target i's recipe as the studio's Recipe fields: latent, residual and gain_db (clipped
    to the studio's range, so the studio mixes what is written)."""
    from drumlayer.studio.recipe import GAIN_DB

    gain_db = 20.0 * np.log10(max(float(r.gain[i]), 1e-12))
    return {"latent": np.asarray(r.latent[i]).tolist(),
            "residual": np.clip(np.asarray(r.residual[i]), -1.0, 1.0).tolist(),
            "gain_db": float(np.clip(gain_db, *GAIN_DB))}


def distances(mixes: np.ndarray, clips: np.ndarray) -> dict:
    """{'lsd', 'mfcc', 'centroid'} [N] of mixes against clips (both [N, S]): log-spectral
    distance (dB), MFCC distance, centroid error (Hz)."""
    from drumlayer import metrics

    @jax.jit
    def one(x, t):
        cx, mx = metrics.descriptors(x)
        ct, mt = metrics.descriptors(t)
        return {"lsd": metrics.log_spectral_distance(x, t),
                "mfcc": jnp.linalg.norm(mx - mt, axis=-1), "centroid": jnp.abs(cx - ct)}

    return blocks.in_blocks(one, mixes, clips, block=blocks.block_size(len(clips), 64))


# ----------------------------------------------------------------------------- the command


def _unique_names(cands) -> list[str]:
    """A file name (no extension) per candidate: its file's stem (kit and instrument for a
    kit's sounds), made unique with -2, -3, ..."""
    from drumlayer.studio import engine

    seen: dict[str, int] = {}
    out = []
    for c in cands:
        base = (os.path.splitext(os.path.basename(c.file))[0] if c.source_format == "folder"
                else f"{c.kit}_{c.instrument}{'_' + c.layer if c.layer else ''}")
        name = engine.safe_name(base) or "sound"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _read(paths: list[str]):
    """(clips [N, S], candidates, names, rejected [(path, reason)]) of every sound under paths."""
    from drumlayer import kits

    cands, rejected = kits.discover(paths)
    clips, ok = [], []
    for c in tqdm(cands, desc="reading", unit="file", file=sys.stderr, mininterval=1.0,
                  disable=len(cands) < 50):
        where = c.file + (f"#{c.instrument}" if c.spans else "")
        try:
            clips.append(kits.load_candidate(c, max_duration=30.0))
            ok.append(c)
        except audio.AudioError as e:
            rejected.append((where, e.reason + (f" ({e.hint})" if e.hint else "")))
    x = np.stack(clips) if clips else np.zeros((0, audio.ClipSpec().samples), np.float32)
    return x, ok, _unique_names(ok), rejected


def run(workdir: str, paths: list[str], out: str, config: AnalyzeConfig = AnalyzeConfig(),
        block: int = 64) -> dict:
    """Refine a recipe for every sound under paths; write OUT/<name>.recipe.json, <name>.wav,
    summary.csv and rejected.csv. Returns {'written': n, 'rejected': n, 'summary': path}."""
    from drumlayer import metrics
    from drumlayer.bundle import Bundle
    from drumlayer.studio import engine
    from drumlayer.studio.recipe import Envelope, Recipe

    b = Bundle.load(workdir)
    clips, cands, names, rejected = _read(paths)
    od = AnalyzeDir(out)
    os.makedirs(od.dir, exist_ok=True)
    with open(od.rejected, "w", newline="") as f:
        csv.writer(f).writerows([("file", "reason"), *rejected])
    for reason, n in collections.Counter(r for _, r in rejected).most_common():
        log.warning("analyze: %d file(s) skipped: %s", n, reason)
    if not len(clips):
        raise DrumlayerError(f"no readable sound under {', '.join(paths)}: see {od.rejected}")
    an = Analyzer.from_bundle(b, config)
    log.info("analyze: %d sounds, mode %s, %d sources", len(clips), config.mode, b.k)
    t0 = time.perf_counter()
    r = refine_all(an, clips, block)
    seconds = (time.perf_counter() - t0) / len(clips)
    decoder = engine.numpy_decoder(b.params)
    normaliser = b.config["model"]["normaliser"]
    env = Envelope()
    heard = [engine.envelope(s.shape[1], rate, env.attack, env.hold, env.decay)
             for s, rate in ((b.sources, audio.SAMPLE_RATE), (b.full_sources, b.full_rate))]
    mixes, rows = [], []
    for i, (c, name) in enumerate(zip(cands, names, strict=True)):
        recipe = Recipe(**recipe_fields(r, i), name=f"analyze: {c.file}")
        z = np.asarray(recipe.latent, np.float32)
        w = engine.edit_weights(engine.decode(decoder, z, normaliser), {}, set(), set(), 0.0,
                                recipe.residual)
        mixes.append(engine.render(w, b.sources, {}, heard[0], recipe.gain_db))
        x = engine.render(w, b.full_sources, {}, heard[1], recipe.gain_db)
        with open(od.recipe(name), "w") as f:
            f.write(recipe.model_copy(update={"weights": w.tolist()})
                    .model_dump_json(indent=1, exclude_none=True))
        with open(od.mix(name), "wb") as f:
            f.write(engine.wav_bytes(x, b.full_rate, "FLOAT"))
        rows.append([c.file if not c.spans else f"{c.file}#{c.instrument}", name,
                     int(metrics.active_layers(w)), round(float(w.max() / max(w.sum(), 1e-12)), 4),
                     round(recipe.gain_db, 2)])
    d = distances(np.stack(mixes), clips)
    header = ["file", "name", "active_layers", "largest_weight", "gain_db",
              "log_spectral_distance_db", "mfcc_distance", "centroid_error_hz", "seconds"]
    path = od.summary
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, row in enumerate(rows):
            w.writerow(row + [round(float(d[k][i]), 3) for k in
                              ("lsd", "mfcc", "centroid")] + [round(seconds, 4)])
    log.info("analyze: %d recipes (%.0f ms a sound; median LSD %.2f dB, MFCC distance %.1f, "
             "centroid error %.0f Hz), %d skipped -> %s", len(rows), 1e3 * seconds,
             np.median(d["lsd"]), np.median(d["mfcc"]), np.median(d["centroid"]), len(rejected),
             out)
    return {"written": len(rows), "rejected": len(rejected), "summary": path}


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "a trained workdir (its bundle)", flag_values=fv)
    flags.DEFINE_string("out", None, "where the recipes, mixes and summary.csv go",
                        flag_values=fv)
    flags.DEFINE_enum("mode", AnalyzeConfig.mode, MODES, "what is refined", flag_values=fv)
    flags.DEFINE_integer("block", 64, "sounds refined together", flag_values=fv)


def _command(f, paths: list[str]) -> int:
    if not f.workdir or not f.out or not paths:
        raise DrumlayerError("give --workdir=W --out=DIR and at least one file or folder")
    from drumlayer import cli

    cli.compilation_cache()
    res = run(f.workdir, paths, f.out, AnalyzeConfig(mode=f.mode), f.block)
    print(f"wrote {res['written']} recipes to {f.out} ({res['rejected']} files skipped: "
          f"{AnalyzeDir(f.out).rejected}); summary: {res['summary']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.analyze; argv without the program name (None: sys.argv)."""
    from drumlayer import cli

    return cli.run(_command, argv, "python -m drumlayer.analyze", __doc__, _define_flags,
                   positional=True)


if __name__ == "__main__":
    sys.exit(main())
