"""A full disk, for real: the main job's workdir on a small tmpfs. It ends with one line that
says so (where, how much is free, what to do), not hundreds of lines of Orbax tracebacks, and
the same command finishes once there is room."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs (needs root, as CI runs): yields (its path, resize(size))."""
    where = tmp_path / "disk"
    where.mkdir()

    def mount(*opts):
        return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs",
                               str(where)], capture_output=True, text=True)

    r = mount("size=3m")
    if r.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: cannot mount a tmpfs to fill ({r.stderr.strip()})")
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where, lambda size: mount("remount", f"size={size}")
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def main_job(workdir):
    return subprocess.run([sys.executable, "-m", "drumlayer.main",
                           "--config=configs/snare.py:smoke", f"--workdir={workdir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)


def assert_one_line(r, workdir):
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no space left on the disk of" in errors[0], r.stderr[-2000:]
    assert str(workdir) in errors[0] and "MB free" in errors[0]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]


@pytest.mark.parametrize("size, stage", [("3m", "corpus"), ("13m", "training")])
def test_a_full_disk_is_one_line_and_the_rerun_finishes(small_disk, size, stage):
    disk, resize = small_disk
    assert resize(size).returncode == 0
    workdir = disk / "run"
    assert_one_line(main_job(workdir), workdir)
    if stage == "training":  # the corpus fit: the disk filled later, while checkpointing
        assert (workdir / "corpus" / "stamp.json").exists()
    assert resize("96m").returncode == 0
    r = main_job(workdir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (workdir / "eval" / "report.md").exists()
