"""Analysis by synthesis on a trained (paper-scale) workdir: time per sound, one at a time and in
batches of 64, with its parts, and the quality against matching pursuit in the same run."""

from __future__ import annotations

import numpy as np

from benchmarks import harness


@harness.benchmark
def bench_analyze(args) -> dict:
    """The default refinement (`analyze.AnalyzeConfig()`) of the workdir's test clips (tiled to
    64 for the batch): ms per sound for one sound and for batches of 64, split into encode
    (features, encoder, decoder, the start's objective: mode 'none'), refine (the rest) and mix
    (weights @ sources); the weights alone (mode 'weights') and one sweep of shaping
    (shape_rounds=1) and the spectrogram fit (`--fit=spectrogram`) the same way; reference:
    matching pursuit (<= 15 layers) on the same sounds. Then the medians of the default and
    matching pursuit against the test clips."""
    import jax
    import jax.numpy as jnp

    from drumlayer.evaluation import baselines
    from drumlayer.evaluation import evaluate as evaluate_lib
    from drumlayer.recipes import refine as refine_lib

    b = evaluate_lib.Bundle.load(args.workdir)
    test = evaluate_lib.load_test(args.workdir)
    clips = np.resize(test.audio, (64, test.audio.shape[1])).astype(np.float32)
    refine = refine_lib.Analyzer.from_bundle(b)
    weights = refine_lib.Analyzer.from_bundle(b, refine_lib.AnalyzeConfig(mode="weights"))
    sweep1 = refine_lib.Analyzer.from_bundle(b, refine_lib.AnalyzeConfig(mode="shape",
                                                                        shape_rounds=1))
    encode = refine_lib.Analyzer.from_bundle(b, refine_lib.AnalyzeConfig(mode="none"))
    spectrogram = refine_lib.Analyzer.from_bundle(
        b, refine_lib.AnalyzeConfig(**refine_lib.FITS["spectrogram"]))
    src = jnp.asarray(b.sources)
    mix = jax.jit(lambda v: v @ src)
    src_feats = np.asarray(b.features(b.sources))[:, :-1]

    def mp(x):
        return baselines.matching_pursuit(src_feats, b.features(x)[:, :-1])

    rows, out = [], {"sources": b.k, "test_clips": len(test.ids)}
    for n in (1, 64):
        x = clips[:n]
        v = refine(x).weights
        parts = {"total": (refine, x), "encode": (encode, x), "mix": (mix, v), "mp": (mp, x),
                 "weights": (weights, x), "sweep1": (sweep1, x), "spectrogram": (spectrogram, x)}
        t = {name: harness.median_time(lambda f=f, a=a: jax.block_until_ready(f(a)), repeats=5)
             for name, (f, a) in parts.items()}
        per = {k: 1e3 * s / n for k, s in t.items()}
        out[f"batch_{n}_ms_per_sound"] = {**per, "refine": per["total"] - per["encode"]}
        rows.append({"what": f"refined recipe (the default: shaped, 2 sweeps), "
                             f"{'one sound' if n == 1 else 'batches of 64'}",
                     "ms_per_sound": round(per["total"], 2), "encode": round(per["encode"], 2),
                     "refine": round(per["total"] - per["encode"], 2),
                     "mix": round(per["mix"], 3)})
        for key, what in (("weights", "refined weights only (--mode=weights)"),
                          ("sweep1", "shaped recipe, one sweep (shape_rounds=1)"),
                          ("spectrogram", "shaped recipe fitted to the spectrogram "
                                          "(--fit=spectrogram)")):
            rows.append({"what": f"{what}, {'one sound' if n == 1 else 'batches of 64'}",
                         "ms_per_sound": round(per[key], 2), "encode": round(per["encode"], 2),
                         "refine": round(per[key] - per["encode"], 2), "mix": ""})
        rows.append({"what": f"reference: matching pursuit, {'one sound' if n == 1 else '64'}",
                     "ms_per_sound": round(per["mp"], 2), "encode": "", "refine": "", "mix": ""})
    harness.print_table(("what", "ms_per_sound", "encode", "refine", "mix"), rows)
    fits = evaluate_lib.reconstruction(b, test)
    quality = {name: {k: float(np.median(v)) for k, v in fits[name].scores.items()}
               for name in ("refined", "matching_pursuit", "model")}
    for name, q in quality.items():
        print(f"{name:18s} " + ", ".join(f"{k} {v:.3g}" for k, v in q.items()))
    return {"rows": rows, **out, "quality": quality}
