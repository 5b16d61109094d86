import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from drumlayer.features import extractor, spectral
from drumlayer.model import vae as vae_lib
from drumlayer.training import aot, checkpoints, distributed, ledger, loop, losses, optimizer
from drumlayer.training import steps as steps_lib
from drumlayer.workdir import Workdir

from train_helper import tiny_config, tiny_data

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_helper(workdir, out, devices=1, epochs=2, spectrum="fft", dropout=0.0):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": os.pathsep.join([ROOT, HERE])}
    r = subprocess.run([sys.executable, os.path.join(HERE, "train_helper.py"), str(workdir),
                        str(out), str(epochs), spectrum, str(dropout)], env=env,
                       capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.parametrize("spectrum, dropout", [("fft", 0.0), ("linear", 0.0), ("fft", 0.3)],
                         ids=["fft", "linear", "input-dropout"])
def test_eight_devices_equal_one(tmp_path, spectrum, dropout):
    one = run_helper(tmp_path / "w1", tmp_path / "one.npz", devices=1, spectrum=spectrum,
                     dropout=dropout)
    eight = run_helper(tmp_path / "w8", tmp_path / "eight.npz", devices=8, spectrum=spectrum,
                       dropout=dropout)
    assert int(one["devices"]) == 1 and int(eight["devices"]) == 8
    assert len(one["step_grad_norm"]) == 1 + 2 * 3  # 1 + 2 epochs: 6 sources, 22 targets
    for k in one:
        if k != "devices":
            np.testing.assert_allclose(eight[k], one[k], atol=1e-5, rtol=1e-5, err_msg=k)
    if dropout:  # and the dropout did train other parameters than none would
        plain = run_helper(tmp_path / "w0", tmp_path / "plain.npz", spectrum=spectrum)
        key = "['encoder']/['hidden']/['kernel']"
        assert not np.allclose(plain[key], one[key], atol=1e-6)


EPOCHS = 8


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    return run_helper(d / "w", d / "full.npz", epochs=EPOCHS)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_mid_training_then_resumed_matches_an_uninterrupted_run(uninterrupted, tmp_path,
                                                                       sig):
    """SIGKILL: the rerun resumes from the last epoch's checkpoint. SIGTERM (a preemptible
    machine's notice): the state is saved at the next step boundary and the rerun resumes from
    that step."""
    full = uninterrupted
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "PYTHONPATH": os.pathsep.join([ROOT, HERE])}
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "train_helper.py"), str(cut),
                             str(tmp_path / "never.npz"), str(EPOCHS)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (cut / "checkpoints" / "3").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)  # mid-training
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (tmp_path / "never.npz").exists()
    mid_epoch = (cut / "checkpoints" / "preempted.json").exists()
    if sig == signal.SIGTERM:  # saved at the next step, or (during validation) at the epoch end
        assert "stopped by SIGTERM" in err and "run the same command again" in err
        assert mid_epoch or " after train epoch " in err
    resumed = run_helper(cut, tmp_path / "resumed.npz", epochs=EPOCHS)
    # it resumed: what was trained before the signal was not trained again
    done, skip = int(resumed["resumed_from"]), int(resumed["resumed_batches"])
    assert int(full["resumed_from"]) == 0 and 3 <= done < 1 + EPOCHS
    assert (skip > 0) == mid_epoch and not (mid_epoch and sig == signal.SIGKILL)
    # metrics.jsonl holds every step and epoch once: what the killed run logged past its saved
    # state was dropped and logged again
    records = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    epochs = [(r["phase"], r["epoch"]) for r in records if r["kind"] == "epoch"]
    assert len(epochs) == len(set(epochs)) == 1 + EPOCHS
    assert [r["step"] for r in records if r["kind"] == "step"] == list(
        range(1, 1 + 3 * EPOCHS + 1))  # 6 sources: 1 pretraining step; 22 targets: 3 a train epoch
    assert not (cut / "checkpoints" / "preempted.json").exists()
    for k in ("val_loss", *(k for k in full if "/" in k)):
        np.testing.assert_allclose(resumed[k], full[k], atol=1e-6, err_msg=k)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    data = tiny_data()
    data.train = data.train.copy()
    data.train[3, 5] = np.nan
    with pytest.raises(ledger.NonFiniteLoss, match="last good checkpoint is .*checkpoints/1"):
        loop.train_and_evaluate(data, tiny_config(), Workdir(tmp_path), progress=False)
    assert os.path.isdir(tmp_path / "checkpoints" / "1")


