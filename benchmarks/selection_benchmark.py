"""Frank-Wolfe source selection against a dense numpy transcription of the algorithm."""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks import harness


def _clustered_rows(n: int, d: int, seed: int) -> np.ndarray:
    """[n, d] float32 unit rows around 400 spectra-like centres, built in place."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((400, d))).astype(np.float32)
    X = np.empty((n, d), np.float32)
    for j in range(0, n, 10000):
        m = min(10000, n - j)
        X[j : j + m] = centres[rng.integers(0, 400, m)]
        X[j : j + m] *= rng.uniform(0.5, 1.5, (m, d)).astype(np.float32)
        X[j : j + m] /= np.linalg.norm(X[j : j + m], axis=1, keepdims=True)
    return X


def _select(n: int, d: int, k: int, beta: float, seed: int):
    """Frank-Wolfe on clustered synthetic spectra-like points; median of 3 runs for small n
    (after a warm-up that compiles), one run for large n."""
    from drumlayer.features import selection

    X = _clustered_rows(n, d, seed)
    repeats = 3 if n <= 20000 else 1
    times = []
    for _ in range(repeats + (1 if repeats > 1 else 0)):
        t = time.perf_counter()
        res = selection.frank_wolfe(X.T, k, beta=beta)
        times.append(time.perf_counter() - t)
    times = times[1:] if repeats > 1 else times
    return {"seconds": statistics.median(times), "picked": len(res.indices),
            "iterations": res.iterations, "indices": res.indices.tolist()}


def _select_reference(n: int, d: int, k: int, beta: float, seed: int):
    """The reference: dense numpy Frank-Wolfe keeping K Z (n x n) by rank-one updates."""
    X = _clustered_rows(n, d, seed).astype(np.float64)
    t = time.perf_counter()
    K = X @ X.T
    KZ = np.zeros((n, n))
    chosen: list[int] = []
    it = 0
    tkz = tzkz = 0.0
    while len(chosen) < k and it < 20 * k:
        R = K - KZ
        i = int(np.argmax(np.einsum("ij,ij->i", R, R)))
        s = beta * R[i] / np.linalg.norm(R[i])
        ks = K @ s
        tr_zks = float(s @ KZ[i])  # tr(Z^T K S) = s . (K Z)_i  (K symmetric)
        tr_sks = K[i, i] * float(s @ s)
        num = ks[i] - tkz - tr_zks + tzkz
        den = tr_sks - 2 * tr_zks + tzkz
        g = float(np.clip(num / den, 0, 1))
        KZ = (1 - g) * KZ + g * np.outer(K[:, i], s)
        tkz = (1 - g) * tkz + g * ks[i]
        tzkz = (1 - g) ** 2 * tzkz + 2 * (1 - g) * g * tr_zks + g**2 * tr_sks
        if i not in chosen:
            chosen.append(i)
        it += 1
    return {"seconds": time.perf_counter() - t, "picked": len(chosen), "iterations": it,
            "indices": chosen}


@harness.benchmark
def bench_selection(args) -> dict:
    """Frank-Wolfe, k=200: seconds and peak memory for n=2,500 and n=100,000 (d=2,049), vs a
    dense numpy implementation that keeps K Z by rank-one updates (n=2,500)."""
    rows = []
    for n in (2500, args.select_n):
        r = harness.in_child(_select, n, 2049, 200, 1000.0, 0)
        rows.append({"n": n, "impl": "drumlayer (jit, row norms)",
                     "seconds": round(r["result"]["seconds"], 2),
                     "iterations": r["result"]["iterations"], "picked": r["result"]["picked"],
                     "peak_rss_mb": round(r["peak_rss_mb"])})
        if n == 2500:
            ref = harness.in_child(_select_reference, n, 2049, 200, 1000.0, 0)
            same = ref["result"]["indices"] == r["result"]["indices"]
            rows.append({"n": n, "impl": "numpy dense K Z (reference)",
                         "seconds": round(ref["result"]["seconds"], 2),
                         "iterations": ref["result"]["iterations"],
                         "picked": ref["result"]["picked"], "peak_rss_mb": round(
                             ref["peak_rss_mb"])})
            rows[-2]["same_picks_as_reference"] = same
            rows[-1]["same_picks_as_reference"] = same
    for r in rows:
        r.setdefault("same_picks_as_reference", "")
    harness.print_table(("n", "impl", "seconds", "iterations", "picked", "peak_rss_mb",
                  "same_picks_as_reference"), rows)
    return {"rows": rows, "k": 200, "beta": 1000.0, "d": 2049}

