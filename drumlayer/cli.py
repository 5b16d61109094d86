"""One command-line style for every entry point: absl flags, logging, and errors.

`python -m drumlayer.main` uses absl's global flags with `config_flags` (the flax examples'
pattern). The other commands (corpus, evaluate, studio) are also imported as libraries (the
main job imports the corpus builder and the evaluation), so their flags live in a FlagValues of
their own, made when the command runs: importing them defines nothing, and their `main(argv)`
works from another program or a test.

Errors: a `DrumlayerError` (a bad config field, no usable samples, a non-finite loss, a missing
bundle, ...) is what a person can fix and prints as one line, `error: ...`, exit status 1.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from absl import flags

from drumlayer.errors import DrumlayerError, disk_full

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _Exit(Exception):
    def __init__(self, code: int):
        self.code = code


def parse(argv: list[str] | None, prog: str, doc: str,
          define: Callable[[flags.FlagValues], None],
          positional: bool = False) -> tuple[flags.FlagValues, list[str]]:
    """Flags of one command: define(fv) declares them, argv (without the program name; None:
    sys.argv[1:]) gives them values. Returns (flags, positional arguments). --help prints doc
    and the flags; a bad flag prints why (exit status 2)."""
    fv = flags.FlagValues()
    define(fv)
    flags.DEFINE_bool("help", False, "show this help and exit", flag_values=fv)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rest = fv([prog, *args])[1:]
    except flags.Error as e:
        print(f"{prog}: {e}\n(see {prog} --help)", file=sys.stderr)
        raise _Exit(2) from None
    if fv.help:
        print(f"usage: {prog} [flags]\n\n{doc.strip()}\n\nflags:\n{fv.get_help()}")
        raise _Exit(0)
    if rest and not positional:
        print(f"{prog}: unexpected arguments {rest} (see {prog} --help)", file=sys.stderr)
        raise _Exit(2)
    return fv, rest


CACHE_MB = 2048  # the compilation cache's default size limit


def compilation_cache() -> str | None:
    """Keep compiled XLA programs on disk (all of them), so a rerun, the evaluation and the
    studio skip the compilation of what an earlier run compiled (JAX's persistent compilation
    cache, keyed by the program, the devices and the JAX version). $DRUMLAYER_JAX_CACHE picks
    the folder ('off': none); the default is $XDG_CACHE_HOME/drumlayer/jax (~/.cache/...).
    The folder is kept under $DRUMLAYER_JAX_CACHE_MB megabytes (CACHE_MB), the least recently
    used programs removed first, and read and written under a file lock, so that jobs running
    at once never read a program another is still writing. Returns the folder."""
    where = os.environ.get("DRUMLAYER_JAX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "drumlayer", "jax")
    if where == "off":
        return None
    given = os.environ.get("DRUMLAYER_JAX_CACHE_MB") or str(CACHE_MB)
    try:
        limit = float(given)
    except ValueError:
        limit = 0.0
    if not 1 <= limit * 2**20 <= 2**60:  # JAX: 0 turns the cache off, -1 lifts the limit
        logging.getLogger(__name__).warning(
            "DRUMLAYER_JAX_CACHE_MB=%r is not a positive number of megabytes: the compilation "
            "cache keeps its default limit, %d MB (DRUMLAYER_JAX_CACHE=off turns it off)",
            given, CACHE_MB)
        limit = CACHE_MB
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_compilation_cache_max_size", int(limit * 2**20))
    # every program, however quick to compile (JAX keeps only those over 1 s by default): the
    # studio's start compiles a dozen small ones, ~3 s in all on 2 cores, ~1 s read back
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return where


def run(command: Callable[[flags.FlagValues, list[str]], int], argv: list[str] | None,
        prog: str, doc: str, define: Callable[[flags.FlagValues], None],
        positional: bool = False) -> int:
    """Parse the flags, set up logging, run command(flags, positional); expected errors become
    one line (exit status 1)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        fv, rest = parse(argv, prog, doc, define, positional)
        return command(fv, rest)
    except _Exit as e:
        return e.code
    except Exception as e:  # noqa: BLE001 - a full disk is one line whatever raised it
        if not isinstance(e, DrumlayerError):
            e = disk_full(e, os.getcwd())
            if e is None:
                raise
        logging.getLogger(prog).error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