@pytest.mark.parametrize("rows", [11, 3])
def test_evaluation_is_the_mean_over_rows_in_blocks(rows):
    """Batch 8: 11 rows are a full block and one of 3 (padded); 3 rows, fewer than a batch, are
    one block of 3 (the validation set of 15 clips at the paper's scale was a block of 64 rows,
    49 of them padding)."""
    data, tc = tiny_data(), tiny_config()
    mesh = distributed.make_mesh()
    m = vae_lib.create(6, tc.model)
    state = optimizer.create_state(m, data.train.shape[1], optimizer.make_optimizer(1e-3, 1.0), 0)
    consts = losses.make_consts(mesh, data.sources, data.mean, data.std, tc.loss)
    _, evaluate = steps_lib.make_steps(m, mesh, "train", tc.loss, tc.batch, tc.model.latent)
    feats = data.train[:rows]
    if rows < tc.batch:
        text = evaluate.lower(state.params, distributed.put(mesh, feats), consts).as_text()
        assert f"tensor<{rows}x2049xf32>" in text and "tensor<8x2049xf32>" not in text
    got = loop.validate(evaluate, state.params, mesh, feats, consts)
    # the same examples one at a time
    per = [loop.validate(evaluate, state.params, mesh, feats[i : i + 1], consts)
           for i in range(rows)]
    for k in ("loss", "reconstruction", "kl_bits"):
        assert got[k] == pytest.approx(np.mean([p[k] for p in per]), rel=1e-4), k


@pytest.mark.parametrize("batch", [8, 2], ids=["even", "uneven"])
def test_every_call_runs_the_steps_compiled_ahead(tmp_path, monkeypatch, batch):
    # Both phases' steps and the validation are compiled on a background thread when training
    # starts; the training calls must find those compilations (same shapes, dtypes, weak types
    # and shardings), or the compilations were wasted and phase 2 compiles again. Batch 2: 11
    # batches an epoch, at most 4 a call: calls of 4, 4 and 3, both lengths compiled ahead.
    made = []

    def spy(*args, **kwargs):
        out = compile_ahead(*args, **kwargs)
        made.extend(f for f in out if isinstance(f, aot.Ahead))
        return out

    compile_ahead = loop.compile_ahead
    monkeypatch.setattr(loop, "compile_ahead", spy)
    tc = dataclasses.replace(tiny_config(epochs=2), batch=batch, steps_per_call=4)
    loop.train_and_evaluate(tiny_data(), tc, Workdir(str(tmp_path)), progress=False)
    assert sorted(f.name for f in made) == ["pretrain steps", "train steps", "train validation"]
    for f in made:
        assert f.calls["ahead"] > 0 and f.calls["jitted"] == 0, (f.name, f.calls)


def test_one_device_steps_have_no_collectives():
    """On one device the step is the same function without psum: XLA would still copy every
    gradient through an all-reduce (~3 ms of a 0.1 s step at the paper's scale on a CPU)."""
    data, tc = tiny_data(), tiny_config()
    m = vae_lib.create(6, tc.model)
    state = optimizer.create_state(m, data.train.shape[1], optimizer.make_optimizer(1e-3, 1.0), 0)
    for devices in (jax.devices()[:1], jax.devices()[:2]):
        mesh = loop.Mesh(np.asarray(devices), ("data",))
        consts = losses.make_consts(mesh, data.sources, data.mean, data.std, tc.loss)
        steps, evaluate = steps_lib.make_steps(m, mesh, "train", tc.loss, tc.batch, tc.model.latent)
        table = distributed.put(mesh, data.train)
        rng = distributed.put(mesh, np.array([0, 1, 0], np.int32))
        order = steps_lib.make_order(mesh, tc.batch)(rng, len(data.train))
        ids = distributed.put(mesh, np.arange(2, dtype=np.int32))
        texts = [steps.lower(state, order, ids, rng, table, consts).compile().as_text(),
                 evaluate.lower(state.params, table, consts).compile().as_text()]
        for text in texts:
            assert ("all-reduce" in text) == (len(devices) > 1), len(devices)
        if jax.device_count() == 1:
            break


@pytest.mark.parametrize("cpus,batch,requested,expected", [
    (2, 64, 0, 2), (1, 64, 0, 1), (3, 64, 0, 2), (16, 64, 0, 8), (6, 16, 0, 4), (12, 12, 0, 6),
    (4, 2, 0, 2), (2, 64, 4, 4), (2, 64, 1, 1)])
