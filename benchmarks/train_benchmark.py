"""Training-step throughput at the paper's scale, against the forward features alone."""

from __future__ import annotations

import numpy as np

from benchmarks import harness


@harness.benchmark
def bench_train(args) -> dict:
    """Training step throughput at the paper's scale (200 sources, batch 64, D = 2,049) on the
    devices here, and the paper-scale recipe's estimated wall time; reference: the forward
    features of the same batch alone."""
    import jax

    from drumlayer import model as model_lib
    from drumlayer import spectral, train

    k, batch = 200, 64
    sources = harness.snares(k, seed=1)
    src_f = np.asarray(spectral.features(sources))
    rng = np.random.default_rng(0)
    targets = np.asarray(spectral.features(rng.dirichlet(np.ones(k) * 0.1, 256).astype(
        np.float32) @ sources))
    mean, std = train.standardisation(targets)
    tc = train.TrainConfig(batch=batch)
    mesh = train.make_mesh()
    m = model_lib.create(k, tc.model)
    consts = tuple(train.put(mesh, a, train.P()) for a in (sources, mean, std))
    rows = []
    for phase, feats in (("train", targets), ("pretrain", src_f)):
        step, _ = train.make_steps(m, mesh, phase, tc.loss)
        idx = np.arange(batch) % len(feats)
        b = train.global_batch(mesh, feats, idx, tc.model.latent, (0,))
        holder = {"state": train.create_state(m, targets.shape[1],
                                              train.make_optimizer(1e-3, 1.0), 0)}

        def run(step=step, b=b, holder=holder):
            holder["state"], met = step(holder["state"], *b, consts)
            jax.block_until_ready(met)

        t = harness.median_time(run, repeats=10, warmup=2)
        rows.append({"what": f"{phase} step (batch {batch})", "seconds": round(t, 4),
                     "examples_per_s": round(batch / t, 1)})
    x = jax.device_put(targets[:batch])
    t_feat = harness.median_time(lambda: spectral.features(x).block_until_ready(), repeats=10)
    rows.append({"what": f"reference: forward features of {batch} clips",
                 "seconds": round(t_feat, 4), "examples_per_s": round(batch / t_feat, 1)})
    n_targets, epochs, pre_epochs = 2000, 150, 50
    steps = epochs * -(-n_targets // batch)
    estimate = steps * rows[0]["seconds"] + pre_epochs * -(-k // batch) * rows[1]["seconds"]
    harness.print_table(("what", "seconds", "examples_per_s"), rows)
    print(f"paper-scale recipe ({k} sources, {n_targets} targets, {pre_epochs} + {epochs} "
          f"epochs): about {estimate / 60:.1f} min of steps on {jax.device_count()} "
          f"{jax.default_backend()} device(s)")
    return {"rows": rows, "devices": jax.device_count(), "backend": jax.default_backend(),
            "paper_recipe_minutes_estimate": round(estimate / 60, 1)}

