import json
import os
import subprocess
import sys

import numpy as np

from conftest import ROOT, run_main


def test_main_smoke_end_to_end_and_rerun_skips(smoke_run):
    wd = smoke_run
    meta = json.loads((wd / "corpus" / "corpus.json").read_text())
    assert meta["procedural"] and meta["clips"] == 48
    aug = np.load(wd / "corpus" / "augmented.npy", mmap_mode="r")
    # 2 variants of each training clip and (data.validate_variants) of each validation clip
    assert aug.shape == ((meta["split"]["train"] + meta["split"]["val"]) * 2, 22050)
    targets = json.loads((wd / "selection" / "targets.json").read_text())
    assert len(targets["val"]) == 3 * meta["split"]["val"]
    assert json.loads((wd / "config.json").read_text())["data"]["category"] == "snare"
    # training left checkpoints, metrics, TensorBoard events and the bundle
    assert (wd / "checkpoints" / "4").is_dir() and (wd / "checkpoints" / "best").is_dir()
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert {x["kind"] for x in lines} == {"step", "epoch"}
    assert {"val_loss", "val_kl_bits", "val_active_layers"} <= set(lines[-1])
    assert any(f.startswith("events") for f in os.listdir(wd / "tensorboard"))
    for f in ("params.msgpack", "sources.npy", "standardisation.npz", "bundle.json", "pca.npz"):
        assert (wd / "bundle" / f).exists()
    assert (wd / "eval" / "report.md").exists()
    assert np.load(wd / "bundle" / "sources.npy").shape == (8, 22050)
    r = run_main(wd)
    assert r.returncode == 0
    for stage in ("corpus", "augmentation", "features", "selection", "train", "bundle",
                  "evaluate"):
        stage = f"{stage}: up to date"
        assert stage in r.stderr, stage


def test_main_sources_from_augmented_pool(tmp_path):
    cache = tmp_path / "jax-cache"
    r = run_main(tmp_path / "run", "--config.selection.pool=train+augmented",
                 "--config.train.epochs=1", "--config.train.pretrain_epochs=1",
                 "--config.train.cpu_devices=2", env={"DRUMLAYER_JAX_CACHE": str(cache),
                                                      "XLA_FLAGS": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    # the CPU became two devices, and the training step ran over both
    assert "devices: [CpuDevice(id=0), CpuDevice(id=1)]" in r.stderr
    assert "; 2 devices; batch 16;" in r.stderr
    # the job compiled the studio's first upload into the cache: a studio started after it
    # (another process, the same cache) compiles nothing when it warms up
    assert "studio: its first upload compiled into the cache" in r.stderr
    before = set(os.listdir(cache))
    warm = ("import logging, sys\nfrom drumlayer import cli\n"
            "from drumlayer.training import distributed\n"
            "distributed.use_cpu_cores_as_trained(sys.argv[1])\ncli.compilation_cache()\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "from drumlayer.studio.server import Studio\n"
            "Studio(sys.argv[1]).warm_up().join()\n")
    w = subprocess.run([sys.executable, "-c", warm, str(tmp_path / "run")], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "DRUMLAYER_JAX_CACHE": str(cache), "XLA_FLAGS": ""})
    assert w.returncode == 0 and "encode and refinement compiled" in w.stderr, w.stderr[-3000:]
    assert set(os.listdir(cache)) == before
    sources = json.loads((tmp_path / "run" / "selection" / "sources.json").read_text())
    targets = json.loads((tmp_path / "run" / "selection" / "targets.json").read_text())
    assert len(sources["ids"]) == 8 and not set(sources["ids"]) & set(targets["train"])
    # augmented variants (ids past the 48 corpus clips) were candidates, and some were chosen
    augmented = [i for i in sources["ids"] if i >= 48]
    assert augmented and any(i >= 48 for i in targets["train"])
    for i, name in zip(sources["ids"], sources["names"], strict=True):
        assert (" (variant " in name) == (i >= 48)


def test_main_bad_config_is_a_clear_error(tmp_path):
    r = run_main(tmp_path / "run", "--config.selection.k=500")
    assert r.returncode == 1
    assert "selection.k = 500 sources but the corpus has 48 clips" in r.stderr
