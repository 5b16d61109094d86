"""The main job's stages, in order, each skipped when its output is valid for the config.

corpus (+ augmentation) -> features -> selection (sources, target split) -> ... ; each stage
writes a small JSON stamp last, holding what it was made from; a stage whose stamp matches is
skipped. Reads the config; the numerical functions it calls take plain arguments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from drumlayer import audio, corpus, metrics, npyio, selection, spectral, train
from drumlayer import bundle as bundle_lib
from drumlayer.workdir import Workdir

log = logging.getLogger(__name__)
SELECTION_METHODS = ("frank_wolfe", "random", "k_medoids")


def corpus_options(config: ml_collections.ConfigDict) -> corpus.CorpusOptions:
    d = config.data
    return corpus.CorpusOptions(
        category=d.category, spec=audio.ClipSpec(), max_duration=float(d.max_duration),
        near_duplicate=float(d.near_duplicate), split=tuple(float(x) for x in d.split),
        seed=int(config.seed), procedural=int(d.procedural),
    )


def _stamp_ok(path: str, want: dict) -> bool:
    try:
        with open(path) as f:
            return json.load(f) == want
    except (OSError, ValueError):
        return False


def _write_stamp(path: str, stamp: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(stamp, f, indent=2)
    os.replace(path + ".tmp", path)


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def stage_corpus(config: ml_collections.ConfigDict, wd: Workdir) -> dict:
    """Build (or reuse) the corpus and its augmented training targets."""
    opts = corpus_options(config)
    out = wd.corpus
    meta_path = os.path.join(out, "corpus.json")
    if config.data.synthetic:
        if os.path.exists(meta_path) and corpus.is_built(out, [], opts):
            log.info("corpus: up to date in %s (skipped)", out)
        else:
            corpus.build_procedural(out, opts, why="data.synthetic is set")
    else:
        roots = list(config.data.roots) or corpus.default_roots()
        roots = [os.path.abspath(os.path.expanduser(r)) for r in roots]
        if roots and corpus.is_built(out, roots, opts):
            log.info("corpus: up to date in %s (skipped)", out)
        else:
            corpus.build(roots, out, opts)
    with open(meta_path) as f:
        meta = json.load(f)
    n_aug = int(config.data.augment_per_clip)
    aug_meta = os.path.join(out, "augmented.json")
    want = {"per_clip": n_aug, "seed": int(config.seed), "corpus": meta["fingerprint"]}
    if n_aug > 0:
        if _stamp_ok(aug_meta, want):
            log.info("augmentation: up to date in %s (skipped)", out)
        else:
            corpus.write_augmented(out, n_aug, seed=int(config.seed))
            _write_stamp(aug_meta, want)
    return meta


def compute_features(src: str, dst: str, cfg: ml_collections.ConfigDict, desc: str) -> None:
    """features of every row of the clip file src -> dst [N, n_fft // 2 + 1], block by block."""
    n = npyio.num_rows(src)
    dim = cfg.n_fft // 2 + 1
    fn = jax.jit(lambda x: spectral.features(x, cfg.n_fft, cfg.hop,
                                             compression=cfg.compression))
    with npyio.RowWriter(dst + ".tmp.npy", (dim,), np.float32, n) as out:
        for i in tqdm(range(0, n, cfg.batch), desc=desc, unit="batch", file=sys.stderr,
                      mininterval=1.0):
            block = npyio.read_rows(src, i, i + cfg.batch)
            pad = cfg.batch - block.shape[0]  # one shape for every step: one compilation
            f = np.asarray(fn(np.pad(block, ((0, pad), (0, 0)))))[: block.shape[0]]
            for row in f:
                out.append(row)
    os.replace(dst + ".tmp.npy", dst)


def stage_features(config: ml_collections.ConfigDict, wd: Workdir, corpus_meta: dict) -> None:
    """Features of the corpus clips and of the augmented targets."""
    stamp = {"corpus": corpus_meta["fingerprint"], "augment": int(config.data.augment_per_clip),
             "features": config.features.to_dict()}
    stamp_path = os.path.join(wd.features, "features.json")
    if _stamp_ok(stamp_path, stamp):
        log.info("features: up to date in %s (skipped)", wd.features)
        return
    os.makedirs(wd.features, exist_ok=True)
    compute_features(os.path.join(wd.corpus, "clips.npy"),
                     os.path.join(wd.features, "clips.npy"), config.features, "features")
    aug = os.path.join(wd.corpus, "augmented.npy")
    aug_feats = os.path.join(wd.features, "augmented.npy")
    if config.data.augment_per_clip > 0 and os.path.exists(aug):
        compute_features(aug, aug_feats, config.features, "features (augmented)")
    elif os.path.exists(aug_feats):
        os.remove(aug_feats)  # from an earlier config with augmentation
    _write_stamp(stamp_path, stamp)
    log.info("features: -> %s", wd.features)


def all_features(wd: Workdir) -> tuple[np.ndarray, np.ndarray]:
    """(features [N + M, D] of the corpus clips then the augmented ones, parent id [M] of each
    augmented clip). Ids below N are corpus clips; id N + j is augmented clip j."""
    feats = np.load(os.path.join(wd.features, "clips.npy"))
    aug = os.path.join(wd.features, "augmented.npy")
    if not os.path.exists(aug):
        return feats, np.zeros(0, np.int64)
    with open(os.path.join(wd.corpus, "augmented.csv")) as f:
        parents = np.array([int(line.split(",")[1]) for line in f.readlines()[1:]], np.int64)
    return np.concatenate([feats, np.load(aug)]), parents


def clip(wd: Workdir, i: int) -> np.ndarray:
    """Audio [S] of a clip id (corpus ids first, then the augmented ones)."""
    path = os.path.join(wd.corpus, "clips.npy")
    n = npyio.num_rows(path)
    if i >= n:
        path, i = os.path.join(wd.corpus, "augmented.npy"), i - n
    return npyio.read_rows(path, i, i + 1)[0]


def select_sources(feats: np.ndarray, pool: np.ndarray, cfg: ml_collections.ConfigDict,
                   seed: int) -> tuple[np.ndarray, dict]:
    """Choose cfg.k source ids among `pool` (corpus ids). Returns (ids [k], info)."""
    k = int(cfg.k)
    if k > len(pool):
        raise ValueError(f"selection.k = {k} but only {len(pool)} training clips: lower "
                         "selection.k or add samples")
    if cfg.method not in SELECTION_METHODS:
        raise ValueError(f"selection.method must be one of {SELECTION_METHODS}, got "
                         f"{cfg.method!r}")
    if cfg.method == "random":
        return np.sort(np.random.default_rng(seed).choice(pool, k, replace=False)), {}
    X = feats[pool]
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    if cfg.method == "k_medoids":
        return pool[selection.k_medoids(X, k, seed=seed)], {}
    res = selection.frank_wolfe(X.T, k, beta=float(cfg.beta))
    if len(res.indices) < k:
        raise ValueError(f"Frank-Wolfe found {len(res.indices)} of {k} sources in "
                         f"{res.iterations} iterations: raise selection.beta (now {cfg.beta})")
    info = {"iterations": res.iterations, "objective": res.objective.tolist()}
    return pool[res.indices], info


def stage_selection(config: ml_collections.ConfigDict, wd: Workdir, corpus_meta: dict) -> dict:
    """The source library (sources.json, sources.npy) and the target split (targets.json)."""
    stamp = {"corpus": corpus_meta["fingerprint"], "features": config.features.to_dict(),
             "selection": config.selection.to_dict(), "seed": int(config.seed)}
    stamp_path = os.path.join(wd.selection, "selection.json")
    if _stamp_ok(stamp_path, stamp):
        log.info("selection: up to date in %s (skipped)", wd.selection)
        with open(os.path.join(wd.selection, "sources.json")) as f:
            return json.load(f)
    os.makedirs(wd.selection, exist_ok=True)
    rows = corpus.read_manifest(wd.corpus)
    n = len(rows)
    split = np.array([r["split"] for r in rows])
    feats, parents = all_features(wd)
    train_ids = np.concatenate([np.flatnonzero(split == "train"), n + np.arange(len(parents))])
    pool = train_ids if config.selection.pool == "train+augmented" else train_ids[train_ids < n]
    if config.selection.pool not in ("train", "train+augmented"):
        raise ValueError("selection.pool must be 'train' or 'train+augmented', got "
                         f"{config.selection.pool!r}")
    ids, info = select_sources(feats, pool, config.selection, int(config.seed))
    order = [int(i) for i in ids]
    np.save(os.path.join(wd.selection, "sources.npy"), np.stack([clip(wd, i) for i in order]))

    def name(i: int) -> str:
        r = rows[i] if i < n else rows[parents[i - n]]
        return f"{r['kit']} / {r['instrument']}" + ("" if i < n else f" (variant {i - n})")

    sources = {"ids": order, "names": [name(i) for i in order],
               "files": [rows[i if i < n else parents[i - n]]["file"] for i in order],
               "method": config.selection.method, "pool": config.selection.pool, **info}
    chosen = set(order)
    targets = {"train": [int(i) for i in train_ids if int(i) not in chosen],
               "val": np.flatnonzero(split == "val").tolist(),
               "test": np.flatnonzero(split == "test").tolist()}
    with open(os.path.join(wd.selection, "sources.json"), "w") as f:
        json.dump(sources, f, indent=1)
    with open(os.path.join(wd.selection, "targets.json"), "w") as f:
        json.dump(targets, f)
    _write_stamp(stamp_path, stamp)
    log.info("selection: %d sources (%s) from %d training clips; targets: %d train, "
             "%d val, %d test -> %s", len(order), config.selection.method,
             len(pool), len(targets["train"]), len(targets["val"]), len(targets["test"]),
             wd.selection)
    return sources


def train_config(config: ml_collections.ConfigDict) -> train.TrainConfig:
    t, m, f = config.train, config.model, config.features
    return train.TrainConfig(
        batch=int(t.batch), learning_rate=float(t.learning_rate), grad_clip=float(t.grad_clip),
        pretrain_epochs=int(t.pretrain_epochs), epochs=int(t.epochs), seed=int(config.seed),
        loss=train.LossConfig(beta=float(t.beta), free_bits=float(t.free_bits),
                              n_fft=int(f.n_fft), hop=int(f.hop), compression=f.compression),
        latent=int(m.latent), encoder_hidden=int(m.encoder_hidden),
        decoder_hidden=int(m.decoder_hidden), normaliser=m.normaliser)


def load_data(wd: Workdir) -> train.Data:
    """The arrays training needs, from the features and selection stages."""
    feats, _ = all_features(wd)
    with open(os.path.join(wd.selection, "sources.json")) as f:
        ids = json.load(f)["ids"]
    with open(os.path.join(wd.selection, "targets.json")) as f:
        targets = json.load(f)
    train_feats = feats[targets["train"]]
    mean, std = train.standardisation(train_feats)
    return train.Data(sources=np.load(os.path.join(wd.selection, "sources.npy")),
                      source_features=feats[ids], train=train_feats, val=feats[targets["val"]],
                      mean=mean, std=std)


def stage_train(config: ml_collections.ConfigDict, wd: Workdir) -> dict:
    """Both training phases; resumes from the latest checkpoint; skipped when finished."""
    tc = train_config(config)
    inputs = []
    for name in ("sources.json", "targets.json", "selection.json"):
        with open(os.path.join(wd.selection, name)) as f:
            inputs.append(json.load(f))
    # What the run is made of: the sources and targets themselves (not how they were chosen),
    # the features, and the training and model configs.
    stamp = {"data": _digest([inputs[0]["ids"], inputs[1], inputs[2]["corpus"]]),
             "features": config.features.to_dict(), "train": config.train.to_dict(),
             "model": config.model.to_dict()}
    stamp_path = os.path.join(wd.root, "train.json")
    if _stamp_ok(stamp_path, stamp):
        log.info("train: finished earlier, checkpoints in %s (skipped)", wd.checkpoints)
        return {}
    inputs_path = os.path.join(wd.checkpoints, "inputs.json")
    if os.path.isdir(wd.checkpoints) and not _stamp_ok(inputs_path, stamp):
        stale = f"{wd.checkpoints}.stale-{int(time.time())}"
        os.replace(wd.checkpoints, stale)
        log.warning("train: checkpoints were made from other data or config: moved to %s",
                    stale)
    os.makedirs(wd.checkpoints, exist_ok=True)
    _write_stamp(inputs_path, stamp)
    data = load_data(wd)
    log.info("train: %d sources, %d train targets, %d val; %d devices; batch %d; %d + %d "
             "epochs", len(data.sources), len(data.train), len(data.val), jax.device_count(),
             tc.batch, tc.pretrain_epochs, tc.epochs)
    summary = train.train_and_evaluate(data, tc, wd.root)
    _write_stamp(stamp_path, stamp)
    with open(os.path.join(wd.root, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log.info("train: done: val loss %.4g, KL %.1f bits, %.1f active layers (> 0.01) -> %s",
             summary.get("val_loss", float("nan")), summary.get("val_kl_bits", float("nan")),
             summary.get("val_active_layers", float("nan")), wd.checkpoints)
    return summary


def stage_bundle(config: ml_collections.ConfigDict, wd: Workdir) -> None:
    """What the studio and the evaluation load: the best parameters (flax msgpack), the sources
    and their names, the encoder's standardisation and the config, in WORKDIR/bundle/."""
    from flax import serialization

    data = load_data(wd)
    tc = train_config(config)
    _, params = train.load_params(wd.root, data, tc, which="best")
    os.makedirs(wd.bundle, exist_ok=True)
    with open(os.path.join(wd.bundle, "params.msgpack"), "wb") as f:
        f.write(serialization.to_bytes(params))
    np.save(os.path.join(wd.bundle, "sources.npy"), data.sources)
    np.savez(os.path.join(wd.bundle, "standardisation.npz"), mean=data.mean, std=data.std)
    with open(os.path.join(wd.selection, "sources.json")) as f:
        names = json.load(f)["names"]
    _write_stamp(os.path.join(wd.bundle, "bundle.json"), {
        "config": json.loads(config.to_json_best_effort()), "source_names": names,
        "sample_rate": audio.SAMPLE_RATE})
    # The principal directions of the latent means of the whole corpus (the paper's 4.2): the
    # studio's sliders and the evaluation's traversals.
    b = bundle_lib.Bundle.load(wd.root)
    feats = np.load(os.path.join(wd.features, "clips.npy"), mmap_mode="r")
    z = np.concatenate([np.asarray(b.encode(feats[i:i + 1024])[0])
                        for i in range(0, len(feats), 1024)])
    p = metrics.pca(z, int(config.evaluate.components))
    np.savez(os.path.join(wd.bundle, "pca.npz"), **p)
    log.info("bundle: -> %s (PCA of %d latent means: %s of the variance in %d components)",
             wd.bundle, len(z), f"{p['explained'].sum():.0%}", len(p["explained"]))


def stage_evaluate(config: ml_collections.ConfigDict, wd: Workdir) -> None:
    """The batch evaluation (drumlayer.evaluate) into WORKDIR/eval/; skipped when done for the
    same parameters and evaluation config."""
    from drumlayer import evaluate

    with open(os.path.join(wd.bundle, "params.msgpack"), "rb") as f:
        params = hashlib.sha1(f.read()).hexdigest()[:16]
    stamp = {"params": params, "evaluate": config.evaluate.to_dict()}
    stamp_path = wd.path("eval", "evaluate.json")
    if _stamp_ok(stamp_path, stamp):
        log.info("evaluate: up to date in %s (skipped)", os.path.dirname(stamp_path))
        return
    with open(os.path.join(wd.selection, "targets.json")) as f:
        n_test = len(json.load(f)["test"])
    if n_test < 2:
        log.warning("evaluate: skipped: %d test clips (at least 2 needed); add samples or "
                    "widen data.split", n_test)
        return
    evaluate.evaluate_workdir(wd.root)
    _write_stamp(stamp_path, stamp)


def run(config: ml_collections.ConfigDict, workdir: str) -> None:
    wd = Workdir(workdir)
    os.makedirs(wd.root, exist_ok=True)
    with open(wd.config, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    log.info("workdir: %s", wd.root)
    meta = stage_corpus(config, wd)
    stage_features(config, wd, meta)
    stage_selection(config, wd, meta)
    stage_train(config, wd)
    stage_bundle(config, wd)
    stage_evaluate(config, wd)
    log.info("done: outputs in %s", wd.root)
