"""The kit job: every drum category in one run.

    python -m drumlayer.main --config=configs/kit.py [--workdir=runs/kit]

The corpus is built once, for every category, in WORKDIR/corpus (its split is made over whole
kits, so one kit's kick and snare fall on the same side). Each category of `kit.categories` then
gets a workdir of its own, WORKDIR/<category>/, holding that category's clips and everything
the main job makes from them: features, sources, checkpoints, bundle and evaluation. A category
with too few clips for the config is skipped with the reason and what it needs; the others
still train. WORKDIR/kit.json and WORKDIR/kit.md say what each category came to.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time

import jax
import ml_collections

from drumlayer import configs, lock, pipeline
from drumlayer.data.dataset import OUTSIDE, SPLITS, read_manifest
from drumlayer.errors import DrumlayerError
from drumlayer.training import loop
from drumlayer.workdir import Workdir, read_json, write_json

log = logging.getLogger(__name__)
REPORTED = ("log_spectral_distance_db", "mfcc_distance", "centroid_error_hz", "feature_mse")
METHODS = ("model", "refined", "matching_pursuit")


def category_config(config: ml_collections.ConfigDict, category: str,
                    split: dict[str, int]) -> ml_collections.ConfigDict:
    """config for one category: data.category set, data.augment_per_clip lowered so that the
    training clips and their variants number at most `kit.max_targets` (0: no cap), and
    selection.k lowered to at most half of the category's training pool (Frank-Wolfe needs
    room to choose: 32 sources of 33 claps failed)."""
    c = copy.deepcopy(config)
    cap = int(config.kit.get("max_targets", 0))
    with c.unlocked():
        del c["kit"]
        c.data.category = category
        n_aug = int(c.data.augment_per_clip)
        if cap and split["train"] and split["train"] * (1 + n_aug) > cap:
            fewer = max(0, cap // split["train"] - 1)
            log.info("kit: %s: %d variants of each of its %d training clips instead of %d "
                     "(kit.max_targets = %d)", category, fewer, split["train"], n_aug, cap)
            c.data.augment_per_clip = fewer
        per_clip = 1 + (int(c.data.augment_per_clip) if c.selection.pool == "train+augmented"
                        else 0)
        room = split["train"] * per_clip // 2
        if 2 <= room < int(c.selection.k):
            log.info("kit: %s: %d sources instead of %d (%d training clips)", category, room,
                     int(c.selection.k), split["train"])
            c.selection.k = room
    return c


def splits_by_category(wd: Workdir) -> dict[str, dict[str, int]]:
    """{category: {split: clips}} of the shared corpus."""
    out: dict[str, dict[str, int]] = {}
    for r in read_manifest(wd.corpus):
        out.setdefault(r["category"], dict.fromkeys(SPLITS, 0))[r["split"]] += 1
    return out


def _scores(wd: Workdir, split: str = "test") -> dict:
    """Median scores of the model, its refined recipes and matching pursuit on the test split
    or the out-of-library set (OUTSIDE; {} when the run has none), from the evaluation."""
    m = read_json(wd.eval.metrics) or {}
    rec = (m if split == "test" else m.get(split, {})).get("reconstruction", {})
    return {method: {k: round(rec[method][k]["median"], 3) for k in REPORTED}
            for method in METHODS if method in rec}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The corpus once, then one model per category; returns kit.json's dict."""
    configs.check_kit(config)
    base = category_config(config, "all", dict.fromkeys(SPLITS, 0))
    configs.check(base)
    for category in config.kit.categories:
        configs.check(category_config(config, category, dict.fromkeys(SPLITS, 0)))
    wd = Workdir(workdir)
    with lock.exclusive(wd) if jax.process_index() == 0 else contextlib.nullcontext():
        pipeline.write_config(config, wd)
        pipeline.build_corpus(base, wd)
        counts = splits_by_category(wd)
        summary: dict = {"workdir": wd.root, "categories": {}}
        # until this run has done a category, kit.json keeps what the last run said of it: a
        # studio opened on the kit meanwhile still finds every pad trained before
        before = (read_json(wd.kit_summary) or {}).get("categories", {})
        for category in config.kit.categories:
            split = counts.get(category, dict.fromkeys(SPLITS, 0))
            c = category_config(config, category, split)
            entry: dict = {"clips": sum(split.values()), "split": split}
            summary["categories"][category] = entry
            try:
                if not entry["clips"]:
                    raise DrumlayerError(f"no {category} clips in the corpus ({wd.corpus.dir}); "
                                         "add a few dozen, from several kits, to train one")
                configs.check_split(c, split)
            except DrumlayerError as e:
                entry["skipped"] = str(e)
                log.warning("kit: %s skipped: %s", category, e)
                continue
            sub = wd.category(category)
            log.info("kit: %s: %d clips -> %s", category, entry["clips"], sub.root)
            t0 = time.time()
            try:
                pipeline.run_stages(c, sub, shared=wd)
            except loop.Preempted:  # SIGTERM / Ctrl-C stops the whole job (rerun resumes)
                raise
            except DrumlayerError as e:  # the other categories still train
                entry["failed"] = str(e)
                log.error("kit: %s failed: %s", category, e)
                continue
            entry.update(sources=int(c.selection.k), variants=int(c.data.augment_per_clip),
                         seconds=round(time.time() - t0, 1),
                         workdir=sub.root, test=_scores(sub), outside=_scores(sub, OUTSIDE),
                         sources_from=read_json(sub.selection.sources).get("categories", {}))
            write_json(wd.kit_summary, {**summary, "categories": {  # done so far
                **before, **summary["categories"]}})
        write_json(wd.kit_summary, summary)
        with open(wd.kit_report, "w") as f:
            f.write(report(summary))
    cats = summary["categories"]
    trained = [k for k, v in cats.items() if "skipped" not in v and "failed" not in v]
    log.info("kit: %d of %d categories trained (%s); summary in %s", len(trained), len(cats),
             ", ".join(trained) or "none", wd.kit_report)
    failed = [k for k, v in cats.items() if "failed" in v]
    if failed:
        raise DrumlayerError(f"kit: {', '.join(failed)} failed (the others finished; see "
                             f"{wd.kit_report}): {'; '.join(cats[k]['failed'] for k in failed)}")
    return summary