def test_the_cpu_becomes_one_device_per_core_dividing_the_batch(cpus, batch, requested,
                                                                 expected):
    assert distributed.cpu_device_count(cpus, batch, requested) == expected


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

    from drumlayer.features import extractor

    data = tiny_data()
    m = vae_lib.create(6, tiny_config().model)
    params = vae_lib.init_params(m, data.train.shape[1], seed=1)
    feats = data.train[:8]
    eps = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    consts = (jnp.asarray(data.sources), jnp.asarray(data.mean), jnp.asarray(data.std), None)
    out = jax.device_get(m.apply({"params": params}, (feats - data.mean) / data.std, eps))
    mean, scale = np.float64(out["mean"]), np.float64(out["scale"])
    kl = 0.5 * np.sum(mean**2 + scale**2 - 1 - 2 * np.log(scale), axis=-1)  # nats
    free_bits = float(np.median(kl) / np.log(2))  # half the examples above it
    lc = losses.LossConfig(beta=0.3, free_bits=free_bits)
    loss, metrics = jax.device_get(losses.per_example(params, m, "train", lc, feats,
                                                     np.zeros(8, np.int32), eps, consts))
    mix = out["weights"] @ data.sources
    recon = np.mean((np.asarray(extractor.features(mix)) - feats) ** 2, axis=-1)
    want = recon + 0.3 * np.maximum(kl - free_bits * np.log(2), 0)
    np.testing.assert_allclose(metrics["reconstruction"], recon, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl_bits"], kl / np.log(2), rtol=1e-5)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_array_equal(metrics["kl_active"], kl > free_bits * np.log(2))
    assert 0 < metrics["kl_active"].sum() < 8
    # with the dB term: + db_weight * the mean squared difference of the spectra in dB, both
    # floored 80 dB below the target's loudest bin (here by hand, in float64)
    lc = losses.LossConfig(beta=0.3, free_bits=free_bits, db_weight=0.05)
    loss_db, m_db = jax.device_get(losses.per_example(params, m, "train", lc, feats,
                                                     np.zeros(8, np.int32), eps, consts))
    mix_db = 20 * np.log10(np.maximum(np.float64(extractor.features(mix))[:, :-1], 1e-9))
    target_db = 20 * np.log10(np.maximum(np.float64(feats)[:, :-1], 1e-9))
    floor = target_db.max(-1, keepdims=True) - 80
    db = np.mean((np.maximum(mix_db, floor) - np.maximum(target_db, floor)) ** 2, axis=-1)
    assert np.all((target_db < floor).sum(-1) > 0)  # the floor is reached: it matters here
    np.testing.assert_allclose(m_db["spectrum_db"], db, rtol=1e-4)
    np.testing.assert_allclose(loss_db, want + 0.05 * db, rtol=1e-5)


def test_input_dropout_hides_features_from_the_encoder_not_from_the_loss():
    """keep [B, D]: the encoder sees x * keep / (1 - p) (x standardised); the reconstruction
    is still measured against every feature of the target."""
    data = tiny_data()
    m = vae_lib.create(6, tiny_config().model)
    params = vae_lib.init_params(m, data.train.shape[1], seed=1)
    feats = data.train[:8]
    rng = np.random.default_rng(3)
    eps = rng.standard_normal((8, 4)).astype(np.float32)
    keep = (rng.random(feats.shape) > 0.25).astype(np.float32)
    consts = (jnp.asarray(data.sources), jnp.asarray(data.mean), jnp.asarray(data.std), None)
    lc = losses.LossConfig(input_dropout=0.25)
    _, dropped = jax.device_get(losses.per_example(params, m, "train", lc, feats,
                                                  np.zeros(8, np.int32), eps, consts, keep))
    seen = data.mean + data.std * ((feats - data.mean) / data.std * keep / 0.75)
    _, plain = jax.device_get(losses.per_example(params, m, "train", lc, seen,
                                                np.zeros(8, np.int32), eps, consts))
    for k in ("kl_bits", "max_weight", "active_layers"):  # the encoder's and decoder's output
        np.testing.assert_allclose(dropped[k], plain[k], rtol=1e-4, atol=1e-5, err_msg=k)
    out = jax.device_get(m.apply({"params": params}, (seen - data.mean) / data.std, eps))
    mix = out["weights"] @ data.sources
    want = np.mean((np.asarray(extractor.features(mix)) - feats) ** 2, axis=-1)
    np.testing.assert_allclose(dropped["reconstruction"], want, rtol=1e-4)
    assert not np.allclose(dropped["reconstruction"], plain["reconstruction"], rtol=1e-3)


@pytest.mark.parametrize("compression", ["linear", "log"])
def test_the_loss_gradient_is_the_same_by_either_spectrum(compression):
    """The FFT path differentiates its spectral terms in the forward pass
    (`spectral.spectrum_loss`), the linear path by autodiff through `mix_spectrum`: the same
    loss and the same gradient with respect to every parameter as autodiff of the loss written
    out here from `extractor.features`, with the dB term and the KL term active and padded
    (masked) rows in the batch."""
    data = tiny_data()
    m = vae_lib.create(6, tiny_config().model)
    params = vae_lib.init_params(m, data.train.shape[1], seed=2)
    feats = np.array(data.train[:8])  # linear: the spectra as they are
    if compression == "log":
        feats[:, :-1] = np.log1p(feats[:, :-1])
    feats = jnp.asarray(feats)
    eps = jnp.asarray(np.random.default_rng(1).standard_normal((8, 4)), jnp.float32)
    mask = jnp.asarray([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
    sources = jnp.asarray(data.sources)

    def by_hand(params):
        out = m.apply({"params": params}, (feats - data.mean) / data.std, eps)
        f = extractor.features(out["weights"] @ sources, compression=compression)
        recon = jnp.mean((f - feats) ** 2, -1)
        spec = [f[:, :-1], feats[:, :-1]]
        if compression == "log":
            spec = [jnp.expm1(a) for a in spec]
        db = [20 * jnp.log10(jnp.maximum(a, 1e-9)) for a in spec]
        floor = jnp.max(db[1], -1, keepdims=True) - 80.0
        db_term = jnp.mean((jnp.maximum(db[0], floor) - jnp.maximum(db[1], floor)) ** 2, -1)
        kl = vae_lib.kl_nats(out["mean"], out["scale"])
        return jnp.sum((recon + 0.05 * db_term + 0.3 * kl) * mask) / 6.0

    want_value, want = jax.jit(jax.value_and_grad(by_hand))(params)
    grads = []
    for kind in ("fft", "linear"):
        lc = losses.LossConfig(beta=0.3, free_bits=0.0, db_weight=0.05, compression=compression,
                              spectrum=kind)
        spectra = spectral.source_spectra(sources) if kind == "linear" else None
        consts = (sources, jnp.asarray(data.mean), jnp.asarray(data.std), spectra)

        def loss(params, lc=lc, consts=consts):
            per, met = losses.per_example(params, m, "train", lc, feats, np.zeros(8, np.int32),
                                         eps, consts)
            return jnp.sum(per * mask) / 6.0, met

        (value, met), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        grads.append((value, met, g))
    (v_fft, m_fft, g_fft), (v_lin, m_lin, g_lin) = grads
    assert np.isfinite(float(want_value))
    assert float(v_fft) == pytest.approx(float(want_value), rel=1e-5)
    assert float(v_lin) == pytest.approx(float(want_value), rel=1e-5)
    for name in ("reconstruction", "spectrum_db", "kl_bits"):
        np.testing.assert_allclose(m_fft[name], m_lin[name], rtol=1e-4)
    assert float(jnp.min(m_fft["kl_active"])) == 1.0  # the KL term counts for every row
    flat_want = jax.tree.leaves(want)
    scale = max(float(jnp.abs(a).max()) for a in flat_want)
    assert scale > 0
    for got in (g_fft, g_lin):
        for a, b in zip(jax.tree.leaves(got), flat_want, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4 * scale)


def test_training_learns(tmp_path):
    """Pretraining learns to name every source; the VAE's loss then falls."""
    data = tiny_data()
    tc = tiny_config(epochs=8)
    # a decoder of 8 hidden units can stall on a plateau for some seeds; 32 learns every one
    tc = dataclasses.replace(tc, pretrain_epochs=60, learning_rate=3e-3,
                             model=dataclasses.replace(tc.model, decoder_hidden=32))
    loop.train_and_evaluate(data, tc, Workdir(tmp_path), progress=False)
    epochs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    pre = [r for r in epochs if r["phase"] == "pretrain"]
    vae = [r for r in epochs if r["phase"] == "train"]
    assert pre[0]["accuracy"] < 0.5 and pre[-1]["accuracy"] == 1.0
    assert vae[-1]["loss"] < 0.7 * vae[0]["loss"]
    assert vae[-1]["val_loss"] < vae[0]["val_loss"]


def test_a_damaged_latest_checkpoint_resumes_from_the_one_before(tmp_path, caplog):
    """A truncated file in the newest checkpoint (a full disk, a copy cut short): one warning,
    moved aside, resumed from the previous one, and the end equals an uninterrupted run."""
    import logging

    data = tiny_data()
    full_wd, cut_wd = Workdir(tmp_path / "full"), Workdir(tmp_path / "cut")
    loop.train_and_evaluate(data, tiny_config(epochs=3), full_wd, progress=False)
    loop.train_and_evaluate(data, tiny_config(epochs=2), cut_wd, progress=False)
    newest = tmp_path / "cut" / "checkpoints" / "3"
    files = sorted((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    big = files[-1]
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    caplog.set_level(logging.INFO, logger="drumlayer.training.loop")
    summary = loop.train_and_evaluate(data, tiny_config(epochs=3), cut_wd, progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("train: checkpoint 3 in ")
    assert "cannot be restored" in warnings[0] and "\n" not in warnings[0]
    assert summary["resumed_from"] == 2
    assert any(p.name.startswith("3.damaged-") for p in newest.parent.iterdir())
    _assert_same_params(_final_params(full_wd, tiny_config(epochs=3)),
                        _final_params(cut_wd, tiny_config(epochs=3)))


def test_a_checkpoint_of_random_bits_resumes_from_the_one_before(tmp_path, caplog):
    """The newest checkpoint restores without an error from Orbax but holds random bits (bytes
    overwritten inside a stored block, which nothing checksums): its values are checked
    (finite, in range), it is moved aside with one warning, and the run resumes from the one
    before and ends as an uninterrupted run does (not on a non-finite loss that names the
    damaged checkpoint as the last good one)."""
    import logging

    import orbax.checkpoint as ocp

    data = tiny_data()
    full_wd, cut_wd = Workdir(tmp_path / "full"), Workdir(tmp_path / "cut")
    loop.train_and_evaluate(data, tiny_config(epochs=3), full_wd, progress=False)
    loop.train_and_evaluate(data, tiny_config(epochs=2), cut_wd, progress=False)
    mngr = ocp.CheckpointManager(cut_wd.checkpoints.dir)
    saved = mngr.restore(3)
    rng = np.random.default_rng(0)
    garbage = jax.tree.map(lambda a: rng.integers(0, 2**32, a.shape, dtype=np.uint32).view(
        np.float32) if a.dtype == np.float32 else a, saved)
    mngr.delete(3)
    mngr.save(3, args=ocp.args.StandardSave(garbage))
    mngr.wait_until_finished()
    caplog.set_level(logging.INFO, logger="drumlayer.training.loop")
    summary = loop.train_and_evaluate(data, tiny_config(epochs=3), cut_wd, progress=False)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("drumlayer")]
    assert len(warnings) == 1 and warnings[0].startswith("train: checkpoint 3 in "), warnings
    assert "NaN, infinite or beyond" in warnings[0]
    assert summary["resumed_from"] == 2
    _assert_same_params(_final_params(full_wd, tiny_config(epochs=3)),
                        _final_params(cut_wd, tiny_config(epochs=3)))


def test_check_restored_names_the_array_that_is_not_a_models():
    target = {"a": jax.ShapeDtypeStruct((2, 3), jnp.float32), "n": jax.ShapeDtypeStruct((),
                                                                                         jnp.int32)}
    good = {"a": jnp.ones((2, 3)), "n": jnp.int32(7)}
    checkpoints.check_restored(good, target)
    for bad, says in (({**good, "a": good["a"].at[1, 2].set(jnp.nan)}, "['a'] holds 1 values"),
                      ({**good, "a": good["a"].at[0, 0].set(jnp.inf)}, "['a'] holds 1 values"),
                      ({**good, "a": good["a"].at[0, 1].set(3e30)}, "['a'] holds 1 values"),
                      ({**good, "a": jnp.ones((3, 2))}, "['a'] has shape (3, 2)"),
                      ({"a": good["a"]}, "1 arrays where the model has 2")):
        with pytest.raises(checkpoints.DamagedCheckpoint, match=re.escape(says)):
            checkpoints.check_restored(bad, target)
    checkpoints.check_restored({**good, "a": good["a"].at[0, 1].set(-9e29)}, target)


def test_a_rerun_after_training_ended_keeps_its_summary_and_metrics(tmp_path):
    """Killed after the last checkpoint but before the main job recorded it: the rerun trains
    nothing, and says what the run it resumes had said."""
    data, wd = tiny_data(), Workdir(tmp_path / "w")
    first = loop.train_and_evaluate(data, tiny_config(epochs=2), wd, progress=False)
    metrics = (tmp_path / "w" / "metrics.jsonl").read_text()
    again = loop.train_and_evaluate(data, tiny_config(epochs=2), wd, progress=False)
    assert again["resumed_from"] == 3 and np.isfinite(again["val_loss"])
    assert {k: v for k, v in again.items() if k != "resumed_from"} == {
        k: v for k, v in first.items() if k != "resumed_from"}
    assert (tmp_path / "w" / "metrics.jsonl").read_text() == metrics


def test_patience_stops_phase_2_and_a_resumed_run_stops_at_the_same_epoch(tmp_path):
    """With a learning rate of 0 the validation loss never improves on phase 2's first epoch:
    patience 2 stops after its third (epoch count 1 + 3), says why, and a run resumed from
    an earlier checkpoint (there: the end of a 2-epoch run) stops at the same epoch."""
    data = tiny_data()
    tc = dataclasses.replace(tiny_config(epochs=10), learning_rate=0.0, patience=2)
    full = loop.train_and_evaluate(data, tc, Workdir(tmp_path / "full"), progress=False)
    assert full["stopped"].startswith("early: validation loss ")
    assert "at phase-2 epoch 0 not bettered in 2 epochs (train.patience); stopped after epoch " \
           "2 of 10" in full["stopped"]
    records = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().split(
        "\n") if x]
    assert [r["epoch"] for r in records if r["kind"] == "epoch" and r["phase"] == "train"] == [
        0, 1, 2]
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints"))[-1] == "best"
    assert full["best_step"] == 2
    cut = Workdir(tmp_path / "cut")
    short = loop.train_and_evaluate(data, dataclasses.replace(tc, epochs=2), cut, progress=False)
    assert short["stopped"] == "after the last epoch (2)"
    resumed = loop.train_and_evaluate(data, tc, cut, progress=False)
    assert resumed["resumed_from"] == 3 and resumed["stopped"] == full["stopped"]
    assert resumed["best_step"] == 2
    again = loop.train_and_evaluate(data, tc, cut, progress=False)  # stopped: trains nothing
    assert again["resumed_from"] == 4 and again["stopped"] == full["stopped"]
    off = loop.train_and_evaluate(data, dataclasses.replace(tc, patience=0, epochs=4),
                                  Workdir(tmp_path / "off"), progress=False)
    assert off["stopped"] == "after the last epoch (4)"


def _final_params(wd, tc):
    return checkpoints.load_params(wd, vae_lib.create(6, tc.model), tiny_data().train.shape[1],
                             which="latest", tc=tc)


def _assert_same_params(a, b, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(y, x, atol=atol)


@pytest.mark.parametrize("every_s", [0, 1e9])
def test_sigterm_mid_epoch_saves_at_the_next_step_and_resumes_there(tmp_path, monkeypatch,
                                                                    every_s):
    """Deterministic: SIGTERM arrives while the host logs the first call of train epoch 1 (one
    step per call); the call after it is already on the device, so the state is saved after
    batch 1, and the rerun trains from batch 2. With checkpoints every epoch, or (1e9 s) only
    at the phases' ends: then the newest checkpoint is older than the saved state."""
    data = tiny_data()
    tc = dataclasses.replace(tiny_config(epochs=3), steps_per_call=1, checkpoint_every_s=every_s)
    full, cut = Workdir(tmp_path / "full"), Workdir(tmp_path / "cut")
    loop.train_and_evaluate(data, tc, full, progress=False)
    real = ledger._Ledger.add

    def sigterm_in_train_epoch_1(self, g, call):
        if (call.phase, call.epoch, call.first) == ("train", 1, 0):
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, g, call)

    monkeypatch.setattr(ledger._Ledger, "add", sigterm_in_train_epoch_1)
    with pytest.raises(loop.Preempted, match="stopped by SIGTERM in train epoch 1 after batch "
                                              "1;.*run the same command again"):
        loop.train_and_evaluate(data, tc, cut, progress=False)
    monkeypatch.undo()
    assert json.loads(open(cut.checkpoints.preempted_position).read())["batch"] == 2
    assert sorted(os.listdir(cut.checkpoints.dir)) == (["1", "2", "best", "preempted",
                                                        "preempted.json"] if every_s == 0 else
                                                       ["1", "best", "preempted",
                                                        "preempted.json"])
    summary = loop.train_and_evaluate(data, tc, cut, progress=False)
    assert (summary["resumed_from"], summary["resumed_batches"]) == (2, 2)
    assert not os.path.exists(cut.checkpoints.preempted_position)
    _assert_same_params(_final_params(full, tc), _final_params(cut, tc))
    steps = [json.loads(x) for x in open(cut.metrics)]
    assert [r["step"] for r in steps if r["kind"] == "step"] == list(range(1, 1 + 1 + 3 * 3))


def test_global_norm_is_optaxs():
    rng = np.random.default_rng(1)
    tree = {"a": rng.standard_normal((3, 40, 30)), "b": rng.standard_normal((50, 7)),
            "c": rng.standard_normal(9), "d": np.float32(-2.5)}
    tree = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
    want = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(tree)))
    assert float(optimizer.global_norm(tree)) == pytest.approx(want, rel=1e-6)
    norm = float(optax.tree.norm(tree))
    assert float(optimizer.global_norm(tree)) == pytest.approx(norm, rel=1e-6)


@pytest.mark.parametrize("norm", [0.5, 3.0], ids=["under", "over"])
def test_the_clipping_is_optaxs_and_fuses_into_adam(norm):
    rng = np.random.default_rng(0)
    grads = {"a": jnp.asarray(rng.standard_normal((40, 30)), jnp.float32),
             "b": jnp.asarray(rng.standard_normal(7), jnp.float32)}
    grads = jax.tree.map(lambda g: g * norm / optax.tree.norm(grads), grads)
    ours, _ = optimizer.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    theirs, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    for k in grads:
        if norm < 1.0:  # unclipped: the same bits
            np.testing.assert_array_equal(ours[k], grads[k])
        np.testing.assert_allclose(ours[k], theirs[k], rtol=2e-7, atol=0)
    assert float(optax.tree.norm(ours)) == pytest.approx(min(norm, 1.0), rel=1e-6)
    # the state restores optax's checkpoints: the same (empty) structure
    params = {"w": jnp.zeros((2049, 64))}
    tx, ref = optimizer.make_optimizer(1e-3, 1.0), optax.chain(optax.clip_by_global_norm(1.0),
                                                           optax.adam(1e-3))
    assert jax.tree.structure(tx.init(params)) == jax.tree.structure(ref.init(params))

    # why it exists: the clipped gradients are not written out before Adam uses them. Arrays
    # of the gradients' shape computed: the two moments and the parameters (optax's division
    # is a fourth)
    def step(params, g, state):
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    text = jax.jit(step).lower(params, params, tx.init(params)).compile().as_text()
    assert sum("f32[2049,64]" in line.split("fusion(")[0]
               for line in text.splitlines() if " fusion(" in line) == 3


def test_weight_decay_shrinks_every_parameter_by_lr_times_decay_apart_from_adam():
    """train.weight_decay: AdamW. With zero gradients Adam's step is 0, so the update is the
    decay alone: -lr x decay x p; with decay 0 the optimizer is plain Adam."""
    params = {"w": jnp.asarray([[1.0, -2.0], [0.5, 4.0]]), "b": jnp.asarray([3.0])}
    tx = optimizer.make_optimizer(1e-2, 1.0, weight_decay=0.1)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    for k in params:
        np.testing.assert_allclose(updates[k], -1e-2 * 0.1 * params[k], rtol=1e-6)
    plain = optimizer.make_optimizer(1e-2, 1.0, weight_decay=0.0)
    updates, _ = plain.update(zeros, plain.init(params), params)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))


