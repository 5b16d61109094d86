"""Are a kit's generated sounds drums of the right kind? (`python -m benchmarks generation
--kit_workdir=runs/kit`)

For each category a kit trained a model for: sounds drawn from its space (the studio's random
point, the prior, variations of its held-out clips as the export's round robins are made) and
random sparse mixes of the same sources, classified by the kit's categoriser (the network the
loops are transcribed with, `drumlayer/loops/categorise.py`, trained on the kit corpus's
training and validation one-shots): the share it gives the category (its most probable). The
category's held-out real clips (test split and out of library), classified the same way, are
the reference: a generated sound should be recognised no less often than a real one.
"""

from __future__ import annotations

import numpy as np

from benchmarks import harness

DRAWS = 128


def onset(x: np.ndarray) -> int:
    """The first sample of a one-shot louder than a twentieth of its peak."""
    a = np.abs(x)
    return int(np.argmax(a >= 0.05 * max(float(a.max()), 1e-12)))


def classified(categoriser, clips: np.ndarray) -> list[str]:
    """The most probable category of each one-shot [N, S] at 22.05 kHz."""
    from drumlayer.loops import categorise
    from drumlayer.loops import transcribe as tr

    fb = tr.filterbank()
    p = categoriser.probabilities(np.stack([categorise.patch(np.asarray(x, np.float64),
                                                             onset(x), fb) for x in clips]))
    return [categoriser.categories[i] for i in np.argmax(p, axis=1)]


@harness.benchmark
def bench_generation(args) -> dict:
    from drumlayer.data.dataset import OUTSIDE, Dataset
    from drumlayer.evaluation import evaluate, generation
    from drumlayer.loops import analyze
    from drumlayer.workdir import Workdir

    kit = analyze.LoopKit.open(args.kit_workdir)
    if kit.categoriser is None:
        raise SystemExit(f"{args.kit_workdir} has no corpus to train a categoriser on")
    ds = Dataset(Workdir(args.kit_workdir).corpus)
    out = {"categories": {}}
    for c, st in sorted(kit.studios.items()):
        b = st.bundle
        held = [i for i, r in enumerate(ds.rows)
                if r["category"] == c and r["split"] in ("test", OUTSIDE)]
        if len(held) < 2:
            continue
        real = ds.audio(held)
        z = evaluate.encode(b, np.asarray(b.features(real)))
        sets = generation.generated(b, z, evaluate.decode, 0, DRAWS)
        src = np.asarray(b.sources, np.float32)
        row = {"held_out": len(held),
               "real": float(np.mean([k == c for k in classified(kit.categoriser, real)]))}
        for name, w in sets.items():
            row[name] = float(np.mean([k == c for k in classified(kit.categoriser, w @ src)]))
        out["categories"][c] = row
        print(f"{c:12s} " + " ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "held_out"),
              flush=True)
    return out
