"""Batch evaluation of a trained workdir: the paper's Section 4, measured, against baselines.

    python -m drumlayer.evaluation.evaluate --workdir=runs/snare  # -> runs/snare/eval/report.md
    python -m drumlayer.evaluation.evaluate --compare --out=runs/ablations/ablations \
        runs/ablations/*/

The main job runs it as its last stage. Everything is batched: each experiment decodes all its
latent points, mixes and measures them in fixed-size jit-compiled blocks (one compilation per
function, no Python loop per pair or clip).

- interpolation (4.1): `pairs` ordered pairs of distinct test clips, `points` steps from z_a to
  z_b: weights, centroid and MFCC at each step, their distances from the start, the average
  curves and their R^2 against a straight line, and the layers that appear only mid-path;
- principal directions (4.2): every test clip moved along each of the bundle's PCA directions
  over z +- pca_range * u_j;
- cardinality (4.3): weights above 0.001 / 0.01 / 0.04 and the largest weight, per test clip;
- reconstruction (4.4): the model's raw and pruned (< 0.04 removed) mixes, the recipes refined
  by analysis by synthesis (`analyze`: the weights, and the latent alone) and the baselines'
  mixes of the same sources, measured against the test clips, with each method's time per sound.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer import cli, lock
from drumlayer.data import audio, fullband
from drumlayer.data.dataset import MIN_TEST_CLIPS, OUTSIDE, Dataset
from drumlayer.errors import DrumlayerError
from drumlayer.evaluation import baselines, generation, report
from drumlayer.evaluation.results import (
    EvalConfig,
    Fit,
    Interpolation,
    Measures,
    PrincipalDirections,
    Results,
    Scores,
    TestSet,
)
from drumlayer.features import extractor, measures
from drumlayer.features.batching import in_blocks
from drumlayer.model import vae
from drumlayer.recipes import refine, render
from drumlayer.recipes.bundle import Bundle
from drumlayer.training import distributed
from drumlayer.workdir import EvalDir, Workdir

log = logging.getLogger(__name__)
BLOCK = 64  # mixes per jit-compiled step


class TooFewTestClips(DrumlayerError):
    """The split left fewer than 2 test clips: nothing to interpolate between."""


def load_test(workdir: str, split: str = "test") -> TestSet | None:
    """The run's clips of one split that training and selection never saw, their audio and
    features: 'test' (other kits of the corpus; raises TooFewTestClips below MIN_TEST_CLIPS)
    or OUTSIDE (the out-of-library set; None below MIN_TEST_CLIPS, e.g. when data.holdout
    matched nothing)."""
    wd = Workdir(workdir)
    with open(wd.selection.targets) as f:
        ids = np.array(json.load(f).get(split, []), np.int64)
    if len(ids) < MIN_TEST_CLIPS:
        if split != "test":
            return None
        raise TooFewTestClips(f"{wd.selection.targets} has {len(ids)} test clips; the "
                              f"evaluation needs at least {MIN_TEST_CLIPS}: add samples or "
                              "widen data.split")
    ds = Dataset(wd.corpus)
    feats = np.load(wd.features.clips, mmap_mode="r")
    return TestSet(ids, [ds.name(i) for i in ids], ds.audio(ids), np.asarray(feats[ids]),
                   [ds.rows[i] for i in ids])


@jax.jit
def _descriptors(weights, sources):
    """weights [B, k] -> {'centroid' [B], 'mfcc' [B, 13]} of their mixes."""
    c, m = measures.descriptors(vae.mix(weights, sources))
    return {"centroid": c, "mfcc": m}


@functools.partial(jax.jit, static_argnames=("n_fft", "hop", "compression"))
def _compare(weights, mixed, target, target_feats, tc, tm, n_fft, hop, compression):
    """Everything section 4.4 measures, per clip: weights [B, k] (times the gain), their mix
    as heard [B, S], target audio [B, S], its features [B, D], centroid [B] and MFCC [B, 13]
    -> dict of [B]."""
    f = extractor.features(mixed, n_fft, hop, compression=compression)
    return {"feature_mse": jnp.mean((f - target_feats) ** 2, axis=-1),
            **measures.distances(mixed, target, (tc, tm)),
            "multi_resolution_stft": measures.multi_resolution_stft(mixed, target),
            "active_layers": measures.active_layers(weights).astype(jnp.float32),
            "nonzero_layers": jnp.sum(weights > 1e-6, axis=-1).astype(jnp.float32)}


def mix_descriptors(b: Bundle, weights: np.ndarray) -> dict:
    """{'centroid' [...], 'mfcc' [..., 13]} of the mixes of weights [..., k]."""
    flat = weights.reshape(-1, b.k)
    src = jnp.asarray(b.sources)
    out = in_blocks(lambda w: _descriptors(w, src), flat)
    return {k: v.reshape(weights.shape[:-1] + v.shape[1:]) for k, v in out.items()}


def decode(b: Bundle, z: np.ndarray) -> np.ndarray:
    """z [..., L] -> weights [..., k]."""
    w = in_blocks(lambda x: b.decode(x), z.reshape(-1, b.latent), block=1024)
    return w.reshape(z.shape[:-1] + (b.k,))


def encode(b: Bundle, feats: np.ndarray) -> np.ndarray:
    """Latent means [N, L] of features [N, D]."""
    return in_blocks(lambda x: b.encode(x)[0], feats, block=1024)


def choose_pairs(n: int, pairs: int, seed: int) -> np.ndarray:
    """`pairs` ordered pairs (a, b), a != b, of 0..n-1, distinct, seeded: [P, 2]
    (all n (n - 1) of them when fewer)."""
    a, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    allp = np.stack([a.ravel(), c.ravel()], -1)
    allp = allp[allp[:, 0] != allp[:, 1]]
    if pairs >= len(allp):
        return allp
    pick = np.random.default_rng(seed).choice(len(allp), pairs, replace=False)
    return allp[np.sort(pick)]


def interpolation(b: Bundle, z: np.ndarray, ec: EvalConfig) -> Interpolation:
    """Section 4.1 over z [N, L] (the test clips' latent means): ec.pairs ordered pairs,
    ec.points steps from z_a to z_b."""
    pairs = choose_pairs(len(z), ec.pairs, ec.seed)
    alpha = np.linspace(0.0, 1.0, ec.points, dtype=np.float32)
    zp = (1 - alpha[None, :, None]) * z[pairs[:, :1]] + alpha[None, :, None] * z[pairs[:, 1:]]
    w = decode(b, zp)
    d = mix_descriptors(b, w)
    distance = Measures(**jax.device_get(measures.path_distances(w, d["centroid"], d["mfcc"])))
    mean = distance.map(lambda v: v.mean(axis=0))
    return Interpolation(pairs=pairs, alpha=alpha, weights=w, centroid=d["centroid"],
                         mfcc=d["mfcc"], distance=distance, mean=mean,
                         r2=mean.map(lambda v: measures.r_squared(v, alpha)),
                         new_layers=measures.new_layers_mid_path(w))


def principal_directions(b: Bundle, z: np.ndarray, ec: EvalConfig) -> PrincipalDirections:
    """Section 4.2: each z [N, L] moved along each PCA direction u_j over z + c u_j,
    c in [-pca_range, pca_range]."""
    if b.pca is None:
        raise DrumlayerError("the bundle has no pca.npz: rerun the main job to rebuild the "
                             "bundle")
    u = b.pca["components"]  # [C, L]
    c = np.linspace(-ec.pca_range, ec.pca_range, ec.pca_points, dtype=np.float32)
    zp = z[:, None, None, :] + c[None, None, :, None] * u[None, :, None, :]
    w = decode(b, zp)
    d = mix_descriptors(b, w)
    return PrincipalDirections(
        offsets=c, weights=w, centroid=d["centroid"], mfcc=d["mfcc"],
        explained=b.pca["explained"], variance=b.pca["variance"],
        centroid_span_hz=np.ptp(d["centroid"], axis=-1).mean(0),
        mfcc_span=np.linalg.norm(d["mfcc"][..., -1, :] - d["mfcc"][..., 0, :], axis=-1).mean(0),
        weight_change=np.linalg.norm(w[..., -1, :] - w[..., 0, :], axis=-1).mean(0),
        active_layers=(w > measures.ACTIVE).sum(-1).mean(axis=(0, 2)))


# method -> the refinement's config: the default (each layer shaped too), and the latent alone
REFINED = {"refined": refine.AnalyzeConfig(), "refined_latent": refine.AnalyzeConfig(mode="latent")}


def heard(w: np.ndarray, fields: dict | None, sources: np.ndarray, rate: int) -> np.ndarray:
    """A recipe as heard: weights w [k] (times the gain) over sources [k, S] at rate, with the
    start delays and each layer's shaping of its `refine.recipe_fields` (None: the plain
    mix) -> [S] (no envelope)."""
    if fields is None:
        return np.asarray(w, np.float32) @ sources
    env = np.ones(sources.shape[1], np.float32)
    delays = render.offsets(fields["offsets_ms"], rate)
    return render.render(w, sources, delays, env, 0.0, fields["shaping"], rate)


def recipe_mixes(b: Bundle, an: refine.Analyzer, r: refine.Recipes) -> tuple[np.ndarray, list,
                                                                                list]:
    """The recipes r as heard at 22.05 kHz (gain in, no envelope; each layer's shaping and
    start delay, as the studio plays them): ([N, S], active layers a recipe, shaped layers a
    recipe)."""
    fields = [refine.recipe_fields(r, i, an.variants) for i in range(len(r.gain))]
    w = np.asarray(r.weights) * np.asarray(r.gain)[:, None]
    x = np.stack([heard(wi, f, b.sources, audio.SAMPLE_RATE) for wi, f in zip(w, fields,
                                                                             strict=True)])
    return x, [int(np.sum(wi > 0)) for wi in w], [len(f["shaping"]) for f in fields]


def _timed(fns: dict, n: int, pool) -> dict[str, tuple[np.ndarray, float]]:
    """{name: (fn()'s weights, seconds per sound of n)} for fns {name: fn}. The first calls,
    whose time is mostly compilation (9 s for each refinement at the paper's scale, on one
    core), run side by side on `pool`'s threads; then each fn is timed alone on a second
    call."""
    for done in [pool.submit(fn) for fn in fns.values()]:
        jax.block_until_ready(done.result())
    out = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        w = np.asarray(fn())
        out[name] = (w, (time.perf_counter() - t) / n)
    return out


def analyzers(b: Bundle) -> dict[str, refine.Analyzer]:
    """The refinements of REFINED for b, each compiled once for every test set of its shape."""
    return {name: refine.Analyzer.from_bundle(b, config) for name, config in REFINED.items()}


def reconstruction(b: Bundle, test: TestSet,
                   refiners: dict[str, refine.Analyzer] | None = None) -> dict[str, Fit]:
    """Section 4.4, the recipes refined by analysis by synthesis, and the baselines:
    {method: Fit}, all mixed from the same sources (the default refinement's recipes as heard:
    each layer shaped, as the studio and the exports play them)."""
    f = b.config["features"]
    n = len(test.ids)
    src_feats = np.asarray(b.features(b.sources))[:, :-1]  # spectra only: attack is not additive

    def scores(w, x, tc, tm) -> dict:
        return in_blocks(lambda w_, x_, t, tf, c_, m_: _compare(
            w_, x_, t, tf, c_, m_, int(f["n_fft"]), int(f["hop"]), f["compression"]),
            w, x, test.audio, test.features, tc, tm)

    def descriptors():
        """The test clips' descriptors (once, not once per method); the comparison compiles
        here too, beside the fits."""
        tc, tm = in_blocks(jax.jit(measures.descriptors), test.audio)
        scores(np.zeros((n, b.k), np.float32), np.zeros_like(test.audio), tc, tm)
        return tc, tm

    fns = {"model": lambda: decode(b, encode(b, test.features))}
    shaped = {}  # method -> (analyzer, recipes), where a recipe is more than its weights
    for name, an in (refiners or analyzers(b)).items():
        def refined(an=an, name=name):
            r = refine.refine_all(an, test.audio)
            if an.config.mode == "shape":
                shaped[name] = (an, r)
            return r.weights * r.gain[:, None]  # the gain is part of the recipe

        fns[name] = refined
    for name in baselines.BASELINES:
        fns[name] = functools.partial(baselines.fit, name, src_feats, test.features[:, :-1])
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        side = pool.submit(descriptors)
        fits = _timed(fns, n, pool)
        tc, tm = side.result()
    raw = fits.pop("model")
    fits = {"model": raw, "model_pruned": (np.asarray(measures.prune(raw[0])), raw[1]), **fits}
    src = np.asarray(b.sources, np.float32)
    layers = {name: [refine.recipe_fields(r, i, an.variants) for i in range(n)]
              for name, (an, r) in shaped.items()}
    out = {}
    for name, (w, seconds) in fits.items():
        fields = layers.get(name)
        x = w @ src if fields is None else np.stack(
            [heard(wi, f, src, audio.SAMPLE_RATE) for wi, f in zip(w, fields, strict=True)])
        out[name] = Fit(weights=w, scores=Scores(**scores(w, x, tc, tm)),
                        seconds_per_sound=seconds, layers=fields)
    return out


def run(workdir: str, ec: EvalConfig | None = None) -> Results:
    """Every experiment on a trained workdir; the reconstruction once more on the
    out-of-library set, when the run has one."""
    b = Bundle.load(workdir)
    ec = ec or EvalConfig.from_config(b.config)
    test, outside = load_test(workdir), load_test(workdir, OUTSIDE)
    z = encode(b, test.features)
    log.info("evaluate: %d test clips, %d out of library, %d sources, latent %d", len(z),
             0 if outside is None else len(outside.ids), b.k, b.latent)
    seconds = {}

    def timed(name, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        seconds[name] = round(time.perf_counter() - t, 3)
        log.info("evaluate: %s in %.1f s", name, seconds[name])
        return out

    interp = timed("interpolation", interpolation, b, z, ec)
    pcs = timed("principal_directions", principal_directions, b, z, ec)
    refiners = analyzers(b)  # the out-of-library set reuses what the test split compiled
    recon = timed("reconstruction", reconstruction, b, test, refiners)
    out_recon = None if outside is None else timed(
        "reconstruction_outside", reconstruction, b, outside, refiners)
    gen = timed("generation", generated_sounds, workdir, b, z, test, outside, ec)
    return Results(bundle=b, test=test, z=z, config=ec, interpolation=interp, pca=pcs,
                   cardinality=measures.cardinality(recon["model"].weights),
                   reconstruction=recon, seconds=seconds, outside=outside,
                   outside_reconstruction=out_recon, generation=gen)


def generated_sounds(workdir: str, b: Bundle, z: np.ndarray, test: TestSet,
                     outside: TestSet | None, ec: EvalConfig) -> dict:
    """`generation.measure` of the sounds drawn from b's space (`generation.generated`)
    against the held-out clips (test split and out of library), the training clips the
    reference line."""
    wd = Workdir(workdir)
    ds = Dataset(wd.corpus)
    with open(wd.selection.targets) as f:
        train = [i for i in json.load(f)["train"] if i < ds.n]  # the clips, not their variants
    held = test.audio if outside is None else np.concatenate([test.audio, outside.audio])
    sets = generation.generated(b, z, decode, ec.seed, ec.generation_draws)
    src = np.asarray(b.sources, np.float32)
    d = generation.descriptor_matrix
    return generation.measure(d(held), d(ds.audio(train)), d(src),
                              {name: d(w @ src) for name, w in sets.items()})


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "median": float(np.median(x)), "p10": float(
        np.percentile(x, 10)), "p90": float(np.percentile(x, 90))}


def summary(res: Results) -> dict:
    """Every number of the report, JSON-ready (arrays become lists or statistics): what
    eval/metrics.json holds."""
    it, pc = res.interpolation, res.pca
    return {
        "test_clips": len(res.z), "sources": res.bundle.k,
        "config": dataclasses.asdict(res.config),
        "interpolation": {
            "pairs": len(it.pairs), "points": len(it.alpha),
            **{f"r2_{m}": v for m, v in it.r2.items()},
            **{f"mean_{m}": v.tolist() for m, v in it.mean.items()},
            "individual_r2_weights": _stats([measures.r_squared(c, it.alpha)
                                             for c in it.distance.weights]),
            "new_layers_mid_path": _stats(it.new_layers),
            "pairs_with_new_layers": float(np.mean(it.new_layers > 0))},
        "pca": {k: np.asarray(getattr(pc, k)).tolist() for k in (
            "explained", "variance", "centroid_span_hz", "mfcc_span", "weight_change",
            "active_layers")} | {"range": float(pc.offsets[-1])},
        "cardinality": {k: _stats(v) for k, v in res.cardinality.items()},
        **_reconstruction_summary(res.reconstruction),
        **({} if res.outside is None else {OUTSIDE: {
            "clips": len(res.outside.ids), "holdout": list(res.bundle.config["data"].get(
                "holdout", [])), **_reconstruction_summary(res.outside_reconstruction)}}),
        **({} if res.generation is None else {"generation": res.generation}),
        "seconds": res.seconds,
    }


def _reconstruction_summary(fits: dict[str, Fit]) -> dict:
    return {"reconstruction": {name: {k: _stats(v) for k, v in fit.scores.items()}
                               for name, fit in fits.items()},
            "reconstruction_ms_per_sound": {name: round(1e3 * fit.seconds_per_sound, 3)
                                            for name, fit in fits.items()}}


def _peak_normalised(x: np.ndarray) -> np.ndarray:
    return x * (10 ** (-1 / 20) / max(float(np.max(np.abs(x))), 1e-9))


def write_audio(res: Results, out: str, examples: int) -> list[str]:
    """A few reconstructions (original, model, pruned, refined, matching pursuit) and
    interpolations (5 points, 1 s each) as 24-bit WAV, each peak-normalised to -1 dBFS, at
    the bundle's full-band rate: the mixes of the full-band sources, and the test clips read
    again from their recordings (band-limited where that fails)."""
    b, test = res.bundle, res.test
    os.makedirs(out, exist_ok=True)
    written = []

    def put(name, x):
        path = os.path.join(out, name)
        audio.write_wav(path, _peak_normalised(np.asarray(x)), b.full_rate)
        written.append(path)

    recon = res.reconstruction
    for i in range(min(examples, len(test.ids))):
        try:
            original = fullband.clip(test.rows[i], b.full_rate)
        except audio.AudioError as e:
            log.info("evaluate: test clip %d is heard band-limited: %s", i, e)
            original = fullband.band_limited(test.audio[i], b.full_rate, b.full_sources.shape[1])
        put(f"recon{i}_original.wav", original)
        for name in ("model", "model_pruned", "refined", "matching_pursuit"):
            fit = recon[name]
            put(f"recon{i}_{name}.wav", heard(fit.weights[i], fit.layers and fit.layers[i],
                                              b.full_sources, b.full_rate))
    it = res.interpolation
    steps = np.unique(np.linspace(0, len(it.alpha) - 1, 5).round().astype(int))
    for p in range(min(examples, len(it.pairs))):
        clips = b.mix_full(it.weights[p, steps])
        put(f"interp{p}.wav", np.concatenate(list(clips)))
    return written


def write(res: Results, ed: EvalDir) -> dict:
    """eval/metrics.json, the figures (PNG), WAVs in eval/audio/ and eval/report.md."""

    os.makedirs(ed.dir, exist_ok=True)
    s = summary(res)
    with open(ed.metrics, "w") as f:
        json.dump(s, f, indent=1)
    written = write_audio(res, ed.audio, res.config.audio_examples)
    report.write(res, s, ed, [os.path.relpath(p, ed.dir) for p in written])
    return s


def evaluate_workdir(workdir: str, ec: EvalConfig | None = None) -> dict:
    """Run and write everything into WORKDIR/eval/. Returns the summary."""
    res = run(workdir, ec)
    ed = Workdir(workdir).eval
    s = write(res, ed)
    log.info("evaluate: -> %s", ed.report)
    return s


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "a trained workdir: writes WORKDIR/eval/",
                        flag_values=fv)
    flags.DEFINE_bool("compare", False, "tabulate the evaluated workdirs given as arguments "
                      "side by side (ablations)", flag_values=fv)
    flags.DEFINE_string("out", "ablations", "with --compare: output path without extension",
                        flag_values=fv)


def _command(f, workdirs: list[str]) -> int:
    if f.compare:
        if f.workdir or not workdirs:
            raise DrumlayerError("--compare takes the evaluated workdirs as arguments, not "
                                 "--workdir")

        print(f"wrote {report.compare(workdirs, f.out)}")
    else:
        if not f.workdir or workdirs:
            raise DrumlayerError("give --workdir=W (or --compare W1 W2 ...)")

        distributed.use_cpu_cores_as_trained(f.workdir)
        cli.compilation_cache()
        with lock.exclusive(Workdir(f.workdir)):
            evaluate_workdir(f.workdir)
        print(f"wrote {Workdir(f.workdir).eval.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.evaluation.evaluate; argv without the program name (None: sys.argv)."""

    return cli.run(_command, argv, "python -m drumlayer.evaluation.evaluate", __doc__,
                   _define_flags, positional=True)


if __name__ == "__main__":
    sys.exit(main())
