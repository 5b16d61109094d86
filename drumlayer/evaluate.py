"""Batch evaluation of a trained workdir: the paper's Section 4, measured, against baselines.

    python -m drumlayer.evaluate --workdir=runs/snare     # -> runs/snare/eval/report.md
    python -m drumlayer.evaluate --compare runs/ablations/*/ --out=runs/ablations/ablations

The main job runs it as its last stage. Everything is batched: each experiment decodes all its
latent points, mixes and measures them in fixed-size jit-compiled blocks (one compilation per
function, no Python loop per pair or clip).

- interpolation (4.1): `pairs` ordered pairs of distinct test clips, `points` steps from z_a to
  z_b: weights, centroid and MFCC at each step, their distances from the start, the average
  curves and their R^2 against a straight line, and the layers that appear only mid-path;
- principal directions (4.2): every test clip moved along each of the bundle's PCA directions
  over z +- pca_range * u_j;
- cardinality (4.3): weights above 0.001 / 0.01 / 0.04 and the largest weight, per test clip;
- reconstruction (4.4): the model's raw and pruned (< 0.04 removed) mixes and the baselines' mixes
  of the same sources, measured against the test clips.
"""

from __future__ import annotations

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

from drumlayer import audio, baselines, corpus, metrics, model, npyio, spectral
from drumlayer.bundle import Bundle
from drumlayer.workdir import Workdir

log = logging.getLogger(__name__)
BLOCK = 64  # mixes per jit-compiled step


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    pairs: int = 200
    points: int = 21
    pca_range: float = 20.0
    pca_points: int = 21
    audio_examples: int = 3
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict) -> EvalConfig:
        e = config.get("evaluate", {})
        fields = {f.name for f in dataclasses.fields(cls)} - {"seed"}
        return cls(**{k: v for k, v in e.items() if k in fields}, seed=int(config["seed"]))


@dataclasses.dataclass
class TestSet:
    ids: np.ndarray  # [N] corpus ids
    names: list[str]  # [N] "kit / instrument"
    audio: np.ndarray  # [N, S]
    features: np.ndarray  # [N, D]


def load_test(workdir: str) -> TestSet:
    """The run's test clips (never seen in training or selection), their audio and features."""
    wd = Workdir(workdir)
    with open(os.path.join(wd.selection, "targets.json")) as f:
        ids = np.array(json.load(f)["test"], np.int64)
    if len(ids) < 2:
        raise ValueError(f"{wd.selection}/targets.json has {len(ids)} test clips; the "
                         "evaluation needs at least 2: add samples or widen data.split")
    rows = corpus.read_manifest(wd.corpus)
    clips = os.path.join(wd.corpus, "clips.npy")
    feats = np.load(os.path.join(wd.features, "clips.npy"), mmap_mode="r")
    return TestSet(ids, [f"{rows[i]['kit']} / {rows[i]['instrument']}" for i in ids],
                   np.stack([npyio.read_rows(clips, i, i + 1)[0] for i in ids]),
                   np.asarray(feats[ids]))


def in_blocks(fn, *arrays, block: int = BLOCK):
    """fn over the leading axis of arrays [N, ...] in padded blocks of `block` rows (one shape,
    one compilation); the outputs (a pytree of [block, ...]) are joined and cut back to N."""
    n = arrays[0].shape[0]
    outs = []
    for i in range(0, n, block):
        part = [np.asarray(a[i:i + block]) for a in arrays]
        pad = block - part[0].shape[0]
        part = [np.pad(p, [(0, pad)] + [(0, 0)] * (p.ndim - 1)) for p in part]
        outs.append(jax.device_get(fn(*part)))
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:n], *outs)


@jax.jit
def _describe(weights, sources):
    """weights [B, k] -> {'centroid' [B], 'mfcc' [B, 13]} of their mixes."""
    c, m = metrics.descriptors(model.mix(weights, sources))
    return {"centroid": c, "mfcc": m}


