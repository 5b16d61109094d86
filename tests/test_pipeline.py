"""pipeline: the stages run in process on `:smoke`, each skipped exactly when its stamp holds,
and rerun (with what follows it) when what it is made from changes."""

import json
import logging
import os
import shutil

import pytest

from drumlayer import configs, pipeline
from drumlayer.errors import DrumlayerError

from conftest import ROOT

SMOKE = os.path.join(ROOT, "configs", "snare.py:smoke")
STAGES = ("corpus", "augmentation", "features", "selection", "train", "bundle", "evaluate")


def ran(caplog) -> list[str]:
    """The stages that ran (not skipped) in the captured log."""
    return [s for s in STAGES if any(r.getMessage().startswith(f"{s}: done in")
                                     for r in caplog.records)]


def test_a_config_change_reruns_its_stage_and_those_after_it(smoke_run, tmp_path, caplog):
    wd = tmp_path / "run"
    shutil.copytree(smoke_run, wd)
    caplog.set_level(logging.INFO, logger="drumlayer.pipeline")
    pipeline.run(configs.load(SMOKE), str(wd))
    assert ran(caplog) == []  # a copied workdir is as up to date as the original
    caplog.clear()
    c = configs.load(SMOKE)
    c.evaluate.pairs = 6
    pipeline.run(c, str(wd))
    assert ran(caplog) == ["bundle", "evaluate"]  # the bundle keeps the config it serves
    caplog.clear()
    c.selection.beta = 150.0
    c.train.learning_rate = 2e-3
    pipeline.run(c, str(wd))
    assert ran(caplog) == ["selection", "train", "bundle", "evaluate"]
    assert "checkpoints were made from other data or config" in caplog.text
    assert any(d.startswith("checkpoints.stale-") for d in os.listdir(wd))


def test_cached_runs_once_and_a_crashed_stage_runs_again(tmp_path):
    calls = []
    stamp = str(tmp_path / "s.json")

    def work():
        calls.append(1)

    assert pipeline.cached("x", stamp, {"a": 1}, work, "here")
    assert not pipeline.cached("x", stamp, {"a": 1}, work, "here")
    assert len(calls) == 1

    def crash():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        pipeline.cached("x", stamp, {"a": 2}, crash, "here")
    assert not os.path.exists(stamp)  # neither the old stamp nor a new one
    assert pipeline.cached("x", stamp, {"a": 1}, work, "here") and len(calls) == 2


def test_a_bad_config_fails_before_any_stage(tmp_path):
    c = configs.load(SMOKE)
    c.model.normaliser = "softplus"
    with pytest.raises(configs.ConfigError, match="model.normaliser"):
        pipeline.run(c, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "corpus")


def _on_folder(folder):
    c = configs.load(SMOKE)
    c.data.roots = (str(folder),)  # honoured by the synthetic :smoke config
    c.train.pretrain_epochs, c.train.epochs = 1, 1
    c.evaluate.pairs = 4
    return c


def test_a_library_in_one_folder_trains_and_added_samples_are_not_ignored(tmp_path, caplog):
    from test_corpus import distinct_snares

    lib, wd = tmp_path / "Snares", tmp_path / "run"
    distinct_snares(lib, 35)
    caplog.set_level(logging.INFO, logger="drumlayer.pipeline")
    pipeline.run(_on_folder(lib), str(wd))
    assert ran(caplog) == list(STAGES)
    meta = json.loads((wd / "corpus" / "corpus.json").read_text())
    assert meta["clips"] == 35 and meta["split_by"] == "group" and not meta["procedural"]
    assert (wd / "eval" / "report.md").exists()
    caplog.clear()
    pipeline.run(_on_folder(lib), str(wd))
    assert ran(caplog) == []  # the same library: nothing to do
    distinct_snares(lib / "new", 5, seed=1)
    caplog.clear()
    pipeline.run(_on_folder(lib), str(wd))
    assert ran(caplog) == list(STAGES)  # five samples more: everything follows
    assert json.loads((wd / "corpus" / "corpus.json").read_text())["clips"] == 40


@pytest.mark.parametrize("n, says", [(3, "too small to split"),
                                     (6, "selection.k = 8 sources but the corpus has 6 clips")])
def test_a_corpus_too_small_fails_in_one_line_before_the_features(tmp_path, n, says):
    from test_corpus import distinct_snares

    distinct_snares(tmp_path / "few", n)
    with pytest.raises(DrumlayerError, match=f"{says}.*at least 20 distinct clips"):
        pipeline.run(_on_folder(tmp_path / "few"), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "features").exists()


@pytest.mark.parametrize("of", ["clips", "kits"])
def test_a_learning_curve_keeps_the_sources_and_trains_on_whole_clips_of_a_share(smoke_run,
                                                                                 tmp_path, of):
    from drumlayer.data.dataset import Dataset
    from drumlayer.workdir import Workdir, read_json

    full, wd = Workdir(smoke_run), Workdir(tmp_path / "run")
    for d in ("corpus", "features"):
        shutil.copytree(smoke_run / d, tmp_path / "run" / d)
    c = configs.load(SMOKE)
    with c.unlocked():
        c.data.train_fraction, c.data.train_fraction_of = 0.5, of
    pipeline.stage_selection(c, wd, read_json(wd.corpus.stamp))
    before, after = read_json(full.selection.targets), read_json(wd.selection.targets)
    ds = Dataset(wd.corpus)
    kept = {ds.corpus_id(i) for i in after["train"]}
    distinct = {ds.corpus_id(i) for i in before["train"]}
    kits = {ds.rows[c]["kit"] for c in distinct}
    if of == "kits":  # whole kits: the procedural corpus is one kit, drawn whole
        assert len(kits) == 1 and kept == distinct
    else:
        assert len(kept) == round(0.5 * len(distinct))
    # every target (each variant) of a kept clip and none of the others; the rest as it was
    assert after["train"] == [i for i in before["train"] if ds.corpus_id(i) in kept]
    assert {k: v for k, v in after.items() if k != "train"} == {
        k: v for k, v in before.items() if k != "train"}
    assert read_json(wd.selection.sources)["ids"] == read_json(full.selection.sources)["ids"]


def test_the_training_targets_are_training_clips_and_their_own_variants_only(smoke_run):
    """Read from the run's files (the manifest's split, augmented.csv's parents), not through
    Dataset: every train target is a training clip or a variant of one, every validation
    target a validation clip or a variant of one, no test clip is a target, no source is a
    training target, and every training clip that is not a source comes with all its
    variants."""
    import csv
    import json

    wd = smoke_run
    split = {int(r["id"]): r["split"] for r in csv.DictReader(open(wd / "corpus" /
                                                                    "manifest.csv"))}
    parent = [int(r["parent"]) for r in csv.DictReader(open(wd / "corpus" / "augmented.csv"))]
    n = len(split)

    def clip_of(i):
        return i if i < n else parent[i - n]

    t = json.loads((wd / "selection" / "targets.json").read_text())
    sources = set(json.loads((wd / "selection" / "sources.json").read_text())["ids"])
    assert t["train"] and t["val"] and t["test"]
    assert {split[clip_of(i)] for i in t["train"]} == {"train"}
    assert {split[clip_of(i)] for i in t["val"]} == {"val"}
    assert {split[i] for i in t["test"]} == {"test"} and max(t["test"]) < n
    assert not sources & set(t["train"])
    assert any(i >= n for i in t["val"])  # data.validate_variants: their own variants
    want = {i for i in range(n + len(parent)) if split[clip_of(i)] == "train"} - sources
    assert set(t["train"]) == want and len(t["train"]) == len(want)
