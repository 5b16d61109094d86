"""The kit job (configs/kit.py): one corpus of every category, one model per category."""

import json
import logging
import os

import numpy as np
import pytest
import soundfile as sf

from drumlayer import configs, pipeline
from drumlayer.data import discovery
from drumlayer.data.dataset import OUTSIDE, read_manifest, read_parents
from drumlayer.errors import DrumlayerError
from drumlayer.kit import export, job
from drumlayer.training import ledger, loop
from drumlayer.workdir import Workdir, read_json

from conftest import LOCAL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_category_gets_at_most_half_its_training_pool_as_sources():
    config = configs.load(os.path.join(ROOT, "configs", "kit.py"))
    for n_train, want in ((33, 16), (80, 40), (300, 40)):
        c = job.category_config(config, "clap", {"train": n_train, "val": 4, "test": 4})
        assert (c.data.category, int(c.selection.k)) == ("clap", want)
        assert "kit" not in c and config.kit.categories  # the original is untouched


def test_a_large_category_gets_fewer_variants_to_stay_within_max_targets():
    config = configs.load(os.path.join(ROOT, "configs", "kit.py"))
    assert (int(config.data.augment_per_clip), int(config.kit.max_targets)) == (16, 2000)
    split = {"val": 4, "test": 4}
    for n_train, want in ((116, 16), (117, 16), (118, 15), (192, 9), (1000, 1), (2500, 0)):
        c = job.category_config(config, "kick", {"train": n_train, **split})
        assert int(c.data.augment_per_clip) == want
        assert n_train * (1 + want) <= 2000 or want == 0
    with config.unlocked():
        config.kit.max_targets = 0  # no cap
    assert int(job.category_config(config, "kick", {"train": 192, **split})
               .data.augment_per_clip) == 16
    config.kit.max_targets = -5
    with pytest.raises(configs.ConfigError, match="kit.max_targets = -5: must be an integer"):
        job.run(config, "/nonexistent/never-written")
    config.kit.max_targets = 2000
    config.kit.categories = ("kick", "bongo")
    with pytest.raises(configs.ConfigError, match="kit.categories = .*'bongo'.*must be categ"):
        job.run(config, "/nonexistent/never-written")