def test_keep_best_keeps_the_lowest_validation_loss_and_ignores_nan():
    best = {"params": {"w": jnp.zeros(3)}, "val_loss": jnp.float32(np.inf),
            "step": jnp.int32(-1)}
    for step, loss in enumerate([3.0, 1.0, 2.0, np.nan, 1.5], start=1):
        best = checkpoints.keep_best(best, {"w": jnp.full(3, float(step))}, jnp.float32(loss),
                               jnp.int32(step))
    assert (int(best["step"]), float(best["val_loss"])) == (2, 1.0)
    np.testing.assert_array_equal(best["params"]["w"], [2.0, 2.0, 2.0])


def test_checkpoints_at_phase_ends_keep_the_same_best_and_latest(tmp_path):
    """Checkpoints only at the phases' ends (the best parameters tracked on the device every
    epoch) against checkpoints every epoch: the same best epoch (the one of lowest validation
    loss, which need not be the last) and parameters, the same final state, and only the
    phases' ends written."""
    data = tiny_data()
    runs = {}
    for every_s in (0, 1e9):
        # a learning rate at which validation rises after its best epoch (the 5th of 6), so
        # that 'best' and 'latest' differ: restoring one for the other fails here
        tc = dataclasses.replace(tiny_config(epochs=6), checkpoint_every_s=every_s,
                                 learning_rate=1e-1)
        wd = Workdir(tmp_path / str(every_s))
        summary = loop.train_and_evaluate(data, tc, wd, progress=False)
        best = checkpoints.load_params(wd, vae_lib.create(6, tc.model), data.train.shape[1])
        runs[every_s] = summary, best, _final_params(wd, tc), sorted(os.listdir(wd.checkpoints.dir))
    (s0, b0, f0, d0), (s1, b1, f1, d1) = runs[0], runs[1e9]
    vals = [json.loads(x)["val_loss"] for x in open(tmp_path / "0" / "metrics.jsonl")
            if '"epoch"' in x and "val_loss" in x]
    assert s0["best_step"] == s1["best_step"] == 2 + int(np.argmin(vals))
    assert s0["best_step"] < 7 and vals[-1] > min(vals)  # the fixture's point: best before last
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(
        jax.tree.leaves(b0), jax.tree.leaves(f0), strict=True)) > 1e-3
    _assert_same_params(b0, b1, atol=0)
    _assert_same_params(f0, f1, atol=0)
    assert d0[:-1] == ["6", "7"] and d1 == ["1", "7", "best"]


