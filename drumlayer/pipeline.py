"""The main job's stages, in order, each skipped when its output is up to date for the config.

    corpus -> augmentation -> features -> selection -> train -> bundle -> evaluate

Each stage is one `cached` call: a JSON stamp of what the stage is made from (the config fields
it reads and its inputs' stamps); a stage whose stamp file holds the same stamp is skipped, any
other runs and writes the stamp last. This module only sequences stages: the work is in the
libraries it calls, the paths in `Workdir`, the config's meaning in `configs`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from drumlayer import configs, lock
from drumlayer.data import audio, fullband, split
from drumlayer.data import corpus as corpus_lib
from drumlayer.data.dataset import OUTSIDE, POOL, Dataset
from drumlayer.evaluation import evaluate as evaluate_lib
from drumlayer.features import featurize, selection
from drumlayer.model import vae as model_lib
from drumlayer.recipes import bundle as bundle_lib
from drumlayer.recipes import refine
from drumlayer.training import checkpoints, loop, options
from drumlayer.workdir import Workdir, read_json, write_json

log = logging.getLogger(__name__)


def digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def cached(name: str, stamp_path: str, stamp: dict, run: Callable[[], object],
           where: str) -> bool:
    """Run a stage unless stamp_path already holds `stamp`. The old stamp goes first and the new
    one is written last, so a stage that crashes is rerun. Returns whether it ran."""
    if read_json(stamp_path) == json.loads(json.dumps(stamp)):  # as JSON: tuples are lists
        log.info("%s: up to date in %s (skipped)", name, where)
        return False
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    t0 = time.time()
    run()
    os.makedirs(os.path.dirname(stamp_path), exist_ok=True)
    write_json(stamp_path, stamp)
    log.info("%s: done in %.1f s -> %s", name, time.time() - t0, where)
    return True


# ----------------------------------------------------------------------------- stages


def build_corpus(config: ml_collections.ConfigDict, wd: Workdir) -> dict:
    """The corpus of config.data (or procedural snares) in WORKDIR/corpus, unless it is up to
    date. Returns the stamp that later stages are made from."""
    opts = configs.corpus_options(config)
    cd = wd.corpus
    if config.data.synthetic and not config.data.roots:
        roots, build = [], lambda: corpus_lib.build_procedural(cd.dir, opts,
                                                           why="data.synthetic is set")
    else:  # roots given explicitly are read even by a synthetic (:smoke) config
        roots = configs.roots(config)
        build = lambda: corpus_lib.build(roots, cd.dir, opts)  # noqa: E731
    stamp = {"fingerprint": corpus_lib.fingerprint(roots, opts, cd.dir)}
    cached("corpus", cd.stamp, stamp, build, cd.dir)
    return stamp


def stage_corpus(config: ml_collections.ConfigDict, wd: Workdir,
                 shared: Workdir | None = None) -> dict:
    """The corpus and its augmented training targets; a corpus too small for the config is
    refused (configs.check_split) before it is augmented. With `shared` (the kit job), the
    corpus is config.data.category's clips of shared's corpus of every category, not a build of
    its own. Returns the stamp that later stages are made from."""
    cd = wd.corpus
    pool = tuple(config.selection.pool_categories)
    if shared is None:
        stamp = build_corpus(config, wd)
    else:
        whole = read_json(shared.corpus.stamp)["fingerprint"]
        stamp = {"fingerprint": hashlib.sha1(
            f"{whole}:{config.data.category}:{sorted(pool)}".encode()).hexdigest()}
        cached("corpus", cd.stamp, stamp, lambda: corpus_lib.subset(
            shared.corpus.dir, cd.dir, config.data.category, pool), cd.dir)
    # a corpus that cannot train this config is refused before anything is made from it
    configs.check_split(config, read_json(cd.meta)["split"])
    varied = ("train", "val") if config.data.get("validate_variants", False) else ("train",)
    for name, per_clip, write, paths, more in (
            ("augmentation", int(config.data.augment_per_clip), functools.partial(
                corpus_lib.write_augmented, splits=varied),
             (cd.augmented, cd.augmented_index, cd.augmented_stamp),
             {} if varied == ("train",) else {"splits": list(varied)}),
            ("layering", int(config.data.get("layered_per_clip", 0)), corpus_lib.write_layered,
             (cd.layered, cd.layered_index, cd.layered_stamp), {})):
        made = {"per_clip": per_clip, "seed": int(config.seed), "corpus": stamp["fingerprint"],
                **more}
        if per_clip > 0:
            cached(name, paths[-1], made, functools.partial(
                write, cd.dir, per_clip, seed=int(config.seed)), cd.dir)
        else:  # an earlier config's targets are not this run's
            for path in paths:
                if os.path.exists(path):
                    os.remove(path)
    return stamp


def stage_features(config: ml_collections.ConfigDict, wd: Workdir, corpus_stamp: dict) -> None:
    """Features of the corpus clips and of the augmented targets."""
    f, fd, cd = config.features, wd.features, wd.corpus

    def run():
        os.makedirs(fd.dir, exist_ok=True)
        opts = dict(n_fft=int(f.n_fft), hop=int(f.hop), compression=f.compression,
                    batch=int(f.batch))
        featurize.feature_file(cd.clips, fd.clips, **opts)
        for clips, feats, what in ((cd.augmented, fd.augmented, "augmented"),
                                   (cd.layered, fd.layered, "layered")):
            if os.path.exists(clips):
                featurize.feature_file(clips, feats, desc=f"features ({what})", **opts)
            elif os.path.exists(feats):
                os.remove(feats)

    stamp = {"corpus": corpus_stamp["fingerprint"],
             "augment": int(config.data.augment_per_clip), "features": f.to_dict()}
    for field in ("layered_per_clip", "validate_variants"):  # runs from before the fields
        if config.data.get(field):                            # stay current
            stamp[field] = config.data[field]
    cached("features", fd.stamp, stamp, run, fd.dir)


def stage_selection(config: ml_collections.ConfigDict, wd: Workdir, corpus_stamp: dict) -> None:
    """The source library (sources.json, sources.npy) and the target split (targets.json)."""
    s, sd = config.selection, wd.selection
    fraction = float(config.data.get("train_fraction", 1.0))

    def run():
        ds = Dataset(wd.corpus, wd.features)
        train_ids = ds.ids("train", augmented=True)
        pool = train_ids if s.pool == "train+augmented" else train_ids[train_ids < ds.n]
        pool = np.concatenate([pool, ds.ids(POOL)])  # other categories' (kit job), if any
        ids, info = selection.select(ds.features(), pool, int(s.k), s.method, float(s.beta),
                                     int(config.seed))
        order = [int(i) for i in ids]
        os.makedirs(sd.dir, exist_ok=True)
        np.save(sd.audio, ds.audio(order))
        cats = collections.Counter(ds.rows[ds.corpus_id(i)]["category"] for i in order)
        sources = {"ids": order, "names": [ds.name(i) for i in order],
                   "files": [ds.file(i) for i in order], "method": s.method, "pool": s.pool,
                   "categories": dict(cats.most_common()), **info}
        chosen = set(order)
        train = np.array([int(i) for i in train_ids if int(i) not in chosen], np.int64)
        clips = np.array([ds.corpus_id(i) for i in train], np.int64)
        by_kit = config.data.get("train_fraction_of") == "kits"
        kits = np.array([ds.rows[c]["kit"] for c in clips]) if by_kit else None
        keep = split.clip_subset(clips, fraction, int(config.seed), kits)
        if fraction < 1.0:
            log.info("selection: data.train_fraction %g (of the %s): %d of %d training clips "
                     "(and their variants) are targets", fraction,
                     "kits" if by_kit else "clips", len(np.unique(clips[keep])),
                     len(np.unique(clips)))
        train = train[keep]
        targets = {"train": train.tolist(),
                   "val": ds.ids("val", augmented=True).tolist(),
                   "test": ds.ids("test").tolist(),
                   OUTSIDE: ds.ids(OUTSIDE).tolist()}
        write_json(sd.sources, sources)
        write_json(sd.targets, targets)
        log.info("selection: %d sources (%s) from %d candidates; targets: %d train, %d val, "
                 "%d test, %d out of library", len(order), s.method, len(pool),
                 len(targets["train"]), len(targets["val"]), len(targets["test"]),
                 len(targets[OUTSIDE]))

    stamp = {"corpus": corpus_stamp["fingerprint"], "features": config.features.to_dict(),
             "selection": s.to_dict(), "seed": int(config.seed)}
    if config.data.get("validate_variants"):  # the val targets (runs from before stay current)
        stamp["validate_variants"] = True
    if fraction < 1.0:
        stamp["train_fraction"] = [fraction, config.data.get("train_fraction_of", "clips")]
    cached("selection", sd.stamp, stamp, run, sd.dir)


def load_data(wd: Workdir) -> tuple[loop.Data, list[str]]:
    """The arrays training needs, from the features and selection stages, and the sources'
    names."""
    feats = Dataset(wd.corpus, wd.features).features()
    sources = read_json(wd.selection.sources)
    targets = read_json(wd.selection.targets)
    train_feats = feats[targets["train"]]
    if os.path.exists(wd.features.layered):  # layered targets: training targets only
        train_feats = np.concatenate([train_feats, np.load(wd.features.layered)])
    mean, std = loop.standardisation(train_feats)
    data = loop.Data(sources=np.load(wd.selection.audio), source_features=feats[sources["ids"]],
                      train=train_feats, val=feats[targets["val"]], mean=mean, std=std)
    return data, sources["names"]


def train_stamp(config: ml_collections.ConfigDict, wd: Workdir) -> dict:
    """What a training run is made of: the sources and targets themselves (not how they were
    chosen), the corpus, the features, and the training and model configs."""
    sd = wd.selection
    made_of = [read_json(sd.sources)["ids"], read_json(sd.targets),
               read_json(sd.stamp)["corpus"]]
    if os.path.exists(wd.corpus.layered_stamp):
        made_of.append(read_json(wd.corpus.layered_stamp))
    how = {k: v for k, v in config.train.to_dict().items() if k not in options.RUN_ONLY}
    for field in ("db_weight", "weight_decay", "input_dropout"):  # off: runs from before the
        # fields stay current
        if not how.get(field):
            how.pop(field, None)
    return {"data": digest(made_of), "features": config.features.to_dict(),
            "train": how, "model": config.model.to_dict()}


def stage_train(config: ml_collections.ConfigDict, wd: Workdir) -> dict:
    """Both training phases; resumes from the latest checkpoint of the same inputs."""
    tc, ck = configs.train_config(config), wd.checkpoints
    stamp = train_stamp(config, wd)

    def run():
        if os.path.isdir(ck.dir) and read_json(ck.inputs) != stamp:
            stale = f"{ck.dir}.stale-{int(time.time())}"
            os.replace(ck.dir, stale)
            log.warning("train: checkpoints were made from other data or config: moved to %s",
                        stale)
        os.makedirs(ck.dir, exist_ok=True)
        write_json(ck.inputs, stamp)
        data, _ = load_data(wd)
        log.info("train: %d sources, %d train targets, %d val; %d devices; batch %d; %d + %d "
                 "epochs", len(data.sources), len(data.train), len(data.val),
                 jax.device_count(), tc.batch, tc.pretrain_epochs, tc.epochs)
        summary = loop.train_and_evaluate(data, tc, wd)
        write_json(wd.train_summary, summary)
        log.info("train: val loss %.4g, KL %.1f bits, %.1f active layers (> 0.01)",
                 summary.get("val_loss", float("nan")), summary.get("val_kl_bits", float("nan")),
                 summary.get("val_active_layers", float("nan")))

    cached("train", wd.train_stamp, stamp, run, ck.dir)
    return stamp


def stage_bundle(config: ml_collections.ConfigDict, wd: Workdir, trained: dict) -> None:
    """What the studio and the evaluation load (drumlayer.recipes.bundle), with the PCA of the
    latent means of the whole corpus."""

    def run():
        data, names = load_data(wd)
        model = model_lib.create(len(data.sources), configs.model_config(config))
        params = checkpoints.load_params(wd, model, data.train.shape[1], which="best")
        ds = Dataset(wd.corpus)
        ids = read_json(wd.selection.sources)["ids"]
        full = fullband.clips([ds.rows[ds.corpus_id(i)] for i in ids], data.sources,
                              [ds.variant(i) for i in ids], int(config.seed))
        b = bundle_lib.Bundle(model, params, data.sources, data.mean, data.std, names,
                              json.loads(config.to_json_best_effort()), None, full.audio,
                              full.rate)
        p = bundle_lib.latent_pca(b, np.load(wd.features.clips, mmap_mode="r"),
                                  int(config.evaluate.components))
        bundle_lib.save(wd, dataclasses.replace(b, pca=p), audio.SAMPLE_RATE, full)
        log.info("bundle: PCA of the corpus's latent means: %s of the variance in %d "
                 "components", f"{p['explained'].sum():.0%}", len(p["explained"]))

    stamp = {"train": trained, "config": json.loads(config.to_json_best_effort()),
             "full_band": fullband.VERSION}
    cached("bundle", wd.bundle.stamp, stamp, run, wd.bundle.dir)


def stage_studio(wd: Workdir) -> None:
    """With JAX's persistent compilation cache on (the CLI's), compile what the studio's first
    upload runs (the quick refinement and the default), so that the first studio started on
    this workdir answers it at once."""
    if not jax.config.jax_compilation_cache_dir:
        return
    t0 = time.time()
    b = bundle_lib.Bundle.load(wd.root)
    for config in (refine.QUICK, refine.AnalyzeConfig()):
        refine.compile_for_one(b, refine.Analyzer.from_bundle(b, config))
    log.info("studio: its first upload compiled into the cache in %.1f s", time.time() - t0)


def stage_evaluate(config: ml_collections.ConfigDict, wd: Workdir) -> None:
    """The batch evaluation (drumlayer.evaluation.evaluate) into WORKDIR/eval/."""

    n_test = len(read_json(wd.selection.targets)["test"])
    if n_test < 2:
        log.warning("evaluate: skipped: %d test clips (at least 2 needed); add samples or "
                    "widen data.split", n_test)
        return
    with open(wd.bundle.params, "rb") as f:
        params = hashlib.sha1(f.read()).hexdigest()[:16]
    stamp = {"params": params, "evaluate": config.evaluate.to_dict(),
             "full_band": fullband.VERSION}  # its WAVs are of the full-band sources
    cached("evaluate", wd.eval.stamp, stamp, lambda: evaluate_lib.evaluate_workdir(wd.root),
           wd.eval.dir)


def run(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Every stage into workdir. Raises DrumlayerError (ConfigError, CorpusError, ...) for what a
    person can fix; checks the whole config before any stage runs."""
    configs.check(config)
    configs.check_single(config)
    wd = Workdir(workdir)
    # one writer per workdir; in a multi-process run the processes write together, and
    # process 0 holds the lock for them
    with (lock.exclusive(wd) if jax.process_index() == 0 else contextlib.nullcontext()):
        run_stages(config, wd)