@functools.partial(jax.jit, static_argnames=("n_fft", "hop", "compression"))
def _compare(weights, sources, target, target_feats, tc, tm, n_fft, hop, compression):
    """Everything section 4.4 measures, per clip: weights [B, k], target audio [B, S], its
    features [B, D], centroid [B] and MFCC [B, 13] -> dict of [B]."""
    mixed = model.mix(weights, sources)
    f = spectral.features(mixed, n_fft, hop, compression=compression)
    c, m = metrics.descriptors(mixed)
    return {"feature_mse": jnp.mean((f - target_feats) ** 2, axis=-1),
            "log_spectral_distance_db": metrics.log_spectral_distance(mixed, target),
            "mfcc_distance": jnp.linalg.norm(m - tm, axis=-1),
            "centroid_error_hz": jnp.abs(c - tc),
            "multi_resolution_stft": metrics.multi_resolution_stft(mixed, target),
            "active_layers": metrics.active_layers(weights).astype(jnp.float32),
            "nonzero_layers": jnp.sum(weights > 1e-6, axis=-1).astype(jnp.float32)}


def describe(b: Bundle, weights: np.ndarray) -> dict:
    """Centroid [...] and MFCC [..., 13] of the mixes of weights [..., k]."""
    flat = weights.reshape(-1, b.k)
    src = jnp.asarray(b.sources)
    out = in_blocks(lambda w: _describe(w, src), flat)
    return {k: v.reshape(weights.shape[:-1] + v.shape[1:]) for k, v in out.items()}


def decode(b: Bundle, z: np.ndarray) -> np.ndarray:
    """z [..., L] -> weights [..., k]."""
    w = in_blocks(lambda x: b.decode(x), z.reshape(-1, b.latent), block=1024)
    return w.reshape(z.shape[:-1] + (b.k,))


def encode(b: Bundle, feats: np.ndarray) -> np.ndarray:
    """Latent means [N, L] of features [N, D]."""
    return in_blocks(lambda x: b.encode(x)[0], feats, block=1024)


# ----------------------------------------------------------------------------- experiments


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


def interpolation(b: Bundle, z: np.ndarray, ec: EvalConfig) -> dict:
    """Section 4.1 over z [N, L] (the test clips' latent means). Returns arrays: pairs [P, 2],
    alpha [T], weights [P, T, k], centroid [P, T], mfcc [P, T, 13], distance_<m> [P, T] and
    mean_<m> [T] for m in weights / centroid / mfcc, r2_<m> (of the mean curve), new_layers [P]."""
    pairs = choose_pairs(len(z), ec.pairs, ec.seed)
    alpha = np.linspace(0.0, 1.0, ec.points, dtype=np.float32)
    zp = (1 - alpha[None, :, None]) * z[pairs[:, :1]] + alpha[None, :, None] * z[pairs[:, 1:]]
    w = decode(b, zp)
    d = describe(b, w)
    dist = jax.device_get(metrics.path_distances(w, d["centroid"], d["mfcc"]))
    out = {"pairs": pairs, "alpha": alpha, "weights": w, **d}
    for m, v in dist.items():
        out[f"distance_{m}"] = v
        out[f"mean_{m}"] = v.mean(axis=0)
        out[f"r2_{m}"] = metrics.r_squared(v.mean(axis=0), alpha)
    out["new_layers"] = metrics.new_layers_mid_path(w)
    return out