def test_kit_job_trains_every_category_it_can_and_says_why_not_the_others(kit_run, caplog):
    config, wd, summary, log_text = kit_run
    cats = summary["categories"]
    assert list(cats) == list(config.kit.categories)
    assert {c for c, e in cats.items() if "skipped" not in e} == {"kick", "snare"}
    assert cats["clap"]["clips"] == 3 and "add samples" in cats["clap"]["skipped"]
    assert cats["tom"]["clips"] == 0 and cats["tom"]["skipped"].startswith("no tom clips")
    assert "kit: clap skipped:" in log_text

    # one corpus, built once; each category's corpus is its clips of it, with the same split
    whole = read_manifest(wd.corpus)
    assert {r["category"] for r in whole} == {"kick", "snare", "clap"}
    for cat in ("kick", "snare"):
        sub = wd.category(cat)
        rows = read_manifest(sub.corpus)
        mine = [r for r in whole if r["category"] == cat]
        assert [(r["file"], r["split"]) for r in rows] == [(r["file"], r["split"]) for r in mine]
        assert cats[cat]["clips"] == len(rows) == 20
        clips = np.load(sub.corpus.clips)
        all_clips = np.load(wd.corpus.clips)
        np.testing.assert_array_equal(clips, all_clips[[int(r["id"]) for r in mine]])
        # a whole main job's outputs, and its scores in the summary
        assert os.path.exists(sub.bundle.params) and os.path.exists(sub.eval.report)
        assert set(cats[cat]["test"]) == {"model", "refined", "matching_pursuit"}
        per_clip = 1 + (cats[cat]["variants"] if config.selection.pool == "train+augmented"
                        else 0)
        assert cats[cat]["sources"] == min(8, cats[cat]["split"]["train"] * per_clip // 2)
        assert cats[cat]["sources_from"] == {cat: cats[cat]["sources"]}  # its own clips only
    # a kit's snare and kick are on the same side of the split
    side = {}
    for r in whole:
        side.setdefault(r["kit"], set()).add(r["split"])
    assert all(len(s) == 1 for s in side.values())
    report = open(wd.kit_report).read()
    assert "| kick | 20 (" in report and "| clap | 3 (" in report and "skipped:" in report
    # kit.max_targets: one variant of each training clip instead of the config's two
    assert int(config.data.augment_per_clip) == 2
    for cat in ("kick", "snare"):
        n_train = cats[cat]["split"]["train"]
        assert cats[cat]["variants"] == 30 // n_train - 1 == 1
        assert f"kit: {cat}: 1 variants of each of its {n_train} training clips" in log_text
        # (and of each validation clip: data.validate_variants)
        n_val = cats[cat]["split"]["val"]
        assert len(np.load(wd.category(cat).corpus.augmented)) == n_train + n_val
    assert f"| {cats['kick']['sources']} | {cats['kick']['variants']} | " in report
    t, o = cats["kick"]["test"], cats["kick"]["outside"]
    assert (f"| {t['model']['feature_mse']:.3g} / {t['refined']['feature_mse']:.3g} / "
            f"{t['matching_pursuit']['feature_mse']:.3g} ({o['model']['feature_mse']:.3g} / "
            f"{o['refined']['feature_mse']:.3g} / {o['matching_pursuit']['feature_mse']:.3g}) "
            "|") in report
    # data.holdout: kits 18 and 19 are out of library in every category: never a target,
    # never a source, never a parent of a variant, and measured on their own
    for cat in ("kick", "snare"):
        sub = wd.category(cat)
        rows = read_manifest(sub.corpus)
        outside = {i for i, r in enumerate(rows) if r["split"] == OUTSIDE}
        assert {os.path.basename(os.path.dirname(rows[i]["file"])) for i in outside} == {
            "kit18", "kit19"} and len(outside) == 2
        targets, sources = read_json(sub.selection.targets), read_json(sub.selection.sources)
        assert set(targets[OUTSIDE]) == outside
        assert not outside & set(targets["train"] + targets["val"] + targets["test"]
                                 + sources["ids"])
        assert not outside & set(read_parents(sub.corpus).tolist())
        m = read_json(sub.eval.metrics)
        assert m[OUTSIDE]["clips"] == 2 and m[OUTSIDE]["holdout"] == ["kit18", "kit19"]
        assert cats[cat]["split"][OUTSIDE] == 2
        assert cats[cat]["outside"]["model"]["feature_mse"] == round(
            m[OUTSIDE]["reconstruction"]["model"]["feature_mse"]["median"], 3)
        md = open(sub.eval.report).read()
        rec = m[OUTSIDE]["reconstruction"]
        assert md.index("## Out of library") < md.index(
            f"| VAE (raw) | {rec['model']['log_spectral_distance_db']['median']:.3g} | "
            f"{rec['model']['mfcc_distance']['median']:.3g} | ")
        claim = ("beyond the paper (out of library, 2 clips): the encoder's recipes beat the "
                 "nearest single source")
        assert f"| {claim} | LSD {rec['model']['log_spectral_distance_db']['median']:.1f} vs " \
               f"{rec['nearest']['log_spectral_distance_db']['median']:.1f} dB" in md
    assert json.load(open(wd.kit_summary)) == summary

    # a rerun repeats nothing
    caplog.clear()
    with caplog.at_level(logging.INFO):
        job.run(config, wd.root)
    assert "corpus: up to date" in caplog.text
    assert "train: done" not in caplog.text and "evaluate: done" not in caplog.text


def test_the_exported_kit_plays_in_sfizz_and_reads_back_as_a_hydrogen_kit(kit_run, tmp_path):
    pysfizz = pytest.importorskip("pysfizz", reason="the dev extra installs pysfizz (sfizz)")
    _, wd, _, _ = kit_run
    paths = export.write(export.pads(wd.root, variations=3), str(tmp_path / "out"))
    recipes = json.load(open(paths["recipes"]))
    assert set(recipes) == {"kick", "snare"}  # the pads with a model; the others stay empty
    synth = pysfizz.Synth(sample_rate=48000, block_size=256)
    assert synth.load_sfz_file(paths["sfz"])
    assert synth.playable_keys == [36, 38]  # kick and snare on the General MIDI map
    for category, key in (("kick", 36), ("snare", 38)):
        samples = [sf.read(tmp_path / "out" / "samples" / f"{category}_{i}.wav")[0][:24000]
                   for i in (1, 2, 3)]
        assert all(np.corrcoef(a, b)[0, 1] < 0.9999 for a, b in
                   ((samples[0], samples[1]), (samples[1], samples[2])))  # distinct variants
        played = []
        for _ in range(4):  # the round robin: 1, 2, 3, then 1 again
            y = synth.render_note(key, 127, 0.5, 0.5).mean(axis=0)[1:24000]
            assert np.sqrt(np.mean(y ** 2)) > 1e-3
            played.append(1 + int(np.argmax([np.corrcoef(y, x[:23999])[0, 1]
                                             for x in samples])))
        assert played == [1, 2, 3, 1]
        # each variant is the mix of its recipe's weights
        assert len(recipes[category]["weights"]) == 3
    found, _ = discovery.discover([os.path.dirname(paths["hydrogen"])])
    assert sorted((c.instrument, c.category, c.source_format) for c in found) == [
        ("Kick", "kick", "hydrogen"), ("Snare", "snare", "hydrogen")]


def test_exporting_a_workdir_that_is_not_a_kit_says_what_to_do(tmp_path):
    with pytest.raises(DrumlayerError, match="run the kit job first"):
        export.pads(str(tmp_path))


def test_a_failing_category_lets_the_others_finish_but_a_preemption_stops_the_job(
        kit_run, monkeypatch, tmp_path):
    import shutil

    config, shared_wd, _, _ = kit_run
    wd = Workdir(tmp_path / "run")  # a copy: the shared kit stays as it was for the others
    shutil.copytree(shared_wd.root, wd.root)
    real = pipeline.run_stages

    def kick_fails(c, sub, shared=None):
        if c.data.category == "kick":
            raise ledger.NonFiniteLoss("non-finite loss (nan) in train epoch 0 batch 0")
        return real(c, sub, shared)

    monkeypatch.setattr(pipeline, "run_stages", kick_fails)
    with pytest.raises(DrumlayerError, match="kit: kick failed .*non-finite loss"):
        job.run(config, wd.root)
    cats = json.load(open(wd.kit_summary))["categories"]
    assert "failed" in cats["kick"] and "test" in cats["snare"]  # snare still finished
    assert "| kick | 20 (" in open(wd.kit_report).read()

    def preempted(c, sub, shared=None):
        raise loop.Preempted("stopped by SIGTERM")

    monkeypatch.setattr(pipeline, "run_stages", preempted)
    with pytest.raises(loop.Preempted):
        job.run(config, wd.root)


def test_a_cross_category_pool_offers_other_categories_training_clips_as_sources(kit_run,
                                                                                  tmp_path):
    from drumlayer.data import dataset
    from drumlayer.errors import ConfigError

    config, wd, _, _ = kit_run
    shared = read_manifest(wd.corpus)
    c = job.category_config(config, "snare", job.splits_by_category(wd)["snare"])
    with c.unlocked():
        c.selection.pool_categories = ("kick", "clap")
        c.selection.method = "random"
    sub = Workdir(tmp_path / "snare")
    stamp = pipeline.stage_corpus(c, sub, shared=wd)
    rows = read_manifest(sub.corpus)
    own = [r for r in shared if r["category"] == "snare"]
    extra = [r for r in shared if r["category"] in ("kick", "clap") and r["split"] == "train"]
    assert [r["file"] for r in rows] == [r["file"] for r in own + extra]
    assert [r["split"] for r in rows[len(own):]] == ["pool"] * len(extra) and extra
    meta = json.loads(open(sub.corpus.meta).read())
    assert meta["clips"] == len(own) and meta["pool"]["clips"] == len(extra)
    assert sum(meta["split"].values()) == len(own)
    pipeline.stage_features(c, sub, stamp)
    pipeline.stage_selection(c, sub, stamp)
    sources = json.loads(open(sub.selection.sources).read())
    assert sum(sources["categories"].values()) == int(c.selection.k)
    assert set(sources["categories"]) - {"snare"}  # the seeded draw took a kick or a clap
    targets = json.loads(open(sub.selection.targets).read())
    ds = dataset.Dataset(sub.corpus)
    for split, ids in targets.items():  # targets and evaluation: snares only
        assert all(ds.rows[ds.corpus_id(i)]["category"] == "snare" for i in ids), split
    # without a corpus of every category it cannot work, and says so before any stage
    single = configs.load(os.path.join(ROOT, "configs", "snare.py:smoke"))
    with single.unlocked():
        single.selection.pool_categories = ("clap",)
    with pytest.raises(ConfigError, match="pool_categories.*kit job"):
        pipeline.run(single, str(tmp_path / "single"))
    assert not os.path.exists(tmp_path / "single")
    with single.unlocked():
        single.selection.pool_categories = ("claps",)
    with pytest.raises(ConfigError, match="must be categories among"):
        configs.check(single)


def test_the_studio_of_a_kit_has_a_pad_per_model_and_exports_what_its_pads_hold(kit_run,
                                                                                  tmp_path):
    import io
    import zipfile

    from fastapi.testclient import TestClient

    from drumlayer.studio.server import create_app

    pysfizz = pytest.importorskip("pysfizz", reason="the dev extra installs pysfizz (sfizz)")
    _, wd, _, _ = kit_run
    c = TestClient(create_app(wd.root), base_url=LOCAL)
    k = c.get("/api/kit").json()
    assert [(p["category"], p["gm_key"]) for p in k["pads"]] == [("kick", 36), ("snare", 38)]
    assert "add samples" in k["skipped"]["clap"] and "tom" in k["skipped"]
    assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
    # each pad is the whole studio of its category's model
    kick = c.get("/c/kick/api/sources/0/recipe").json()
    assert len(kick["weights"]) == c.get("/c/kick/api/model").json()["k"]
    assert c.post("/c/kick/api/render", json=kick).status_code == 200
    r = c.post("/api/kit/export", json={"pads": {"kick": [kick], "snare": []},
                                        "round_robin": 3, "amount": 1.0})
    assert r.status_code == 200, r.text
    assert r.headers["X-Empty-Pads"] == "snare"  # left out, and said so
    z = zipfile.ZipFile(io.BytesIO(r.content))
    z.extractall(tmp_path / "kit")
    names = set(z.namelist())
    assert {"kit.sfz", "recipes.json", "samples/kick_1.wav", "samples/kick_3.wav"} <= names
    assert not any(n.startswith("samples/snare") for n in names)
    recipes = json.loads(z.read("recipes.json"))
    assert list(recipes) == ["kick"] and len(recipes["kick"]["recipes"]) == 3
    assert recipes["kick"]["recipes"][0]["latent"] == kick["latent"]
    assert recipes["kick"]["recipes"][1]["latent"] != kick["latent"]  # round-robin variants
    assert recipes["kick"]["recipes"][1]["residual"] == kick["residual"]  # edits kept
    # the first variant is the pad's sound as the pad's studio exports it
    one, _ = sf.read(io.BytesIO(c.post("/c/kick/api/render?export=true&sample_rate=48000",
                                       json=kick).content))
    first, rate = sf.read(tmp_path / "kit" / "samples" / "kick_1.wav")
    assert rate == 48000 and np.abs(one - first).max() < 1e-6
    synth = pysfizz.Synth(sample_rate=48000, block_size=256)
    assert synth.load_sfz_file(str(tmp_path / "kit" / "kit.sfz"))
    assert synth.playable_keys == [36]
    y = synth.render_note(36, 127, 0.5, 0.5).mean(axis=0)
    assert np.sqrt(np.mean(y ** 2)) > 1e-3
    found, _ = discovery.discover([str(tmp_path / "kit" / "hydrogen")])
    assert [(c.instrument, c.category) for c in found] == [("Kick", "kick")]
    # bad requests: nothing to export, a pad the kit does not have
    bad = c.post("/api/kit/export", json={"pads": {"kick": [], "snare": []}})
    assert bad.status_code == 422 and "every pad is empty" in bad.json()["detail"]
    bad = c.post("/api/kit/export", json={"pads": {"tom": [kick]}})
    assert bad.status_code == 422 and "no pad 'tom'" in bad.json()["detail"]
