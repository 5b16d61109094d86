import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from drumlayer import model, train
from drumlayer.workdir import Workdir

from train_helper import tiny_config, tiny_data

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_helper(workdir, out, devices=1, epochs=2):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": os.pathsep.join([ROOT, HERE])}
    r = subprocess.run([sys.executable, os.path.join(HERE, "train_helper.py"), str(workdir),
                        str(out), str(epochs)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(out))


def test_eight_devices_equal_one(tmp_path):
    one = run_helper(tmp_path / "w1", tmp_path / "one.npz", devices=1)
    eight = run_helper(tmp_path / "w8", tmp_path / "eight.npz", devices=8)
    assert int(one["devices"]) == 1 and int(eight["devices"]) == 8
    assert len(one["step_grad_norm"]) == 1 + 2 * 3  # 1 + 2 epochs: 6 sources, 22 targets
    for k in one:
        if k != "devices":
            np.testing.assert_allclose(eight[k], one[k], atol=1e-5, rtol=1e-5, err_msg=k)


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path):
    epochs = 8
    full = run_helper(tmp_path / "full", tmp_path / "full.npz", epochs=epochs)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "PYTHONPATH": os.pathsep.join([ROOT, HERE])}
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "train_helper.py"), str(cut),
                             str(tmp_path / "never.npz"), str(epochs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (cut / "checkpoints" / "3").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-training: no chance to clean up
    proc.wait()
    assert not (tmp_path / "never.npz").exists()
    lines_before = len((cut / "metrics.jsonl").read_text().splitlines())
    resumed = run_helper(cut, tmp_path / "resumed.npz", epochs=epochs)
    # it resumed: the finished epochs were not trained again
    done = int(resumed["resumed_from"])
    assert int(full["resumed_from"]) == 0 and 3 <= done < 1 + epochs
    steps_per_epoch = {"pretrain": 1, "train": 3}
    new = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()[
        lines_before:]]
    assert [r["epoch"] for r in new if r["kind"] == "epoch"][0] == done - 1  # train epoch
    assert sum(r["kind"] == "step" for r in new) == steps_per_epoch["train"] * (1 + epochs - done)
    for k in ("val_loss", *(k for k in full if "/" in k)):
        np.testing.assert_allclose(resumed[k], full[k], atol=1e-6, err_msg=k)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    data = tiny_data()
    data.train = data.train.copy()
    data.train[3, 5] = np.nan
    with pytest.raises(train.NonFiniteLoss, match="last good checkpoint is .*checkpoints/1"):
        train.train_and_evaluate(data, tiny_config(), Workdir(tmp_path), progress=False)
    assert os.path.isdir(tmp_path / "checkpoints" / "1")


def test_evaluation_covers_an_uneven_last_batch(tmp_path):
    data, tc = tiny_data(), tiny_config()
    mesh = train.make_mesh()
    m = model.create(6, tc.model)
    state = train.create_state(m, data.train.shape[1], train.make_optimizer(1e-3, 1.0), 0)
    consts = tuple(train.put(mesh, a, train.P()) for a in (data.sources, data.mean, data.std))
    _, eval_step = train.make_steps(m, mesh, "train", tc.loss)
    feats = data.train[:11]  # batch 8: one full batch and one of 3
    got = train.validate(eval_step, state.params, mesh, feats, tc, consts)
    # the same examples one at a time
    per = [train.validate(eval_step, state.params, mesh, feats[i : i + 1], tc, consts)
           for i in range(11)]
    assert got["reconstruction"] == pytest.approx(np.mean([p["reconstruction"] for p in per]),
                                                  rel=1e-4)


def test_two_processes_through_jax_distributed_match_one(tmp_path):
    """Two processes x 2 CPU devices (gloo collectives) train together, like two hosts."""
    import socket

    for attempt in range(3):  # the free port found here may be taken before the coordinator
        with socket.socket() as s:  # binds it: then try another
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
               "PYTHONPATH": os.pathsep.join([ROOT, HERE]), "JAX_PLATFORMS": "cpu",
               "DRUMLAYER_COORDINATOR": f"127.0.0.1:{port}", "DRUMLAYER_NUM_PROCESSES": "2"}
        procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "train_helper.py"),
                                   str(tmp_path / f"shared{attempt}"), str(tmp_path / f"p{i}.npz"),
                                   "1"], env={**env, "DRUMLAYER_PROCESS_ID": str(i)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
        errs = [p.communicate(timeout=600)[1] for p in procs]
        if all(p.returncode == 0 for p in procs):
            break
        if not any("address already in use" in e.lower() for e in errs) or attempt == 2:
            raise AssertionError("\n".join(e[-3000:] for e in errs))
    one = run_helper(tmp_path / "one", tmp_path / "one.npz", devices=1, epochs=1)
    for i in range(2):
        got = dict(np.load(tmp_path / f"p{i}.npz"))
        assert int(got["devices"]) == 4
        for k in one:
            if k == "devices" or (k.startswith("step_") and i == 1):  # process 0 logs steps
                continue
            np.testing.assert_allclose(got[k], one[k], atol=1e-5, rtol=1e-5, err_msg=k)


def test_the_loss_is_the_papers_formula_by_hand():
    """MSE of the mix's features + beta * max(KL - free_bits ln 2, 0), per example."""
    import jax
    import jax.numpy as jnp

    from drumlayer import spectral

    data = tiny_data()
    m = model.create(6, tiny_config().model)
    params = model.init_params(m, data.train.shape[1], seed=1)
    feats = data.train[:8]
    eps = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    consts = (jnp.asarray(data.sources), jnp.asarray(data.mean), jnp.asarray(data.std))
    out = jax.device_get(m.apply({"params": params}, (feats - data.mean) / data.std, eps))
    mean, scale = np.float64(out["mean"]), np.float64(out["scale"])
    kl = 0.5 * np.sum(mean**2 + scale**2 - 1 - 2 * np.log(scale), axis=-1)  # nats
    free_bits = float(np.median(kl) / np.log(2))  # half the examples above it
    lc = train.LossConfig(beta=0.3, free_bits=free_bits)
    loss, metrics = jax.device_get(train.per_example(params, m, "train", lc, feats,
                                                     np.zeros(8, np.int32), eps, consts))
    mix = out["weights"] @ data.sources
    recon = np.mean((np.asarray(spectral.features(mix)) - feats) ** 2, axis=-1)
    want = recon + 0.3 * np.maximum(kl - free_bits * np.log(2), 0)
    np.testing.assert_allclose(metrics["reconstruction"], recon, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl_bits"], kl / np.log(2), rtol=1e-5)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_array_equal(metrics["kl_active"], kl > free_bits * np.log(2))
    assert 0 < metrics["kl_active"].sum() < 8


def test_training_learns(tmp_path):
    """Pretraining learns to name every source; the VAE's loss then falls."""
    data = tiny_data()
    tc = dataclasses.replace(tiny_config(epochs=8), pretrain_epochs=60, learning_rate=3e-3)
    train.train_and_evaluate(data, tc, Workdir(tmp_path), progress=False)
    epochs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    pre = [r for r in epochs if r["phase"] == "pretrain"]
    vae = [r for r in epochs if r["phase"] == "train"]
    assert pre[0]["accuracy"] < 0.5 and pre[-1]["accuracy"] == 1.0
    assert vae[-1]["loss"] < 0.7 * vae[0]["loss"]
    assert vae[-1]["val_loss"] < vae[0]["val_loss"]
