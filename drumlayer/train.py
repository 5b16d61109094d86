"""Training the layering VAE: losses, the data-parallel step, the two phases, checkpoints.

Phase 1 (pretraining, the paper's Section 3.4): the k sources are the inputs and the decoder's
logits are trained to name each one (cross-entropy against its one-hot index). Phase 2: the
VAE reconstructs target features through the mix and the differentiable feature extractor:

    loss = MSE(features(weights @ sources), features(target))
           + db_weight * MSE(dB(spectrum of the mix), dB(spectrum of the target))
           + beta * mean_over_examples(max(KL - free_bits * ln 2, 0))

where the dB spectra are the features' RMS-weighted spectra in dB, both floored DB_RANGE below
the target's loudest bin (db_weight 0: the paper's loss).

The step is data-parallel over a 1-D mesh of every device (axis 'data'): each device takes its
slice of the global batch, parameters are replicated, and per-shard gradient sums are all-reduced
with lax.psum and divided by the global example count: lax.pmean of equal shards, and still exact
when a padded last batch leaves the shards uneven. It is jax.shard_map under jax.jit, so one
code path serves 1 CPU, 8 accelerators or many hosts (jax.distributed); on a single device the
same function runs without the shard_map and its collectives.

Training is device-resident: the targets, sources and standardisation are put on the devices
once (replicated: ~17 MB at the paper's scale, and every device gathers its own rows), each
epoch's order is a permutation drawn on the device, and up to `train.steps_per_call` steps run in
one call as a lax.scan (calls of one length: `even_calls`), their metrics coming back to the
host once per call while the next call already runs. Everything random comes from jax.random
keys folded from (seed, phase, epoch) and the batch's number, so a resumed run and a run on
another number of devices see exactly the same numbers.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
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

from drumlayer import ahead, spectral
from drumlayer import model as model_lib
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
    db_weight: float = 0.0
    n_fft: int = 4096
    hop: int = 512
    compression: str = "linear"
    spectrum: str = "fft"  # how the mix's spectrum is computed (SPECTRA); not what


# How the loss computes the spectrum of a mix: "fft" transforms the mix, "linear" mixes the
# sources' STFTs (`spectral.mix_spectrum`); the same up to float rounding. "auto" picks "linear"
# on a CPU for at most LINEAR_MAX_SOURCES sources, where it measured faster (the step in one
# process, alternating calls: 1.19x at 20 sources, 1.02x at 30; 0.93x at 40, since the FFT
# path computes its gradient in the forward pass, in chunks of 8 clips), "fft" otherwise.
SPECTRA = ("auto", "fft", "linear")
LINEAR_MAX_SOURCES = 32


def resolve_spectrum(kind: str, k: int, backend: str | None = None) -> str:
    """'fft' or 'linear' for `kind` (one of SPECTRA) with k sources on `backend` (JAX's
    default when None)."""
    if kind not in SPECTRA:
        raise ValueError(f"train.spectrum must be one of {SPECTRA}, got {kind!r}")
    if kind != "auto":
        return kind
    backend = backend or jax.default_backend()
    return "linear" if backend == "cpu" and k <= LINEAR_MAX_SOURCES else "fft"


def make_consts(mesh: Mesh, sources: np.ndarray, mean: np.ndarray, std: np.ndarray,
                lc: LossConfig) -> tuple:
    """What every step reads, replicated on the mesh: (sources [k, S], mean [D], std [D],
    the sources' STFTs [T, k, n_fft] for lc.spectrum == 'linear', else None)."""
    consts = tuple(put(mesh, np.asarray(a, np.float32)) for a in (sources, mean, std))
    spectra = None
    if lc.spectrum == "linear":
        spectra = spectral.source_spectra(consts[0], lc.n_fft, lc.hop)
        spectra = jax.device_put(spectra, NamedSharding(mesh, P()))
    return (*consts, spectra)


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
    """Fresh parameters and optimizer state, as one compiled program (op by op: seconds)."""

    def create():
        params = model_lib.init_params(model, dim, seed)
        return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    return jax.jit(create)()


def make_optimizer(learning_rate: float, grad_clip: float):
    return optax.chain(clip_by_global_norm(grad_clip), optax.adam(learning_rate))


def global_norm(tree) -> jax.Array:
    """optax.tree.norm: the square root of the sum of every leaf's squares, each matrix summed
    along its last axis first, behind an optimization barrier. Otherwise XLA merges the two
    sums and rewrites the gradient's (of the encoder's 3M-entry kernel) as sums of 32 x 32
    windows, which its CPU backend ran at ~2.5 GB/s: ~5 ms of the paper-scale step, which runs
    0.97x without them (two runs in one process). The same up to float rounding."""

    def squares(x):
        if x.ndim < 2:
            return jnp.sum(x * x)
        return jnp.sum(jax.lax.optimization_barrier(jnp.sum(x * x, axis=-1)))

    return jnp.sqrt(sum(squares(x) for x in jax.tree.leaves(tree)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """optax.clip_by_global_norm, the gradients multiplied by one scalar, min(1, max_norm /
    norm), where optax divides each by the norm: XLA then fuses the scaling into Adam's two
    moment updates, where optax's division was a pass of its own over every gradient (at the
    paper's scale on a CPU, a 12 MB write and two reads a step: the step 2-5% faster). The
    same updates up to float rounding; unclipped ones are the same bits (times 1.0), and the
    state is optax's (empty), so checkpoints restore either way."""

    def update(updates, state, params=None):
        del params
        norm = global_norm(updates)
        scale = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def _checkpoint(state: train_state.TrainState) -> dict:
    """What a 'latest' checkpoint holds (a 'best' one holds only the params)."""
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


# ----------------------------------------------------------------------------- losses


def per_example(params, model, phase: str, lc: LossConfig, feats, labels, eps, consts):
    """Per-example loss and metrics. feats [B, D] raw features, labels [B] (pretraining),
    eps [B, latent]. consts: `make_consts`'s."""
    sources, mean, std, spectra = consts
    out = model.apply({"params": params}, (feats - mean) / std, eps)
    w = out["weights"]
    m = {"active_layers": jnp.sum(w > 0.01, axis=-1).astype(jnp.float32),
         "max_weight": jnp.max(w, axis=-1)}
    if phase == "pretrain":
        ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels)
        m["accuracy"] = (jnp.argmax(out["logits"], -1) == labels).astype(jnp.float32)
        return ce, {**m, "cross_entropy": ce}
    mixed = model_lib.mix(w, sources)
    d = feats.shape[-1]

    def spectrum_loss(spectrum, target):
        """The loss's spectral terms, row by row: [B, F], [B, F] -> [B]."""
        f = spectral.compress(spectrum, lc.compression)
        loss = jnp.sum((f - target) ** 2, axis=-1) / d
        if lc.db_weight:
            loss = loss + lc.db_weight * spectrum_db_distance(f, target, lc.compression)
        return loss

    if lc.spectrum == "linear":
        spectrum = spectral.mix_spectrum(w, mixed, spectra, lc.n_fft, lc.hop)
        spec_loss = spectrum_loss(spectrum, feats[:, :-1])
        spectrum = jax.lax.stop_gradient(spectrum)
    else:  # one STFT and its inverse for value and gradient (spectral.spectrum_loss)
        spec_loss, spectrum = spectral.spectrum_loss(mixed, feats[:, :-1], spectrum_loss,
                                                     lc.n_fft, lc.hop)
    lat = spectral.soft_log_attack_time(mixed)
    # The metrics, from the same numbers without gradients; the loss: the same MSE over all
    # D features (split into its spectral terms and the attack time's) + the KL term.
    f = jnp.concatenate([spectral.compress(spectrum, lc.compression),
                         jax.lax.stop_gradient(lat)[:, None]], axis=-1)
    kl = model_lib.kl_nats(out["mean"], out["scale"])
    kl_term = lc.beta * jnp.maximum(kl - lc.free_bits * math.log(2.0), 0.0)
    m = {**m, "reconstruction": jnp.mean((f - feats) ** 2, axis=-1), "kl_bits": kl / math.log(2.0),
         "kl_active": (kl_term > 0).astype(jnp.float32)}
    if lc.db_weight:
        m["spectrum_db"] = spectrum_db_distance(f[:, :-1], feats[:, :-1], lc.compression)
    return spec_loss + (lat - feats[:, -1]) ** 2 / d + kl_term, m


DB_RANGE = 80.0  # dB below the target's loudest bin where the dB term stops counting


def spectrum_db_distance(f: jax.Array, target: jax.Array, compression: str) -> jax.Array:
    """Mean squared dB difference of the (compressed) RMS-weighted spectra f and target
    [B, F], both floored DB_RANGE below the target's loudest bin: -> [B]."""
    spec = [x if compression == "linear" else jnp.expm1(x) for x in (f, target)]
    db = [20.0 * jnp.log10(jnp.maximum(s, 1e-9)) for s in spec]
    floor = jnp.max(db[1], axis=-1, keepdims=True) - DB_RANGE
    d = jnp.maximum(db[0], floor) - jnp.maximum(db[1], floor)
    return jnp.mean(d * d, axis=-1)


def _masked_sums(loss, metrics, mask, count):
    total = jnp.sum(loss * mask) / count
    sums = {k: jnp.sum(v * mask) / count for k, v in metrics.items()}
    return total, {"loss": total, **sums}


def epoch_keys(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(permutation key, noise key) of an epoch; rng [3] int32 is (seed, phase index, epoch)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(rng[0]), rng[1]), rng[2])
    perm, noise = jax.random.split(key)
    return perm, noise


def make_steps(model, mesh: Mesh, phase: str, lc: LossConfig, batch: int, latent: int):
    """(train_steps, evaluate): jit-compiled shard_maps over mesh axis 'data' (on one device
    the same functions without collectives).

    train_steps(state, order, batch_ids, rng, table, consts) -> (state, metrics, n_real)
        order [nb, batch] int32: the epoch's rows of table, batch by batch (-1 pads the last);
        batch_ids [L] int32: the batches to train now, in one lax.scan (L steps, one call);
        rng [3] int32: (seed, phase index, epoch); batch b's noise key is folded from it and b;
        table [n, D]: the phase's features (pretraining: the sources', a row's index its label);
        consts: `make_consts`'s.
        metrics {name: [L]}: each step's means over its real examples; n_real [L] their count.
    evaluate(params, table, consts) -> {name: mean over every row of table}, z at the mean, in
        blocks of `batch` rows (a smaller table: one block of its size, rounded up to the devices).

    Every input is replicated; device i trains rows [i * batch / n_dev, (i + 1) * batch / n_dev)
    of each global batch, and draws the whole batch's noise to take its own rows, so the numbers
    do not depend on the device count. The state is donated.
    """
    n_dev = mesh.devices.size

    def local_batch(idx, eps, table):
        """This device's rows of the global batch idx [b] (-1: padding; b a multiple of n_dev),
        eps [b, latent] -> (feats, labels, eps, mask, count): what loss_fn takes."""
        per = idx.shape[0] // n_dev
        start = jax.lax.axis_index("data") * per if n_dev > 1 else 0
        mine = jax.lax.dynamic_slice_in_dim(idx, start, per)
        real = mine >= 0
        safe = jnp.where(real, mine, 0)
        count = jnp.maximum(1.0, jnp.sum(idx >= 0).astype(jnp.float32))
        return (table[safe], safe, jax.lax.dynamic_slice_in_dim(eps, start, per),
                real.astype(jnp.float32), count)

    def loss_fn(params, feats, labels, eps, mask, count, consts):
        loss, metrics = per_example(params, model, phase, lc, feats, labels, eps, consts)
        return _masked_sums(loss, metrics, mask, count)

    def over_devices(tree):
        """The sum over the devices' shards (one device: the tree itself)."""
        return jax.lax.psum(tree, "data") if n_dev > 1 else tree

    def local_train(state, feats, labels, eps, mask, count, consts):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        # The replicated parameters are cast to per-shard values first, so each shard's
        # gradient is its own sum; differentiating the replicated ones directly would already
        # sum over the shards, and the psum below would then count every example n_dev times.
        local = jax.lax.pcast(state.params, "data", to="varying") if n_dev > 1 else state.params
        (_, metrics), grads = grad_fn(local, feats, labels, eps, mask, count, consts)
        grads = over_devices(grads)
        metrics = over_devices(metrics)
        metrics["grad_norm"] = global_norm(grads)
        state = state.apply_gradients(grads=grads)
        metrics["param_norm"] = global_norm(state.params)
        return state, metrics

    def local_steps(state, order, batch_ids, rng, table, consts):
        noise = epoch_keys(rng)[1]

        def one(state, b):
            eps = jax.random.normal(jax.random.fold_in(noise, b), (batch, latent))
            args = local_batch(order[b], eps, table)
            state, metrics = local_train(state, *args, consts)
            return state, (metrics, args[-1])

        state, (metrics, n_real) = jax.lax.scan(one, state, batch_ids)
        return state, metrics, n_real

    def local_evaluate(params, table, consts):
        n = table.shape[0]
        # A table smaller than a batch (the validation set: 15 clips at the paper's scale) is
        # one block of its own size, rounded up to the devices: 20 ms against 47 ms for a
        # block of 64 on a CPU. Rows are independent: the same numbers up to float rounding.
        size = min(batch, -(-n // n_dev) * n_dev)
        nb = -(-n // size)
        rows = jnp.arange(nb * size, dtype=jnp.int32)
        order = jnp.where(rows < n, rows, -1).reshape(nb, size)
        eps = jnp.zeros((size, latent), table.dtype)

        def one(sums, idx):
            args = local_batch(idx, eps, table)
            m = over_devices(loss_fn(params, *args, consts)[1])
            return jax.tree.map(lambda s, v: s + v * args[-1], sums, m), None

        zeros = jax.eval_shape(lambda: loss_fn(params, *local_batch(order[0], eps, table),
                                               consts)[1])
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), zeros)
        sums, _ = jax.lax.scan(one, zeros, order)
        return jax.tree.map(lambda v: v / n, sums)

    def data_parallel(fn):
        # One device: the same function with no collectives, where XLA would still copy every
        # gradient through an all-reduce of one (~3 ms of a 0.1 s step at the paper's scale on
        # a CPU).
        if n_dev == 1:
            return fn
        return jax.shard_map(fn, mesh=mesh, in_specs=P(), out_specs=P())

    train_steps = jax.jit(data_parallel(local_steps), donate_argnums=0)
    evaluate = jax.jit(data_parallel(local_evaluate))
    return train_steps, evaluate


def make_order(mesh: Mesh, batch: int):
    """order(rng, n) -> [ceil(n / batch), batch] int32: a permutation of range(n) drawn from
    the epoch's key, padded with -1, on the devices (replicated)."""

    def order(rng, n):
        nb = -(-n // batch)
        perm = jax.random.permutation(epoch_keys(rng)[0], n).astype(jnp.int32)
        return jnp.pad(perm, (0, nb * batch - n), constant_values=-1).reshape(nb, batch)

    return jax.jit(order, static_argnums=1, out_shardings=NamedSharding(mesh, P()))


def put(mesh: Mesh, x: np.ndarray, spec: P | None = None) -> jax.Array:
    """A host array, identical on every process, as a global array sharded by spec (None:
    replicated)."""
    sharding = NamedSharding(mesh, P() if spec is None else spec)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


# ----------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch: int = 64
    learning_rate: float = 1e-3
    grad_clip: float = 1.0
    pretrain_epochs: int = 50
    epochs: int = 150
    seed: int = 0
    steps_per_call: int = 16  # most steps a device call (a lax.scan); how the run goes, not what
    profile: bool = False  # write a jax.profiler trace of one call to WORKDIR/profile
    checkpoint_every_s: float = 60.0  # and at each phase's end and on SIGTERM; 0: every epoch
    loss: LossConfig = LossConfig()
    model: model_lib.ModelConfig = model_lib.ModelConfig()


# TrainConfig fields (and config.train keys) that change how a run goes but not what it computes
RUN_ONLY = ("steps_per_call", "profile", "checkpoint_every_s", "spectrum")


class MetricsWriter:
    """metrics.jsonl (one JSON object a line) and TensorBoard event files; process 0 only."""

    def __init__(self, wd: Workdir):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        self.f = open(wd.metrics, "a")  # noqa: SIM115
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(wd.tensorboard)

    def write(self, step: int, record: dict, tensorboard: bool = True,
              jsonl: bool = True) -> None:
        if not self.active:
            return
        if jsonl:
            self.f.write(json.dumps({"step": step, **record}) + "\n")
        if not tensorboard:
            return
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


@functools.partial(jax.jit, donate_argnums=0)
def keep_best(best: dict, params, val_loss: jax.Array, step: jax.Array) -> dict:
    """best {"params", "val_loss": [], "step": [] int32}, replaced on the device by (params,
    val_loss, step) when val_loss is lower (a NaN never is): the best parameters by validation
    are tracked without a transfer to the host, and written with the next checkpoint."""
    better = val_loss < best["val_loss"]
    new = {"params": params, "val_loss": val_loss, "step": step}
    return jax.tree.map(lambda b, n: jnp.where(better, n, b), best, new)


@dataclasses.dataclass
class _Call:
    """One device call in flight: the batches it trains and what it will return."""

    phase: str
    epoch: int  # within its phase
    first: int  # its first batch
    metrics: dict  # {name: [L]} on the device
    n_real: jax.Array  # [L]


class _Ledger:
    """The host's side of the run, kept one device call behind it: each call's metrics are read
    (and every step's loss checked) once the next call is dispatched, so the device never waits
    for the host; an epoch's record is written after its last call and its validation."""

    def __init__(self, writer: MetricsWriter, step: int, last_good, bar):
        self.writer, self.step, self.last_good, self.bar = writer, step, last_good, bar
        self.sums: dict[int, dict] = {}  # per global epoch: metric sums, "_n" the examples
        self.queue: list = []  # host work not done yet, oldest first
        self.summary: dict = {}
        self.clock = time.time()

    def run(self, keep: int = 0) -> None:
        """Do the queued host work, all but the newest `keep` items."""
        while len(self.queue) > keep:
            self.queue.pop(0)()

    def add(self, g: int, call: _Call) -> None:
        got, n_real = jax.device_get((call.metrics, call.n_real))
        sums = self.sums.setdefault(g, {})
        head = {"kind": "step", "phase": call.phase, "epoch": call.epoch}
        for j, n in enumerate(n_real):
            m = {k: float(v[j]) for k, v in got.items()}
            if not math.isfinite(m["loss"]):
                raise NonFiniteLoss(
                    f"non-finite loss ({m['loss']}) in {call.phase} epoch {call.epoch} batch "
                    f"{call.first + j}; the last good checkpoint is {self.last_good()}. Lower "
                    "train.learning_rate, or look for NaN in the features.")
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v * float(n)
            sums["_n"] = sums.get("_n", 0.0) + float(n)
            self.step += 1
            self.writer.write(self.step, {**head, **m}, tensorboard=False)
        # TensorBoard gets the call's means at its last step: a scalar event costs ~0.1 ms of
        # the host, and a step on an accelerator is under 1 ms
        w = n_real / max(float(n_real.sum()), 1.0)
        self.writer.write(self.step, {**head, **{k: float(np.dot(v, w)) for k, v in got.items()}},
                          jsonl=False)

    def end_epoch(self, g: int, phase: str, epoch: int, val) -> None:
        sums = self.sums.pop(g)
        now = time.time()
        record = {k: v / sums["_n"] for k, v in sums.items() if k != "_n"}
        record["seconds"] = now - self.clock  # since the last epoch's record (compilation too)
        record["examples_per_s"] = sums["_n"] / record["seconds"]
        self.clock = now
        if val is not None:
            record.update({f"val_{k}": x for k, x in _to_host(val).items()})
        self.writer.write(self.step, {"kind": "epoch", "phase": phase, "epoch": epoch, **record})
        self.summary = {"phase": phase, "epoch": epoch, **record}
        self.bar.update()
        self.bar.set_postfix(phase=phase, loss=f"{record['loss']:.4g}")


def train_and_evaluate(data: Data, tc: TrainConfig, wd: Workdir, progress: bool = True) -> dict:
    """Both phases with checkpoints in WORKDIR/checkpoints (resumed automatically) and the best
    parameters by validation loss in WORKDIR/checkpoints/best. Returns the final summary.

    Checkpoints are written every `tc.checkpoint_every_s` seconds (0: every epoch), at the end of
    each phase, and on SIGTERM / Ctrl-C; the best parameters are tracked on the device every
    epoch and written with them."""
    mesh = make_mesh()
    n_dev = mesh.devices.size
    if tc.batch % n_dev:
        raise ValueError(f"train.batch = {tc.batch} must be a multiple of the {n_dev} devices")
    k, dim = data.source_features.shape
    model = model_lib.create(k, tc.model)
    tx = make_optimizer(tc.learning_rate, tc.grad_clip)
    state = create_state(model, dim, tx, tc.seed)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    kind = tc.loss.spectrum
    tc = dataclasses.replace(tc, loss=dataclasses.replace(
        tc.loss, spectrum=resolve_spectrum(kind, k)))
    consts = make_consts(mesh, data.sources, data.mean, data.std, tc.loss)
    log.info("train: the mix's spectrum by %s (train.spectrum = %s, %d sources, %s)",
             "the sources' STFTs" if tc.loss.spectrum == "linear" else "the FFT of the mix",
             kind, k, jax.default_backend())
    tables = {"pretrain": put(mesh, np.asarray(data.source_features, np.float32)),
              "train": put(mesh, np.asarray(data.train, np.float32))}
    val = put(mesh, np.asarray(data.val, np.float32))
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
    if position and position["epoch"] >= done:
        state = state.replace(**ocp.StandardCheckpointer().restore(
            wd.checkpoints.preempted, _checkpoint(state)))
        done, skip, partial = position["epoch"], position["batch"], position["sums"]
        log.info("train: resumed mid-epoch from %s (%d epochs and %d batches done)",
                 wd.checkpoints.preempted, done, skip)
    elif position:  # older than the newest checkpoint: nothing to resume from
        _clear_preempted(wd)
    start = done
    writer = MetricsWriter(wd)
    total = tc.pretrain_epochs + tc.epochs
    order_of = make_order(mesh, tc.batch)
    per_call = {ph: even_calls(-(-t.shape[0] // tc.batch), tc.steps_per_call)
                for ph, t in tables.items()}
    # Both phases' steps and phase 2's validation compile on background threads from here,
    # beside pretraining (at the paper's scale on a CPU, phase 2's take ~16 s).
    compiling = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="compile")
    steps = {}
    for ph, last in zip(PHASES, (tc.pretrain_epochs, total), strict=True):
        steps[ph] = make_steps(model, mesh, ph, tc.loss, tc.batch, tc.model.latent)
        if done < last:  # epochs of this phase remain
            steps[ph] = compile_ahead(steps[ph], compiling, mesh, ph, state, order_of,
                                      per_call[ph], -(-tables[ph].shape[0] // tc.batch),
                                      tables[ph], val, consts, tc.seed)
    calls = dict.fromkeys(PHASES, 0)  # calls made by this process, per phase
    bar = tqdm(total=total, initial=done, desc="epochs", unit="epoch", disable=not progress,
               file=sys.stderr)
    # the host's count of steps from here on: reading the device's would wait
    ledger = _Ledger(writer, int(state.step), lambda: f"{ckpt_dir}/{latest.latest_step()}", bar)
    ledger.sums[start] = dict(partial)
    tracked = {"params": jax.tree.map(jnp.copy, state.params),
               "val_loss": put(mesh, np.array(np.inf, np.float32)),
               "step": put(mesh, np.array(-1, np.int32))}
    written = {"best": best.latest_step() or 0, "preempted": bool(skip), "at": time.time()}

    def write_best() -> None:
        step_, loss = (x.item() for x in jax.device_get((tracked["step"], tracked["val_loss"])))
        if step_ > written["best"]:
            best.save(step_, args=ocp.args.StandardSave({"params": tracked["params"]}),
                      metrics={"val_loss": loss})
            written["best"] = step_

    def save(g: int) -> None:
        """Everything after epoch g: the host's work done first, so that a non-finite loss
        stops the run before its state is written."""
        ledger.run()
        latest.save(g + 1, args=ocp.args.StandardSave(_checkpoint(state)))
        write_best()
        if written["preempted"]:
            _clear_preempted(wd)
            written["preempted"] = False
        written["at"] = time.time()

    stop = _StopRequest()
    try:
        stop.__enter__()
        for g in range(done, total):
            phase = "pretrain" if g < tc.pretrain_epochs else "train"
            epoch = g if phase == "pretrain" else g - tc.pretrain_epochs
            table = tables[phase]
            n_batches = -(-table.shape[0] // tc.batch)
            train_steps, evaluate = steps[phase]
            ledger.sums.setdefault(g, {})
            rng = put(mesh, np.array([tc.seed, PHASES.index(phase), epoch], np.int32))
            order = order_of(rng, table.shape[0])
            end = skip if g == start else 0
            for lo in range(end, n_batches, per_call[phase]):
                end = min(lo + per_call[phase], n_batches)
                # the first phase-2 call compiles its step: trace the second (once)
                trace = tc.profile and phase == "train" and calls["train"] == 1
                if trace:
                    jax.profiler.start_trace(wd.profile)
                ids = put(mesh, np.arange(lo, end, dtype=np.int32))
                state, metrics, n_real = train_steps(state, order, ids, rng, table, consts)
                calls[phase] += 1
                if trace:
                    jax.block_until_ready(metrics)
                    jax.profiler.stop_trace()
                    log.info("train: profile of %d steps in %s (tensorboard --logdir %s)",
                             end - lo, wd.profile, wd.profile)
                ledger.queue.append(functools.partial(
                    ledger.add, g, _Call(phase, epoch, lo, metrics, n_real)))
                ledger.run(keep=1)
                if stop.signum is not None:
                    break
            if stop.signum is not None and end < n_batches:
                ledger.run()
                latest.wait_until_finished()
                write_best()
                _save_preempted(wd, state, {"epoch": g, "batch": end, "sums": ledger.sums[g]})
                raise Preempted(
                    f"stopped by {signal.Signals(stop.signum).name} in {phase} epoch {epoch} "
                    f"after batch {end - 1}; the state is saved in {wd.checkpoints.preempted}: "
                    "run the same command again to resume from there")
            v = None
            if phase == "train":
                v = evaluate(state.params, val, consts)
                tracked = keep_best(tracked, state.params, v["loss"],
                                    put(mesh, np.array(g + 1, np.int32)))
            ledger.queue.append(functools.partial(ledger.end_epoch, g, phase, epoch, v))
            if (g + 1 in (tc.pretrain_epochs, total) or stop.signum is not None
                    or time.time() - written["at"] >= tc.checkpoint_every_s):
                save(g)
            if stop.signum is not None:  # it came in the epoch's last call, or after it
                raise Preempted(f"stopped by {signal.Signals(stop.signum).name} after {phase} "
                                f"epoch {epoch}; its checkpoint is in {ckpt_dir}: run the same "
                                "command again to resume")
    except NonFiniteLoss:
        write_best()  # what validation chose before the loss went bad
        raise
    finally:
        compiling.shutdown(wait=False)
        stop.__exit__()
        bar.close()
        latest.wait_until_finished()
        best.wait_until_finished()
        writer.close()
    summary = dict(ledger.summary)
    summary["best_step"] = best.best_step()
    summary["resumed_from"] = start  # epochs already done when this call began
    summary["resumed_batches"] = skip  # and batches of the next one (after a preemption)
    return summary


def compile_ahead(steps: tuple, pool, mesh: Mesh, phase: str, state, order_of, per_call: int,
                  n_batches: int, table, val, consts, seed: int) -> tuple:
    """`make_steps`'s (train_steps, evaluate) with their compilation for this run's shapes
    started on `pool` (`drumlayer.ahead`): train_steps for calls of per_call batches of
    table, and of the rest when n_batches is not a multiple (`configs/snare.py`'s 29 batches:
    15 + 14; compiled at its first call, that took ~7 s of phase 2's first epoch on a CPU),
    evaluate (phase 2 only: pretraining has no validation) for val."""
    train_steps, evaluate = steps
    state = ahead.abstract(state)  # the state itself is donated to the first call

    def example(length):
        rng = put(mesh, np.array([seed, PHASES.index(phase), 0], np.int32))
        ids = put(mesh, np.arange(length, dtype=np.int32))
        return state, order_of(rng, table.shape[0]), ids, rng, table, consts

    rest = n_batches % per_call
    train_steps = ahead.Ahead(train_steps, pool, functools.partial(example, per_call),
                              f"{phase} steps",
                              more=(functools.partial(example, rest),) if rest else ())
    if phase == "train":
        evaluate = ahead.Ahead(evaluate, pool, lambda: (state.params, val, consts),
                               f"{phase} validation")
    return train_steps, evaluate


def even_calls(n_batches: int, most: int) -> int:
    """Steps per call for an epoch of n_batches, at most `most`: the largest divisor of
    n_batches from most / 2 to most, so every call has the same length and the steps compile
    once (33 batches at most 16 a call: 3 calls of 11, not 16 + 16 + 1, whose last call would
    compile them a second time: 5 s at the paper's scale on a CPU); without one, the fewest
    calls, as even as they go. The steps are the same either way."""
    most = max(1, min(most, n_batches))
    for d in range(most, (most + 1) // 2 - 1, -1):
        if n_batches % d == 0:
            return d
    return -(-n_batches // -(-n_batches // most))


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


def validate(evaluate, params, mesh: Mesh, feats: np.ndarray, consts) -> dict:
    """Mean metrics over every example of feats [n, D] (the last batch padded and masked),
    with z at the encoder's mean; evaluate is make_steps' second function."""
    return _to_host(evaluate(params, put(mesh, np.asarray(feats, np.float32)), consts))


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