def test_steps_per_call_changes_nothing_but_speed(tmp_path):
    """One step per call, or a whole epoch (3 steps) in one lax.scan: the same run."""
    data = tiny_data()
    runs = []
    for spc in (1, 2, 16):
        tc = dataclasses.replace(tiny_config(epochs=2), steps_per_call=spc)
        loop.train_and_evaluate(data, tc, Workdir(tmp_path / str(spc)), progress=False)
        runs.append(_final_params(Workdir(tmp_path / str(spc)), tc))
    _assert_same_params(runs[0], runs[1])
    _assert_same_params(runs[0], runs[2])


def test_profile_writes_a_trace_of_a_training_call(tmp_path):
    tc = dataclasses.replace(tiny_config(epochs=1), steps_per_call=1, profile=True)
    wd = Workdir(tmp_path)
    loop.train_and_evaluate(tiny_data(), tc, wd, progress=False)
    traces = [p for p in (tmp_path / "profile").rglob("*") if p.is_file()]
    assert any(p.name.endswith((".xplane.pb", ".trace.json.gz")) for p in traces), traces


def test_the_spectrum_by_linearity_trains_like_the_fft(tmp_path, caplog):
    """train.spectrum 'linear' (the mix's STFT from the sources') and 'fft' (the STFT of the
    mix) compute the same loss up to rounding: the same run, the same parameters; 'auto' picks
    by backend and source count, and the log says which ran."""
    data, runs = tiny_data(), []
    for kind in ("fft", "linear"):
        tc = tiny_config(epochs=2)
        tc = dataclasses.replace(tc, loss=dataclasses.replace(tc.loss, spectrum=kind))
        with caplog.at_level("INFO", logger="drumlayer.training.loop"):
            s = loop.train_and_evaluate(data, tc, Workdir(tmp_path / kind), progress=False)
        runs.append((s, _final_params(Workdir(tmp_path / kind), tc)))
    assert "the mix's spectrum by the sources' STFTs (train.spectrum = linear" in caplog.text
    assert "the mix's spectrum by the FFT of the mix (train.spectrum = fft" in caplog.text
    assert runs[0][0]["val_loss"] == pytest.approx(runs[1][0]["val_loss"], rel=1e-4)
    _assert_same_params(runs[0][1], runs[1][1], atol=1e-5)
    assert losses.resolve_spectrum("auto", 20, "cpu") == "linear"
    assert losses.resolve_spectrum("auto", losses.LINEAR_MAX_SOURCES, "cpu") == "linear"
    assert losses.resolve_spectrum("auto", losses.LINEAR_MAX_SOURCES + 1, "cpu") == "fft"
    assert losses.resolve_spectrum("auto", 40, "cpu") == "fft"  # configs/snare.py: faster so
    assert losses.resolve_spectrum("auto", 40, "gpu") == "fft"
    assert losses.resolve_spectrum("linear", 200, "gpu") == "linear"
    with pytest.raises(ValueError, match="train.spectrum must be one of"):
        losses.resolve_spectrum("dft", 40)


