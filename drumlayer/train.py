"""Training the layering VAE: losses, the data-parallel step, the two phases, checkpoints.

Phase 1 (pretraining, the paper's Section 3.4): the k sources are the inputs and the decoder's
logits are trained to name each one (cross-entropy against its one-hot index). Phase 2: the
VAE reconstructs target features through the mix and the differentiable feature extractor:

    loss = MSE(features(weights @ sources), features(target))
           + beta * mean_over_examples(max(KL - free_bits * ln 2, 0))

The step is data-parallel over a 1-D mesh of every device (axis 'data'): the batch is sharded,
parameters are replicated, and per-shard gradient sums are all-reduced with lax.psum and divided
by the global example count: lax.pmean of equal shards, and still exact when a padded last batch
leaves the shards uneven. It is jax.shard_map under jax.jit, so one code path serves 1 CPU, 8
accelerators or many hosts (jax.distributed). Everything random (data order, the VAE's noise)
comes from numpy seeded by (seed, phase, epoch, batch), so a resumed run and a run on another
number of devices see exactly the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from drumlayer import model as model_lib
from drumlayer import spectral
from drumlayer.errors import DrumlayerError
from drumlayer.workdir import Workdir, read_json, write_json

log = logging.getLogger(__name__)
PHASES = ("pretrain", "train")


class NonFiniteLoss(DrumlayerError, RuntimeError):
    """The loss became NaN or infinite; the run stops and the last good checkpoint stays."""


class Preempted(DrumlayerError):
    """SIGTERM or Ctrl-C stopped training; the state was saved at a step boundary."""


class _StopRequest:
    """SIGTERM and SIGINT set a flag that the training loop checks between steps (a second
    Ctrl-C interrupts at once). Only a single-process run in its main thread installs them: the
    processes of a multi-host run would have to agree on the step first."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self):
        if jax.process_count() == 1:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._old[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread
                    break
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    beta: float = 0.02
    free_bits: float = 1000.0
    n_fft: int = 4096
    hop: int = 512
    compression: str = "linear"


@dataclasses.dataclass
class Data:
    """Everything a run trains on, as host arrays."""

    sources: np.ndarray  # [k, S] source audio
    source_features: np.ndarray  # [k, D]
    train: np.ndarray  # [N, D] target features
    val: np.ndarray  # [M, D]
    mean: np.ndarray  # [D] standardisation of the encoder's input (train statistics)
    std: np.ndarray  # [D]


def standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (floored) of features [N, D]."""
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, 1e-3 * std.max() + 1e-8).astype(np.float32)


def initialize_distributed() -> bool:
    """Join a multi-process run when DRUMLAYER_COORDINATOR (host:port), DRUMLAYER_NUM_PROCESSES
    and DRUMLAYER_PROCESS_ID are set (launch/multihost.sh sets them); on TPU pods and SLURM,
    jax.distributed finds these by itself when DRUMLAYER_COORDINATOR is 'auto'. Returns whether
    it initialised. Must run before anything touches a device."""
    addr = os.environ.get("DRUMLAYER_COORDINATOR")
    if not addr:
        return False
    if addr == "auto":
        jax.distributed.initialize()
        return True
    if os.environ.get("JAX_PLATFORMS", "") == "cpu" or not _has_accelerator():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=addr,
                               num_processes=int(os.environ["DRUMLAYER_NUM_PROCESSES"]),
                               process_id=int(os.environ["DRUMLAYER_PROCESS_ID"]))
    return True


def _has_accelerator() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is not None
               for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu"))


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",))


def create_state(model: model_lib.LayeringVAE, dim: int, tx, seed: int) -> train_state.TrainState:
    params = model_lib.init_params(model, dim, seed)
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def make_optimizer(learning_rate: float, grad_clip: float):
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(learning_rate))


def _checkpoint(state: train_state.TrainState) -> dict:
    """What a 'latest' checkpoint holds (a 'best' one holds only the params)."""
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


# ----------------------------------------------------------------------------- losses


def per_example(params, model, phase: str, lc: LossConfig, feats, labels, eps, consts):
    """Per-example loss and metrics. feats [B, D] raw features, labels [B] (pretraining),
    eps [B, latent]. consts: sources [k, S], mean [D], std [D]."""
    sources, mean, std = consts
    out = model.apply({"params": params}, (feats - mean) / std, eps)
    w = out["weights"]
    m = {"active_layers": jnp.sum(w > 0.01, axis=-1).astype(jnp.float32),
         "max_weight": jnp.max(w, axis=-1)}
    if phase == "pretrain":
        ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels)
        m["accuracy"] = (jnp.argmax(out["logits"], -1) == labels).astype(jnp.float32)
        return ce, {**m, "cross_entropy": ce}
    mixed = model_lib.mix(w, sources)
    f = spectral.features(mixed, lc.n_fft, lc.hop, compression=lc.compression)
    recon = jnp.mean((f - feats) ** 2, axis=-1)
    kl = model_lib.kl_nats(out["mean"], out["scale"])
    kl_term = lc.beta * jnp.maximum(kl - lc.free_bits * math.log(2.0), 0.0)
    return recon + kl_term, {**m, "reconstruction": recon, "kl_bits": kl / math.log(2.0),
                             "kl_active": (kl_term > 0).astype(jnp.float32)}


def _masked_sums(loss, metrics, mask, count):
    total = jnp.sum(loss * mask) / count
    sums = {k: jnp.sum(v * mask) / count for k, v in metrics.items()}
    return total, {"loss": total, **sums}


def make_steps(model, mesh: Mesh, phase: str, lc: LossConfig):
    """(train_step, eval_step), jit-compiled shard_maps over mesh axis 'data'.

    train_step(state, feats, labels, eps, mask, count, consts) -> (state, metrics)
    eval_step(params, feats, labels, eps, mask, count, consts) -> metrics
    Batch arrays are sharded on their leading axis; count (the number of real examples in the
    global batch) and consts are replicated. Metrics are means over the real examples.
    """
    batch_specs = (P("data"), P("data"), P("data"), P("data"))

    def loss_fn(params, feats, labels, eps, mask, count, consts):
        loss, metrics = per_example(params, model, phase, lc, feats, labels, eps, consts)
        return _masked_sums(loss, metrics, mask, count)

    def local_train(state, feats, labels, eps, mask, count, consts):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        # The replicated parameters are cast to per-shard values first, so each shard's
        # gradient is its own sum; differentiating the replicated ones directly would already
        # sum over the shards, and the psum below would then count every example n_dev times.
        local = jax.lax.pcast(state.params, "data", to="varying")
        (_, metrics), grads = grad_fn(local, feats, labels, eps, mask, count, consts)
        grads = jax.lax.psum(grads, "data")
        metrics = jax.lax.psum(metrics, "data")
        metrics["grad_norm"] = optax.tree.norm(grads)
        state = state.apply_gradients(grads=grads)
        metrics["param_norm"] = optax.tree.norm(state.params)
        return state, metrics

    def local_eval(params, feats, labels, eps, mask, count, consts):
        return jax.lax.psum(loss_fn(params, feats, labels, eps, mask, count, consts)[1], "data")

    train_step = jax.jit(jax.shard_map(local_train, mesh=mesh,
                                       in_specs=(P(), *batch_specs, P(), P()),
                                       out_specs=(P(), P())), donate_argnums=0)
    eval_step = jax.jit(jax.shard_map(local_eval, mesh=mesh,
                                      in_specs=(P(), *batch_specs, P(), P()), out_specs=P()))
    return train_step, eval_step


# ----------------------------------------------------------------------------- batches


def batches(n: int, batch: int, rng: np.random.Generator | None):
    """Index arrays of a global batch each, padded with -1 to `batch` (shuffled if rng)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch):
        idx = order[i : i + batch]
        yield np.pad(idx, (0, batch - idx.size), constant_values=-1)


