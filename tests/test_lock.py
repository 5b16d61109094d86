"""lock: one writer per workdir; a dead writer's lock is taken over; readers need none."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

from drumlayer import lock
from drumlayer.workdir import Workdir

from conftest import LOCAL, ROOT, run_main


def hold(workdir):
    """Another process holding the workdir's lock (as a running main job would)."""
    code = ("import sys, time; from drumlayer import lock; from drumlayer.workdir import "
            "Workdir\nwith lock.exclusive(Workdir(sys.argv[1]), 'python -m drumlayer.main "
            "--config=first'):\n    print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(workdir)], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_is_refused_with_the_holder(tmp_path):
    wd = tmp_path / "run"
    first = hold(wd)
    try:
        r = run_main(wd)
        assert r.returncode == 1
        err = r.stderr.strip().splitlines()[-1]
        assert err.startswith(f"error: {wd} is in use by PID {first.pid} on ")
        assert "--config=first" in err and "choose another --workdir" in err
        assert not (wd / "corpus").exists()  # the second job wrote nothing
        with pytest.raises(lock.WorkdirBusy, match=f"PID {first.pid}"):
            with lock.exclusive(Workdir(str(wd))):
                pass
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    wd = tmp_path / "run"
    first = hold(wd)
    pid = first.pid
    first.send_signal(signal.SIGKILL)  # dies holding it: the kernel drops the flock
    first.wait()
    caplog.set_level(logging.WARNING, logger="drumlayer.lock")
    with lock.exclusive(Workdir(str(wd)), "second"):
        assert f"PID {pid}" in caplog.text and "which is gone" in caplog.text
        assert '"command": "second"' in (wd / ".lock").read_text()
    assert (wd / ".lock").read_text() == ""  # released cleanly
    caplog.clear()
    with lock.exclusive(Workdir(str(wd))):
        pass
    assert "taking over" not in caplog.text


def test_readers_work_while_another_job_writes(smoke_run, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from drumlayer.studio.server import create_app

    wd = tmp_path / "run"  # a copy: other tests (other processes) run jobs on the shared one
    shutil.copytree(smoke_run, wd)
    first = hold(wd)
    try:
        c = TestClient(create_app(str(wd)), base_url=LOCAL)
        assert c.get("/api/model").json()["k"] == 8
        r = subprocess.run([sys.executable, "-m", "drumlayer.evaluation.evaluate",
                            f"--workdir={wd}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 1 and f"in use by PID {first.pid}" in r.stderr  # it writes
    finally:
        first.kill()
        first.wait()
    assert os.path.exists(wd / "eval" / "report.md")


def test_an_error_inside_the_job_releases_the_lock_cleanly(tmp_path, caplog):
    """The next job finds nothing to warn about: the failed one released what it held."""
    wd = Workdir(str(tmp_path / "w"))
    with pytest.raises(RuntimeError, match="inside"), lock.exclusive(wd, "first"):
        raise RuntimeError("inside the job")
    assert (tmp_path / "w" / ".lock").read_text() == ""
    caplog.set_level(logging.WARNING, logger="drumlayer.lock")
    with lock.exclusive(wd, "second"):
        pass
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_the_refusal_names_the_holder_in_full(tmp_path):
    wd = tmp_path / "run"
    first = hold(wd)
    try:
        held = json.loads((wd / ".lock").read_text())
        assert held["pid"] == first.pid and held["host"] == socket.gethostname()
        with pytest.raises(lock.WorkdirBusy) as e:
            with lock.exclusive(Workdir(str(wd))):
                pass
        assert str(e.value) == (
            f"{wd} is in use by PID {first.pid} on {socket.gethostname()}, started "
            f"{held['started']} (python -m drumlayer.main --config=first): wait for it to finish "
            "or stop it, or choose another --workdir")
    finally:
        first.kill()
        first.wait()


def test_a_takeover_of_an_unreadable_lock_says_who_as_far_as_known(tmp_path, caplog):
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / ".lock").write_text('{"pid": 7}')  # left by a job that died
    caplog.set_level(logging.WARNING, logger="drumlayer.lock")
    with lock.exclusive(Workdir(str(wd))):
        pass
    assert "taking over the lock left by PID 7 on ?, started ? (?), which is gone" in caplog.text
    (wd / ".lock").write_text("not json")
    caplog.clear()
    with lock.exclusive(Workdir(str(wd))):
        pass
    assert "taking over" not in caplog.text  # unreadable: nothing to name
    (wd / ".lock").write_text('{"host": "elsewhere"}')
    with lock.exclusive(Workdir(str(wd))):
        pass
    assert "left by PID ? on elsewhere, started ? (?)" in caplog.text
