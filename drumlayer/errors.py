"""The failures a person can act on. The command-line entry points print these as one line
(what is wrong, which file or field, what to do) and exit 1; anything else is a bug and keeps
its traceback."""

from __future__ import annotations

import errno
import os
import shutil


class DrumlayerError(Exception):
    """An expected failure with a message that says what to do."""


class ConfigError(DrumlayerError, ValueError):
    """A config field has a value this run cannot use (names the field and what is allowed)."""


class DiskFull(DrumlayerError, OSError):
    """A write failed because its file system is full."""


_FULL = ("no space left on device", "disk quota exceeded", "requested and")


def check_room(where: str, need: int) -> None:
    """Raise DiskFull before writing `need` bytes under where when its disk has less free (a
    write that fails half way leaves Orbax's threads printing tracebacks as they stop)."""
    free = shutil.disk_usage(where).free
    if free < need:
        raise DiskFull(f"no space left on the disk of {where} ({free / 2**20:.1f} MB free, "
                       f"{need / 2**20:.1f} MB needed): free some space and run the same "
                       "command again; what was done before is kept")


def disk_full(error: BaseException, where: str) -> DiskFull | None:
    """error as one DiskFull line naming `where` and its free space, when it (or an error it
    was raised from: Orbax and TensorStore wrap the OSError) is a full disk; else None. numpy's
    short write ('N requested and M written') is one too."""
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
                s in str(e).lower() for s in _FULL):
            break
        e = e.__cause__ or e.__context__
    else:
        return None
    where = getattr(e, "filename", None) or where
    while where and not os.path.isdir(where):  # the folder of the file, or the nearest one
        where = os.path.dirname(where)
    try:
        free = f"{shutil.disk_usage(where or '.').free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFull(f"no space left on the disk of {where} ({free}): free some space and run "
                    "the same command again; what was done before is kept")
