"""Corpus build: files/s and peak memory on the open kits and generated folders, against the
same decoding in one plain loop."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np
import soundfile as sf

from benchmarks import harness


def _build_corpus(roots, out, workers):
    from drumlayer.data import corpus as corpus_lib

    meta = corpus_lib.build(roots, out, corpus_lib.CorpusOptions(category="all", workers=workers),
                        progress=False)
    return {"clips": meta["clips"], "candidates": meta["candidates"]}


def _serial_decode(roots):
    """The reference: the same decoding (kits.load_candidate) in one process, in a plain loop,
    with no deduplication, grouping or writing."""
    from drumlayer.data import audio, candidates, discovery

    cands = discovery.discover(roots)[0]
    n = 0
    for c in cands:
        try:
            candidates.load_candidate(c, max_duration=30.0)
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


@harness.benchmark
def bench_corpus(args) -> dict:
    """Corpus build: files/s and peak memory, open kits and a generated folder, vs naive decode."""
    from drumlayer.data import corpus as corpus_lib

    rows = []
    tmp = tempfile.mkdtemp(prefix="drumlayer-bench-")
    try:
        sets = []
        roots = corpus_lib.default_roots()
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
            r = harness.in_child(_build_corpus, roots, out, 0)
            ref = harness.in_child(_serial_decode, roots)
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
    harness.print_table(header, rows)
    return {"rows": rows, "note": "reference: the same decoding in one process, in a loop, "
                                  "without dedup, grouping or writing"}