def put(mesh: Mesh, x: np.ndarray, spec) -> jax.Array:
    """A host array, identical on every process, as a global array sharded by spec."""
    sharding = NamedSharding(mesh, spec)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def global_batch(mesh, feats: np.ndarray, idx: np.ndarray, latent: int,
                 seed_key: tuple | None):
    """(feats, labels, eps, mask, count) for one global batch of indices (-1: padding).
    seed_key None: eps = 0, i.e. z = the encoder's mean (evaluation)."""
    real = idx >= 0
    safe = np.where(real, idx, 0)
    eps = (np.zeros((idx.size, latent), np.float32) if seed_key is None else
           np.random.default_rng(seed_key).standard_normal((idx.size, latent)).astype(np.float32))
    arrays = (feats[safe].astype(np.float32), safe.astype(np.int32), eps,
              real.astype(np.float32))
    return (*(put(mesh, a, P("data")) for a in arrays),
            put(mesh, np.float32(max(1, real.sum())), P()))


# ----------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch: int = 64
    learning_rate: float = 1e-3
    grad_clip: float = 1.0
    pretrain_epochs: int = 50
    epochs: int = 150
    seed: int = 0
    loss: LossConfig = LossConfig()
    model: model_lib.ModelConfig = model_lib.ModelConfig()


