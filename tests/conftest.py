import os
import subprocess
import sys

import pytest

# tests import their helpers (kitgen) as top-level modules
sys.path.insert(0, os.path.dirname(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(workdir, *extra):
    cmd = [sys.executable, "-m", "drumlayer.main", "--config=configs/snare.py:smoke",
           f"--workdir={workdir}", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One `configs/snare.py:smoke` main job (corpus ... evaluation), run in this process by
    `pipeline.run`, shared by the tests that read a trained workdir: its workdir."""
    from drumlayer import configs, pipeline

    wd = tmp_path_factory.mktemp("smoke") / "run"
    pipeline.run(configs.load(os.path.join(ROOT, "configs", "snare.py:smoke")), str(wd))
    return wd
