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
    keys = [k for k in one if k not in ("devices", "val_loss")]
    assert keys
    for k in keys:
        np.testing.assert_allclose(eight[k], one[k], atol=1e-5, rtol=1e-5, err_msg=k)
    assert float(eight["val_loss"]) == pytest.approx(float(one["val_loss"]), rel=1e-5)


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
    resumed = run_helper(cut, tmp_path / "resumed.npz", epochs=epochs)
    for k in full:
        if k != "devices":
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

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": os.pathsep.join([ROOT, HERE]), "JAX_PLATFORMS": "cpu",
           "DRUMLAYER_COORDINATOR": f"127.0.0.1:{port}", "DRUMLAYER_NUM_PROCESSES": "2"}
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "train_helper.py"),
                               str(tmp_path / "shared"), str(tmp_path / f"p{i}.npz"), "1"],
                              env={**env, "DRUMLAYER_PROCESS_ID": str(i)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    one = run_helper(tmp_path / "one", tmp_path / "one.npz", devices=1, epochs=1)
    for i in range(2):
        got = dict(np.load(tmp_path / f"p{i}.npz"))
        assert int(got["devices"]) == 4
        for k in one:
            if k != "devices":
                np.testing.assert_allclose(got[k], one[k], atol=1e-5, rtol=1e-5, err_msg=k)