def write_config(config: ml_collections.ConfigDict, wd: Workdir) -> None:
    os.makedirs(wd.root, exist_ok=True)
    with open(wd.config, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    log.info("workdir: %s", wd.root)


def run_stages(config: ml_collections.ConfigDict, wd: Workdir,
               shared: Workdir | None = None) -> None:
    """Every stage into wd (no lock: the caller holds one); `shared`: see stage_corpus."""
    t0 = time.time()
    write_config(config, wd)
    corpus_stamp = stage_corpus(config, wd, shared)
    stage_features(config, wd, corpus_stamp)
    stage_selection(config, wd, corpus_stamp)
    trained = stage_train(config, wd)
    stage_bundle(config, wd, trained)
    stage_evaluate(config, wd)
    stage_studio(wd)
    write_run(wd, time.time() - t0)
    log.info("done: outputs in %s (report: %s)", wd.root, wd.eval.report)


def write_run(wd: Workdir, seconds: float) -> None:
    """WORKDIR/run.json: when the job ended, what it ran on and how it was called, so the numbers
    of its outputs can be quoted with their provenance (docs/regenerate.py)."""
    write_json(wd.run, {
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": round(seconds, 1),
        "command": " ".join(["python -m drumlayer.main", *sys.argv[1:]]
                            if sys.argv[0].endswith(os.path.join("drumlayer", "main.py"))
                            else sys.argv),
        "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count()})