class MetricsWriter:
    """metrics.jsonl (one JSON object a line) and TensorBoard event files; process 0 only."""

    def __init__(self, wd: Workdir):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        self.f = open(wd.metrics, "a")  # noqa: SIM115
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(wd.tensorboard)

    def write(self, step: int, record: dict) -> None:
        if not self.active:
            return
        self.f.write(json.dumps({"step": step, **record}) + "\n")
        for k, v in record.items():
            if isinstance(v, (int, float)) and k not in ("epoch",):
                self.tb.add_scalar(f"{record.get('phase', '')}/{record.get('kind', '')}/{k}",
                                   v, step)

    def close(self) -> None:
        if self.active:
            self.f.close()
            self.tb.close()


def _to_host(metrics) -> dict:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def train_and_evaluate(data: Data, tc: TrainConfig, wd: Workdir, progress: bool = True) -> dict:
    """Both phases with checkpoints in WORKDIR/checkpoints (resumed automatically) and the best
    parameters by validation loss in WORKDIR/checkpoints/best. Returns the final summary."""
    mesh = make_mesh()
    n_dev = mesh.devices.size
    if tc.batch % n_dev:
        raise ValueError(f"train.batch = {tc.batch} must be a multiple of the {n_dev} devices")
    k, dim = data.source_features.shape
    model = model_lib.create(k, tc.model)
    tx = make_optimizer(tc.learning_rate, tc.grad_clip)
    state = create_state(model, dim, tx, tc.seed)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    consts = tuple(put(mesh, np.asarray(a, np.float32), P())
                   for a in (data.sources, data.mean, data.std))
    ckpt_dir = wd.checkpoints.dir
    # Asynchronous saves overlap the next epoch; with several processes, synchronous saves keep
    # every process at the same barrier.
    asynchronous = jax.process_count() == 1
    latest = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
        max_to_keep=2, create=True, enable_async_checkpointing=asynchronous))
    best = ocp.CheckpointManager(wd.checkpoints.best, options=(
        ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m["val_loss"],
                                     best_mode="min", create=True,
                                     enable_async_checkpointing=asynchronous)))
    done = 0  # epochs completed, pretraining first
    if latest.latest_step() is not None:
        done, restored = restore_newest(latest, _checkpoint(state))
        if restored is not None:
            state = state.replace(**restored)
            log.info("train: resumed from %s/%d (%d epochs done)", ckpt_dir, done, done)
    skip, partial = 0, {}  # batches of epoch `done` already trained, and their metric sums
    position = read_json(wd.checkpoints.preempted_position)
    if position and position["epoch"] == done:
        state = state.replace(**ocp.StandardCheckpointer().restore(
            wd.checkpoints.preempted, _checkpoint(state)))
        skip, partial = position["batch"], position["sums"]
        log.info("train: resumed mid-epoch from %s (%d epochs and %d batches done)",
                 wd.checkpoints.preempted, done, skip)
    elif position:  # saved before a later epoch finished: nothing to resume from
        _clear_preempted(wd)
    start = done
    writer = MetricsWriter(wd)
    steps = {ph: make_steps(model, mesh, ph, tc.loss) for ph in PHASES}
    total = tc.pretrain_epochs + tc.epochs
    summary: dict = {}
    bar = tqdm(total=total, initial=done, desc="epochs", unit="epoch", disable=not progress,
               file=sys.stderr)
    stop = _StopRequest()
    try:
        stop.__enter__()
        for g in range(done, total):
            phase = "pretrain" if g < tc.pretrain_epochs else "train"
            epoch = g if phase == "pretrain" else g - tc.pretrain_epochs
            feats = data.source_features if phase == "pretrain" else data.train
            train_step, eval_step = steps[phase]
            sums: dict[str, float] = dict(partial) if g == start else {}
            t0 = time.time()
            rng = np.random.default_rng([tc.seed, PHASES.index(phase), epoch])
            for b, idx in enumerate(batches(len(feats), tc.batch, rng)):
                if g == start and b < skip:
                    continue  # trained before the preemption
                key = (tc.seed, PHASES.index(phase), epoch, b)
                args = global_batch(mesh, feats, idx, tc.model.latent, key)
                state, metrics = train_step(state, *args, consts)
                m = _to_host(metrics)
                if not math.isfinite(m["loss"]):
                    raise NonFiniteLoss(
                        f"non-finite loss ({m['loss']}) in {phase} epoch {epoch} batch {b}; the "
                        f"last good checkpoint is {ckpt_dir}/{latest.latest_step()}. Lower "
                        "train.learning_rate, or look for NaN in the features.")
                n_real = float((idx >= 0).sum())
                for key_, v in m.items():
                    sums[key_] = sums.get(key_, 0.0) + v * n_real
                sums["_n"] = sums.get("_n", 0.0) + n_real
                writer.write(int(state.step), {"kind": "step", "phase": phase, "epoch": epoch,
                                               **m})
                if stop.signum is not None:
                    latest.wait_until_finished()
                    _save_preempted(wd, state, {"epoch": g, "batch": b + 1, "sums": sums})
                    name = signal.Signals(stop.signum).name
                    raise Preempted(
                        f"stopped by {name} in {phase} epoch {epoch} after batch {b}; the state "
                        f"is saved in {wd.checkpoints.preempted}: run the same command again to "
                        "resume from there")
            record = {k_: v / sums["_n"] for k_, v in sums.items() if k_ != "_n"}
            record["seconds"] = time.time() - t0
            record["examples_per_s"] = sums["_n"] / record["seconds"]
            if phase == "train":
                val = validate(eval_step, state.params, mesh, data.val, tc, consts)
                record.update({f"val_{k_}": v for k_, v in val.items()})
            writer.write(int(state.step), {"kind": "epoch", "phase": phase, "epoch": epoch,
                                           **record})
            latest.save(g + 1, args=ocp.args.StandardSave(_checkpoint(state)))
            if g == start and skip:
                _clear_preempted(wd)
            if phase == "train":
                best.save(g + 1, args=ocp.args.StandardSave({"params": state.params}),
                          metrics={"val_loss": record["val_loss"]})
            summary = {"phase": phase, "epoch": epoch, **record}
            bar.update()
            bar.set_postfix(phase=phase, loss=f"{record['loss']:.4g}")
            if stop.signum is not None:  # it came during validation or the save
                raise Preempted(f"stopped by {signal.Signals(stop.signum).name} after {phase} "
                                f"epoch {epoch}; its checkpoint is in {ckpt_dir}: run the same "
                                "command again to resume")
    finally:
        stop.__exit__()
        bar.close()
        latest.wait_until_finished()
        best.wait_until_finished()
        writer.close()
    summary["best_step"] = best.best_step()
    summary["resumed_from"] = start  # epochs already done when this call began
    summary["resumed_batches"] = skip  # and batches of the next one (after a preemption)
    return summary


