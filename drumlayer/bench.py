"""The project's benchmarks: drumlayer against a reference measured in the same process.

    python -m drumlayer.bench corpus [--files=20000] [--out=bench_results]

Each benchmark prints a table and writes JSON (machine, medians, ratios) to --out. Timings are
medians over repeats after a warm-up; these machines are shared and noisy, so compare ratios
against the reference of the same run rather than absolute numbers across runs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

BENCHMARKS = {}


def benchmark(fn):
    BENCHMARKS[fn.__name__.removeprefix("bench_")] = fn
    return fn


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # kB on Linux


def _in_child(target, *args):
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
    q.put({"result": out, "seconds": time.perf_counter() - t, "peak_rss_mb": _peak_rss_mb(),
           "workers_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN)})


def _build_corpus(roots, out, workers):
    from drumlayer import corpus

    meta = corpus.build(roots, out, corpus.CorpusOptions(category="all", workers=workers),
                        progress=False)
    return {"clips": meta["clips"], "candidates": meta["candidates"]}


def _serial_decode(roots):
    """The reference: the same decoding (kits.load_candidate) in one process, in a plain loop,
    with no deduplication, grouping or writing."""
    from drumlayer import audio, kits

    cands = kits.discover(roots)[0]
    n = 0
    for c in cands:
        try:
            kits.load_candidate(c, max_duration=30.0)
            n += 1
        except audio.AudioError:
            continue
    return {"candidates": len(cands), "clips": n}


def generate_folder(folder: str, n: int, seed: int = 0) -> None:
    """n short drum-like WAV files (44.1 kHz, 16 bit, 0.3-0.8 s) in 100 kit folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = os.path.join(folder, f"kit{i % 100:03d}")
        os.makedirs(d, exist_ok=True)
        rate, secs = 44100, rng.uniform(0.3, 0.8)
        t = np.arange(int(rate * secs)) / rate
        phase = rng.uniform(0, 2 * np.pi)
        x = np.sin(2 * np.pi * rng.uniform(150, 300) * t + phase)
        x *= np.exp(-t / rng.uniform(0.03, 0.2))
        x += rng.uniform(0.2, 1) * rng.standard_normal(t.size) * np.exp(-t / rng.uniform(.02, .2))
        sf.write(os.path.join(d, f"snare_{i:06d}.wav"), 0.9 * x / np.abs(x).max(), rate,
                 subtype="PCM_16")


@benchmark
def bench_corpus(args) -> dict:
    """Corpus build: files/s and peak memory, open kits and a generated folder, vs naive decode."""
    from drumlayer import corpus

    rows = []
    tmp = tempfile.mkdtemp(prefix="drumlayer-bench-")
    try:
        sets = []
        roots = corpus.default_roots()
        if roots:
            sets.append(("open kits", roots))
        else:
            print("(open kits not found: run launch/fetch_open_kits.sh to include them)")
        for n in (1000, args.files):
            folder = os.path.join(tmp, f"gen{n}")
            t = time.perf_counter()
            generate_folder(folder, n)
            print(f"generated {n} files in {time.perf_counter() - t:.1f} s")
            sets.append((f"generated {n}", [folder]))
        for name, roots in sets:
            out = os.path.join(tmp, "out")
            shutil.rmtree(out, ignore_errors=True)
            r = _in_child(_build_corpus, roots, out, 0)
            ref = _in_child(_serial_decode, roots)
            rows.append({
                "set": name, "candidates": r["result"]["candidates"],
                "clips": r["result"]["clips"], "seconds": round(r["seconds"], 2),
                "files_per_s": round(r["result"]["candidates"] / r["seconds"], 1),
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
                "workers_peak_rss_mb": round(r["workers_peak_rss_mb"], 1),
                "reference_files_per_s": round(ref["result"]["candidates"] / ref["seconds"], 1),
            })
            rows[-1]["speedup_vs_reference"] = round(
                rows[-1]["files_per_s"] / rows[-1]["reference_files_per_s"], 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    header = ("set", "candidates", "clips", "seconds", "files_per_s", "peak_rss_mb",
              "workers_peak_rss_mb", "reference_files_per_s", "speedup_vs_reference")
    _print_table(header, rows)
    return {"rows": rows, "note": "reference: the same decoding in one process, in a loop, "
                                  "without dedup, grouping or writing"}


def _print_table(header, rows) -> None:
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[h]).ljust(w) for h, w in zip(header, widths, strict=True)))


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m drumlayer.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", default=[], help=f"any of {sorted(BENCHMARKS)}")
    p.add_argument("--files", type=int, default=20000, help="generated folder size (corpus)")
    p.add_argument("--out", default="bench_results", help="folder for the JSON results")
    args = p.parse_args(argv)
    names = args.names or sorted(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        print(f"== {name}")
        result = {"benchmark": name, "machine": machine(), **BENCHMARKS[name](args)}
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