def principal_directions(b: Bundle, z: np.ndarray, ec: EvalConfig) -> dict:
    """Section 4.2: each z [N, L] moved along each PCA direction u_j over z + c u_j,
    c in [-pca_range, pca_range]. Returns offsets [T], weights [N, C, T, k], centroid [N, C, T],
    mfcc [N, C, T, 13], and per component (means over clips) centroid_span_hz [C],
    mfcc_span [C], weight_change [C] (L2 between the two ends), active_layers [C] (mean along
    the path), plus the PCA itself (explained [C], variance [C])."""
    if b.pca is None:
        raise ValueError("the bundle has no pca.npz: rerun the main job to rebuild the bundle")
    u = b.pca["components"]  # [C, L]
    c = np.linspace(-ec.pca_range, ec.pca_range, ec.pca_points, dtype=np.float32)
    zp = z[:, None, None, :] + c[None, None, :, None] * u[None, :, None, :]
    w = decode(b, zp)
    d = describe(b, w)
    return {"offsets": c, "weights": w, **d, "explained": b.pca["explained"],
            "variance": b.pca["variance"],
            "centroid_span_hz": np.ptp(d["centroid"], axis=-1).mean(0),
            "mfcc_span": np.linalg.norm(d["mfcc"][..., -1, :] - d["mfcc"][..., 0, :],
                                        axis=-1).mean(0),
            "weight_change": np.linalg.norm(w[..., -1, :] - w[..., 0, :], axis=-1).mean(0),
            "active_layers": (w > metrics.ACTIVE).sum(-1).mean(axis=(0, 2))}


def reconstruction(b: Bundle, test: TestSet, z: np.ndarray) -> dict:
    """Section 4.4 and the baselines: {method: {'weights' [N, k], metric: [N]}} for the model
    (raw and pruned) and every baseline, all mixed from the same sources."""
    f = b.config["features"]
    w_model = decode(b, z)
    src_feats = np.asarray(b.features(b.sources))[:, :-1]  # spectra only: attack is not additive
    candidates = {"model": w_model, "model_pruned": np.asarray(metrics.prune(w_model))}
    for name in baselines.BASELINES:
        candidates[name] = np.asarray(baselines.fit(name, src_feats, test.features[:, :-1]))
    out, src = {}, jnp.asarray(b.sources)
    tc, tm = in_blocks(jax.jit(metrics.descriptors), test.audio)  # once, not once per method
    for name, w in candidates.items():
        m = in_blocks(lambda w_, t, tf, c_, m_: _compare(
            w_, src, t, tf, c_, m_, int(f["n_fft"]), int(f["hop"]), f["compression"]),
            w, test.audio, test.features, tc, tm)
        out[name] = {"weights": w, **m}
    return out


def run(workdir: str, ec: EvalConfig | None = None) -> dict:
    """Every experiment on a trained workdir: a dict of arrays (see each function)."""
    b = Bundle.load(workdir)
    ec = ec or EvalConfig.from_config(b.config)
    test = load_test(workdir)
    z = encode(b, test.features)
    log.info("evaluate: %d test clips, %d sources, latent %d", len(z), b.k, b.latent)
    seconds = {}

    def timed(name, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        seconds[name] = round(time.perf_counter() - t, 3)
        log.info("evaluate: %s in %.1f s", name, seconds[name])
        return out

    interp = timed("interpolation", interpolation, b, z, ec)
    pcs = timed("principal_directions", principal_directions, b, z, ec)
    recon = timed("reconstruction", reconstruction, b, test, z)
    return {"bundle": b, "test": test, "z": z, "config": ec, "interpolation": interp,
            "pca": pcs, "cardinality": metrics.cardinality(recon["model"]["weights"]),
            "reconstruction": recon, "seconds": seconds}


# ----------------------------------------------------------------------------- outputs


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "median": float(np.median(x)), "p10": float(
        np.percentile(x, 10)), "p90": float(np.percentile(x, 90))}