def _save_preempted(wd: Workdir, state, position: dict) -> None:
    """The state mid-epoch, and where in the epoch it is (position.json written last)."""
    _clear_preempted(wd)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(wd.checkpoints.preempted, _checkpoint(state))
    ckptr.wait_until_finished()
    write_json(wd.checkpoints.preempted_position, position)


def _clear_preempted(wd: Workdir) -> None:
    if os.path.exists(wd.checkpoints.preempted_position):
        os.remove(wd.checkpoints.preempted_position)
    shutil.rmtree(wd.checkpoints.preempted, ignore_errors=True)


def restore_newest(mngr: ocp.CheckpointManager, target) -> tuple[int, dict | None]:
    """(step, state) of the newest checkpoint that restores into target, or (0, None). A damaged
    one (a truncated file after a full disk, a copy cut short) is moved aside to
    STEP.damaged-TIME with one line saying which step and what is wrong, and the one before it
    is tried."""
    where = os.fspath(mngr.directory)
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            return step, mngr.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # noqa: BLE001 - Orbax and TensorStore raise many kinds
            aside = os.path.join(where, f"{step}.damaged-{int(time.time())}")
            os.replace(os.path.join(where, str(step)), aside)
            mngr.reload()
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            log.warning("train: checkpoint %d in %s cannot be restored (%s: %s); moved to %s",
                        step, where, type(e).__name__, reason, aside)
    log.warning("train: no checkpoint in %s restores: training starts from the beginning "
                "(the damaged ones were moved aside; delete them when done looking)", where)
    return 0, None


