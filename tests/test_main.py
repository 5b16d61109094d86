import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(workdir, *extra):
    cmd = [sys.executable, "-m", "drumlayer.main", "--config=configs/snare.py:smoke",
           f"--workdir={workdir}", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_main_smoke_end_to_end_and_rerun_skips(tmp_path):
    wd = tmp_path / "run"
    r = run_main(wd)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((wd / "corpus" / "corpus.json").read_text())
    assert meta["procedural"] and meta["clips"] == 48
    aug = np.load(wd / "corpus" / "augmented.npy", mmap_mode="r")
    assert aug.shape == (meta["split"]["train"] * 2, 22050)
    assert json.loads((wd / "config.json").read_text())["data"]["category"] == "snare"
    r = run_main(wd)
    assert r.returncode == 0
    assert "corpus: up to date" in r.stderr and "augmentation: up to date" in r.stderr
