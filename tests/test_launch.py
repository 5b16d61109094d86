"""launch/: the scripts pass shellcheck and do what they say, tried without the real work."""

import os
import shutil
import subprocess

import pytest

from conftest import ROOT

SCRIPTS = sorted(f for f in os.listdir(os.path.join(ROOT, "launch")) if f.endswith(".sh"))


@pytest.mark.skipif(shutil.which("shellcheck") is None and os.environ.get("CI") != "true",
                    reason="shellcheck missing: apt-get install shellcheck")
@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script):
    r = subprocess.run(["shellcheck", "-S", "warning", os.path.join(ROOT, "launch", script)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def _fake_python(tmp_path):
    """A `python` on PATH that records its arguments and environment instead of training."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    (bin_ / "python").write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$DRUMLAYER_PROCESS_ID $DRUMLAYER_NUM_PROCESSES $DRUMLAYER_COORDINATOR $*" '
        f'>> "{log}"\n')
    (bin_ / "python").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}, log


def test_multihost_starts_n_cooperating_processes(tmp_path):
    env, log = _fake_python(tmp_path)
    r = subprocess.run(["bash", "launch/multihost.sh", "3", "--config=configs/snare.py",
                        "--workdir=w"], cwd=ROOT, env={**env, "PORT": "23456"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = sorted(log.read_text().splitlines())
    assert calls == [f"{i} 3 127.0.0.1:23456 -m drumlayer.main --config=configs/snare.py "
                     "--workdir=w" for i in range(3)]
    r = subprocess.run(["bash", "launch/multihost.sh", "-", "--config=x"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "COORDINATOR" in r.stderr


def test_ablations_train_every_config_then_tabulate(tmp_path):
    env, log = _fake_python(tmp_path)
    runs = tmp_path / "runs"
    r = subprocess.run(["bash", "launch/ablations.sh", str(runs)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = [c.split(" ", 3)[3] for c in log.read_text().splitlines()]
    ablations = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", "ablations"))
                       if f.endswith(".py"))
    assert calls[0] == f"-m drumlayer.main --config=configs/snare.py --workdir={runs}/baseline"
    assert len(calls) == 2 + len(ablations)
    assert calls[-1].startswith(
        f"-m drumlayer.evaluation.evaluate --compare --out={runs}/ablations ")


def test_fetch_open_kits_refuses_without_apt(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("bash", "mkdir", "dirname", "id", "mktemp", "rm", "cat", "env"):
        path = shutil.which(tool)
        if path:
            os.symlink(path, bin_ / tool)
    r = subprocess.run([str(bin_ / "bash"), "launch/fetch_open_kits.sh", str(tmp_path / "k")],
                       cwd=ROOT, env={"PATH": str(bin_), "HOME": str(tmp_path)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "apt-get not found" in r.stderr
