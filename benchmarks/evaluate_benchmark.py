"""The batch evaluation of a trained workdir, cold, against the interpolation pair by pair."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from benchmarks import harness


def _evaluate_cold(workdir, out):
    """The whole evaluation, as the main job runs it (compilation included), into out/."""
    from drumlayer.evaluation import evaluate as evaluate_lib
    from drumlayer.workdir import EvalDir

    res = evaluate_lib.run(workdir)
    evaluate_lib.write(res, EvalDir(out))
    return {"seconds": res.seconds, "pairs": len(res.interpolation.pairs),
            "points": len(res.interpolation.alpha), "sources": res.bundle.k}


def _interpolation_per_pair(workdir, pairs):
    """Reference: the interpolation one pair at a time (decode, mix, describe per pair), warm."""
    import jax.numpy as jnp

    from drumlayer.evaluation import evaluate as evaluate_lib
    from drumlayer.evaluation import results
    from drumlayer.features import measures
    from drumlayer.model import vae as model_lib

    b = evaluate_lib.Bundle.load(workdir)
    ec = results.EvalConfig.from_config(b.config)
    z = evaluate_lib.encode(b, evaluate_lib.load_test(workdir).features)
    pp = evaluate_lib.choose_pairs(len(z), ec.pairs, ec.seed)
    alpha = np.linspace(0, 1, ec.points, dtype=np.float32)[:, None]
    src = jnp.asarray(b.sources)

    def one(a, c):
        w = b.decode((1 - alpha) * z[a] + alpha * z[c])
        return [np.asarray(x) for x in measures.descriptors(model_lib.mix(w, src))]

    one(*pp[0])  # compile
    t = time.perf_counter()
    for a, c in pp[:pairs]:
        one(a, c)
    per_pair = (time.perf_counter() - t) / pairs
    evaluate_lib.interpolation(b, z, ec)  # compile
    t = time.perf_counter()
    evaluate_lib.interpolation(b, z, ec)
    batched = time.perf_counter() - t
    return {"per_pair_seconds": per_pair, "pairs": len(pp), "batched_warm": batched}


@harness.benchmark
def bench_evaluate(args) -> dict:
    """The batch evaluation on a trained (paper-scale) workdir: wall time of the whole stage in a
    fresh process (compilation, figures and WAVs included); reference: the interpolation done
    one pair at a time in a Python loop, against the batched version, both warm."""
    from drumlayer.recipes.bundle import Bundle

    wd = args.workdir
    try:
        Bundle.load(wd)
    except FileNotFoundError as e:
        raise SystemExit(f"bench evaluate: {e}\n(train it first: python -m drumlayer.main "
                         f"--config=configs/snare_paper.py --workdir={wd})") from e
    with tempfile.TemporaryDirectory() as tmp:
        cold = harness.in_child(_evaluate_cold, wd, tmp)
    ref = harness.in_child(_interpolation_per_pair, wd, 20)["result"]
    loop_total = ref["per_pair_seconds"] * ref["pairs"]
    r = cold["result"]
    rows = [{"what": f"whole evaluation, cold process ({r['sources']} sources, {r['pairs']} "
                     f"pairs x {r['points']} points)", "seconds": round(cold["seconds"], 1)},
            *({"what": f"  of which {k}", "seconds": v} for k, v in r["seconds"].items()),
            {"what": "interpolation, batched (warm)", "seconds": round(ref["batched_warm"], 2)},
            {"what": "reference: interpolation pair by pair (warm, extrapolated from 20)",
             "seconds": round(loop_total, 2)}]
    harness.print_table(("what", "seconds"), rows)
    print(f"batched / per-pair speed-up: {loop_total / ref['batched_warm']:.1f}x; target: whole "
          f"evaluation < 180 s: {'met' if cold['seconds'] < 180 else 'NOT met'}; peak memory "
          f"{cold['peak_rss_mb']:.0f} MB")
    return {"rows": rows, "workdir": os.path.abspath(wd), "seconds": cold["seconds"],
            "peak_rss_mb": cold["peak_rss_mb"],
            "speedup_vs_per_pair": loop_total / ref["batched_warm"]}

