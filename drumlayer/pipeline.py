"""The main job's stages, in order, each skipped when its output is valid for the config.

corpus -> (augmentation of the training targets) -> ... later stages join here as they land.
Reads the config; the stages themselves take plain arguments.
"""

from __future__ import annotations

import json
import logging
import os

import ml_collections

from drumlayer import audio, corpus
from drumlayer.workdir import Workdir

log = logging.getLogger(__name__)


def corpus_options(config: ml_collections.ConfigDict) -> corpus.CorpusOptions:
    d = config.data
    return corpus.CorpusOptions(
        category=d.category, spec=audio.ClipSpec(), max_duration=float(d.max_duration),
        near_duplicate=float(d.near_duplicate), split=tuple(float(x) for x in d.split),
        seed=int(config.seed), procedural=int(d.procedural),
    )


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
        try:
            with open(aug_meta) as f:
                have = json.load(f)
        except (OSError, ValueError):
            have = None
        if have == want:
            log.info("augmentation: up to date in %s (skipped)", out)
        else:
            corpus.write_augmented(out, n_aug, seed=int(config.seed))
            with open(aug_meta, "w") as f:
                json.dump(want, f)
    return meta


def run(config: ml_collections.ConfigDict, workdir: str) -> None:
    wd = Workdir(workdir)
    os.makedirs(wd.root, exist_ok=True)
    with open(wd.config, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    log.info("workdir: %s", wd.root)
    stage_corpus(config, wd)
    log.info("done: outputs in %s", wd.root)