def validate(eval_step, params, mesh, feats: np.ndarray, tc: TrainConfig, consts) -> dict:
    """Mean metrics over every example of feats (the last batch padded and masked), with z at
    the encoder's mean."""
    sums: dict[str, float] = {}
    n = 0.0
    for idx in batches(len(feats), tc.batch, None):
        args = global_batch(mesh, feats, idx, tc.model.latent, None)
        m = _to_host(eval_step(params, *args, consts))
        n_real = float((idx >= 0).sum())
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v * n_real
        n += n_real
    return {k: v / max(n, 1.0) for k, v in sums.items()}


def load_params(wd: Workdir, model: model_lib.LayeringVAE, dim: int, which: str = "best",
                tc: TrainConfig | None = None) -> dict:
    """Parameters from WORKDIR/checkpoints: 'best' by validation, or 'latest' (whose checkpoint
    also holds the optimiser's state: give the TrainConfig that made it). The restore target is
    abstract (jax.eval_shape): nothing is initialised to be overwritten."""
    where = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    if which == "best":
        path, target = wd.checkpoints.best, {"params": model_lib.abstract_params(model, dim)}
    elif which == "latest":
        if tc is None:
            raise ValueError("load_params(which='latest') needs the TrainConfig")
        tx = make_optimizer(tc.learning_rate, tc.grad_clip)
        path = wd.checkpoints.dir
        target = jax.eval_shape(lambda: _checkpoint(create_state(model, dim, tx, tc.seed)))
    else:
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    target = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=where), target)
    mngr = ocp.CheckpointManager(path)
    step = mngr.best_step() if which == "best" else mngr.latest_step()
    if step is None:
        raise FileNotFoundError(f"no {which} checkpoint in {path}")
    return mngr.restore(step, args=ocp.args.StandardRestore(target))["params"]