def summary(res: dict) -> dict:
    """Every number of the report, JSON-ready (arrays become lists or statistics)."""
    it, pc = res["interpolation"], res["pca"]
    recon = {name: {k: _stats(v) for k, v in m.items() if k != "weights"}
             for name, m in res["reconstruction"].items()}
    return {
        "test_clips": len(res["z"]), "sources": res["bundle"].k,
        "config": dataclasses.asdict(res["config"]),
        "interpolation": {
            "pairs": len(it["pairs"]), "points": len(it["alpha"]),
            **{f"r2_{m}": it[f"r2_{m}"] for m in ("weights", "centroid", "mfcc")},
            **{f"mean_{m}": it[f"mean_{m}"].tolist() for m in ("weights", "centroid", "mfcc")},
            "individual_r2_weights": _stats([metrics.r_squared(c, it["alpha"])
                                             for c in it["distance_weights"]]),
            "new_layers_mid_path": _stats(it["new_layers"]),
            "pairs_with_new_layers": float(np.mean(it["new_layers"] > 0))},
        "pca": {k: np.asarray(pc[k]).tolist() for k in (
            "explained", "variance", "centroid_span_hz", "mfcc_span", "weight_change",
            "active_layers")} | {"range": float(pc["offsets"][-1])},
        "cardinality": {k: _stats(v) for k, v in res["cardinality"].items()},
        "reconstruction": recon, "seconds": res["seconds"],
    }


def _peak_normalised(x: np.ndarray) -> np.ndarray:
    return x * (10 ** (-1 / 20) / max(float(np.max(np.abs(x))), 1e-9))


def write_audio(res: dict, out: str, examples: int) -> list[str]:
    """A few reconstructions (original, model, pruned, matching pursuit) and interpolations
    (5 points, 1 s each) as 24-bit WAV at 22.05 kHz, each peak-normalised to -1 dBFS."""
    b, test = res["bundle"], res["test"]
    os.makedirs(out, exist_ok=True)
    written = []

    def put(name, x):
        path = os.path.join(out, name)
        audio.write_wav(path, _peak_normalised(np.asarray(x)))
        written.append(path)

    recon = res["reconstruction"]
    for i in range(min(examples, len(test.ids))):
        put(f"recon{i}_original.wav", test.audio[i])
        for name in ("model", "model_pruned", "matching_pursuit"):
            put(f"recon{i}_{name}.wav", np.asarray(b.mix(recon[name]["weights"][i:i + 1]))[0])
    it = res["interpolation"]
    steps = np.unique(np.linspace(0, len(it["alpha"]) - 1, 5).round().astype(int))
    for p in range(min(examples, len(it["pairs"]))):
        clips = np.asarray(b.mix(it["weights"][p, steps]))
        put(f"interp{p}.wav", np.concatenate(list(clips)))
    return written


def write(res: dict, out: str) -> dict:
    """eval/metrics.json, the figures (PNG), WAVs in eval/audio/ and eval/report.md."""
    from drumlayer import report

    os.makedirs(out, exist_ok=True)
    s = summary(res)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(s, f, indent=1)
    written = write_audio(res, os.path.join(out, "audio"), res["config"].audio_examples)
    report.write(res, s, out, [os.path.relpath(p, out) for p in written])
    return s


def evaluate_workdir(workdir: str, ec: EvalConfig | None = None) -> dict:
    """Run and write everything into WORKDIR/eval/. Returns the summary."""
    res = run(workdir, ec)
    out = Workdir(workdir).path("eval")
    s = write(res, out)
    log.info("evaluate: -> %s/report.md", out)
    return s


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m drumlayer.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", help="a trained workdir: writes WORKDIR/eval/")
    p.add_argument("--compare", nargs="+", metavar="WORKDIR",
                   help="evaluated workdirs to tabulate side by side (ablations)")
    p.add_argument("--out", help="with --compare: output path without extension")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if bool(a.workdir) == bool(a.compare):
        p.error("give either --workdir or --compare")
    try:
        if a.compare:
            from drumlayer import report

            path = report.compare(a.compare, a.out or "ablations")
            print(f"wrote {path}")
        else:
            evaluate_workdir(a.workdir)
            print(f"wrote {Workdir(a.workdir).path('eval', 'report.md')}")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