def test_even_calls_splits_an_epoch_into_calls_of_one_length():
    assert [loop.even_calls(n, 16) for n in (33, 32, 100, 4, 1, 17)] == [11, 16, 10, 4, 1, 9]
    for n in range(1, 70):
        for most in range(1, 20):
            d = loop.even_calls(n, most)
            assert 1 <= d <= min(most, n)
            lengths = {min(d, n - lo) for lo in range(0, n, d)}
            one_length = [c for c in range(-(-min(most, n) // 2), min(most, n) + 1) if n % c == 0]
            # one length when a divisor from most / 2 to most allows it (the largest), else
            # the fewest calls
            assert lengths == {d} if one_length else -(-n // d) == -(-n // min(most, n))
            if one_length:
                assert d == max(one_length)


def test_standardisation_is_per_feature_with_a_floor_by_hand():
    """The encoder's input: each feature's own mean and std over the training rows; a feature
    that never varies gets a floor (1e-3 of the largest std), not a division by zero."""
    feats = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0], [5.0, 50.0, 5.0]], np.float32)
    mean, std = loop.standardisation(feats)
    np.testing.assert_allclose(mean, [3.0, 30.0, 5.0])
    sd = np.sqrt(8.0 / 3.0)  # population std of (1, 3, 5)
    np.testing.assert_allclose(std, [sd, 10 * sd, 1e-3 * 10 * sd + 1e-8], rtol=1e-6)
