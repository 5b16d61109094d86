"""The studio's start: what answers an upload, compiled ahead on a thread, the quickest first.

With an empty JAX compilation cache on 2 cores the encoder compiles in about a second, the
weights refinement in a few, and the default refinement (its bank of shaped sources too) in
several more; an upload sent meanwhile is answered by the best that is ready
(`Studio.refiner`), and the response says which (the page then refines it again).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from drumlayer.recipes import refine as refine_lib
from drumlayer.recipes.recipe import Recipe

log = logging.getLogger(__name__)


def warm_up(st) -> threading.Thread:
    """Compile, in turn, st's encoder (then st.encode_ready is set), its weights refinement
    (st.quick_ready) and its default refinement (st.warm), on a thread; returns it. A failure
    is logged and sets them all: the first upload compiles instead."""
    x = np.asarray(st.bundle.sources[:1], np.float32)
    stages = ((st.encode_ready, "encode", lambda: st.filled(Recipe(**st.encoded(x[0])))),
              (st.quick_ready, "encode and the weights refinement",
               lambda: refine_lib.compile_for_one(st.bundle, st.quick)),
              (st.warm, "encode and refinement",
               lambda: refine_lib.compile_for_one(st.bundle, st.analyzer)))
    for ready, _, _ in stages:
        ready.clear()

    def run():
        t = time.perf_counter()
        try:
            for ready, what, compile_it in stages:
                compile_it()
                log.info("studio: %s compiled in %.1f s", what, time.perf_counter() - t)
                ready.set()  # after the log line: whoever waits on it finds the line written
        except Exception:  # noqa: BLE001 - the first upload compiles instead, and says why
            log.exception("studio: compiling ahead failed")
        finally:
            for ready, _, _ in stages:
                ready.set()

    thread = threading.Thread(target=run, name="studio-warm-up", daemon=True)
    thread.start()
    return thread
