"""What every benchmark shares: the registry, timing (medians after warm-up), peak memory, a
fresh process per measurement, the table printer and where Chromium is.

Benchmarks live beside the package, not in it (they import dev-only tools: librosa, Playwright).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import time

import numpy as np

BENCHMARKS = {}


def benchmark(fn):
    """Register fn(args) -> dict under its name without "bench_"."""
    BENCHMARKS[fn.__name__.removeprefix("bench_")] = fn
    return fn


def machine() -> dict:
    import jax

    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MB. For this process, VmHWM: ru_maxrss survives exec, so a
    child spawned by a large parent would report the parent's peak."""
    if who == resource.RUSAGE_SELF:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
    return resource.getrusage(who).ru_maxrss / 1024.0  # kB on Linux


def in_child(target, *args):
    """Run target(*args, queue) in a fresh process -> (its result, its peak RSS in MB)."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_main, args=(target, args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def _child_main(target, args, q):
    t = time.perf_counter()
    out = target(*args)
    q.put({"result": out, "seconds": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb(),
           "workers_peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN)})


def duration(seconds: float) -> str:
    """'42 s' under two minutes, else '3.5 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def print_table(header, rows) -> None:
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[h]).ljust(w) for h, w in zip(header, widths, strict=True)))


def snares(n: int, seed: int = 0) -> np.ndarray:
    from drumlayer.data import procedural

    return procedural.procedural_snares(n, 22050, seed=seed)



def chromium() -> str:
    """Chromium's executable: $CHROMIUM, else the first chromium on PATH."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        raise SystemExit("the studio benchmark drives Chromium: install it (Debian: apt-get "
                         "install chromium) or set CHROMIUM=/path/to/chromium")
    return path