def report(summary: dict) -> str:
    """kit.md: per category, clips, sources, augmented variants of each training clip, time and
    the median test scores of the model against matching pursuit (the same sources), or why it
    was skipped."""
    lines = ["# Kit: one layering model per category", "",
             "Median over each category's test clips; lower is better: the model's recipes / "
             "the refined ones (analysis by synthesis) / matching pursuit (MP, <= 15 layers) "
             "over the same sources; in brackets, the same on the out-of-library set "
             "(data.holdout), where the category has one. Time: of this run (0 s: up to "
             "date).", "",
             "| category | clips (train/val/test/out of library) | sources | variants | time "
             "| LSD (dB) | MFCC dist | centroid err (Hz) | feature MSE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in summary["categories"].items():
        s = e["split"]
        clips = f"{e['clips']} ({s['train']}/{s['val']}/{s['test']}/{s.get(OUTSIDE, 0)})"
        if "skipped" in e or "failed" in e:
            why = f"skipped: {e['skipped']}" if "skipped" in e else f"failed: {e['failed']}"
            lines.append(f"| {name} | {clips} | {why} | | | | | | |")
            continue
        t, o = e.get("test", {}), e.get("outside", {})
        if not t:  # the evaluation needs 2 test clips
            n = s["test"]
            cells = [f"not evaluated: {n} test clip{'' if n == 1 else 's'}"] + [""] * 3
        else:
            cells = [" / ".join(f"{t[m][k]:.3g}" for m in METHODS if m in t)
                     + ("" if not o else " (" + " / ".join(f"{o[m][k]:.3g}" for m in METHODS
                                                           if m in o) + ")")
                     for k in REPORTED]
        took = (f"{e['seconds']:.0f} s" if e["seconds"] < 600 else
                f"{e['seconds'] / 60:.1f} min")
        other = {c: n for c, n in e.get("sources_from", {}).items() if c != name}
        sources = f"{e['sources']}" + (f" ({', '.join(f'{n} {c}' for c, n in other.items())})"
                                       if other else "")
        lines.append(f"| {name} | {clips} | {sources} | {e.get('variants', '')} | {took} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def is_kit_config(config: ml_collections.ConfigDict) -> bool:
    return "kit" in config
