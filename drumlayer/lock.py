"""One writer per workdir: the main job and the evaluation hold WORKDIR/.lock while they write.

A second writer is refused at once with the holder's PID, host, start time and command. The lock
is an OS file lock (flock): a job that dies, even by SIGKILL, releases it, and the next writer
takes it over with a warning naming the job that left it. Readers (the studio, the notebooks)
take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time

from drumlayer.errors import DrumlayerError
from drumlayer.workdir import Workdir

log = logging.getLogger(__name__)


class WorkdirBusy(DrumlayerError):
    """Another job is writing into the workdir."""


def _holder(f) -> dict:
    f.seek(0)
    try:
        return json.loads(f.read() or "{}")
    except ValueError:
        return {}


def _describe(h: dict) -> str:
    return (f"PID {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
            f" ({h.get('command', '?')})")


@contextlib.contextmanager
def exclusive(wd: Workdir, command: str | None = None):
    """Hold the workdir's writer lock for the body; raise WorkdirBusy if another job holds it."""
    os.makedirs(wd.root, exist_ok=True)
    f = open(wd.lock, "a+")  # noqa: SIM115 - closed in finally
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusy(f"{wd.root} is in use by {_describe(_holder(f))}: wait for it to "
                              "finish or stop it, or choose another --workdir") from None
        stale = _holder(f)
        if stale:  # its holder did not release it: it died
            log.warning("workdir: taking over the lock left by %s, which is gone",
                        _describe(stale))
        f.seek(0)
        f.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "command": command or " ".join(sys.argv)}, f)
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # released cleanly: nothing for the next writer to warn about
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()
