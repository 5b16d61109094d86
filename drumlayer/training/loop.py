"""The two phases of training, resumable, with checkpoints and the best parameters kept.

Phase 1 (pretraining, the paper's Section 3.4): the k sources are the inputs and the decoder's
logits are trained to name each one. Phase 2: the VAE reconstructs target features through the
mix and the differentiable feature extractor (`losses`).

Training is device-resident: the targets, sources and standardisation are put on the devices
once, each epoch's order is a permutation drawn on the device, and `steps` runs up to
`train.steps_per_call` steps a call (calls of one length: `even_calls`), their metrics coming
back to the host once per call while the next call already runs (`ledger`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import math
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from drumlayer.errors import DrumlayerError, check_room
from drumlayer.model import vae as model_lib
from drumlayer.training import aot
from drumlayer.training.checkpoints import (
    DamagedCheckpoint,
    _checkpoint,
    _clear_preempted,
    _save_preempted,
    check_restored,
    keep_best,
    restore_newest,
)
from drumlayer.training.distributed import make_mesh, put
from drumlayer.training.ledger import MetricsWriter, NonFiniteLoss, _Call, _Ledger, _to_host
from drumlayer.training.losses import make_consts, resolve_spectrum
from drumlayer.training.optimizer import create_state, make_optimizer
from drumlayer.training.options import TrainConfig
from drumlayer.training.steps import PHASES, make_order, make_steps
from drumlayer.workdir import Workdir, read_json

log = logging.getLogger(__name__)


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


def train_and_evaluate(data: Data, tc: TrainConfig, wd: Workdir, progress: bool = True) -> dict:
    """Both phases with checkpoints in WORKDIR/checkpoints (resumed automatically) and the best
    parameters by validation loss in WORKDIR/checkpoints/best. Returns the final summary.

    Checkpoints are written every `tc.checkpoint_every_s` seconds (0: every epoch), at the end of
    each phase, and on SIGTERM / Ctrl-C; the best parameters are tracked on the device every
    epoch and written with them."""
    return _Run(data, tc, wd, progress).run()


def _checkpoint_managers(wd: Workdir) -> tuple[ocp.CheckpointManager, ocp.CheckpointManager]:
    """(latest, best by validation loss). Asynchronous saves overlap the next epoch; with several
    processes, synchronous saves keep every process at the same barrier."""
    asynchronous = jax.process_count() == 1
    latest = ocp.CheckpointManager(wd.checkpoints.dir, options=ocp.CheckpointManagerOptions(
        max_to_keep=2, create=True, enable_async_checkpointing=asynchronous))
    best = ocp.CheckpointManager(wd.checkpoints.best, options=(
        ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m["val_loss"],
                                     best_mode="min", create=True,
                                     enable_async_checkpointing=asynchronous)))
    return latest, best


class _Run:
    """One call of `train_and_evaluate`: the device state, where it resumed from, the
    checkpoint managers, the steps compiling ahead, and the host's ledger of the epochs."""

    def __init__(self, data: Data, tc: TrainConfig, wd: Workdir, progress: bool):
        self.wd, self.mesh = wd, make_mesh()
        n_dev = self.mesh.devices.size
        if tc.batch % n_dev:
            raise ValueError(f"train.batch = {tc.batch} must be a multiple of the {n_dev} devices")
        k, dim = data.source_features.shape
        model = model_lib.create(k, tc.model)
        tx = make_optimizer(tc.learning_rate, tc.grad_clip, tc.weight_decay)
        state = create_state(model, dim, tx, tc.seed)
        self.state = jax.device_put(state, NamedSharding(self.mesh, P()))
        kind = tc.loss.spectrum
        self.tc = tc = dataclasses.replace(tc, loss=dataclasses.replace(
            tc.loss, spectrum=resolve_spectrum(kind, k)))
        self.consts = make_consts(self.mesh, data.sources, data.mean, data.std, tc.loss)
        log.info("train: the mix's spectrum by %s (train.spectrum = %s, %d sources, %s)",
                 "the sources' STFTs" if tc.loss.spectrum == "linear" else "the FFT of the mix",
                 kind, k, jax.default_backend())
        self.tables = {"pretrain": put(self.mesh, np.asarray(data.source_features, np.float32)),
                       "train": put(self.mesh, np.asarray(data.train, np.float32))}
        self.val = put(self.mesh, np.asarray(data.val, np.float32))
        self.latest, self.best = _checkpoint_managers(wd)
        self.start, self.skip, partial = self._resume()
        self.writer = MetricsWriter(wd, int(self.state.step))
        self.total = tc.pretrain_epochs + tc.epochs
        self.order_of = make_order(self.mesh, tc.batch)
        self.per_call = {ph: even_calls(-(-t.shape[0] // tc.batch), tc.steps_per_call)
                         for ph, t in self.tables.items()}
        self.compiling = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="compile")
        self.steps = self._compile(model)
        self.calls = dict.fromkeys(PHASES, 0)  # calls made by this process, per phase
        self.bar = tqdm(total=self.total, initial=self.start, desc="epochs", unit="epoch",
                        disable=not progress, file=sys.stderr)
        # the host's count of steps from here on: reading the device's would wait
        self.ledger = _Ledger(self.writer, int(self.state.step),
                              lambda: f"{wd.checkpoints.dir}/{self.latest.latest_step()}",
                              self.bar)
        self.ledger.sums[self.start] = dict(partial)
        self.ledger.summary = dict(self.writer.summary)  # what a finished run said, if it did
        self.best_written = self.best.latest_step() or 0
        # the best validation loss so far and the epoch count it came at (a resumed run's: its
        # best checkpoint's, which holds the best up to the checkpoint it resumes from)
        best = self.best.best_step()
        self.best_seen = ((self.best.metrics(best)["val_loss"], best) if best is not None
                          else (math.inf, 0))
        # what the device compares each validation with: the best so far (its parameters are
        # in the best checkpoint already: only a better epoch replaces them)
        self.tracked = {"params": jax.tree.map(jnp.copy, self.state.params),
                        "val_loss": put(self.mesh, np.array(self.best_seen[0], np.float32)),
                        "step": put(self.mesh, np.array(best or -1, np.int32))}
        self.stopped = ""  # why phase 2 ended before its last epoch
        self.checkpoint_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(
            (_checkpoint(self.state), self.tracked["params"])))
        self.preempted_pending = bool(self.skip)  # a mid-epoch state to clear at the next save
        self.saved_at = time.time()

    def _resume(self) -> tuple[int, int, dict]:
        """(epochs done, batches of the next one done, their metric sums), restoring the newest
        checkpoint, or the mid-epoch state a preemption left when it is newer."""
        wd, done = self.wd, 0
        if self.latest.latest_step() is not None:
            done, restored = restore_newest(self.latest, _checkpoint(self.state))
            if restored is not None:
                self.state = self.state.replace(**restored)
                log.info("train: resumed from %s/%d (%d epochs done)", wd.checkpoints.dir, done,
                         done)
        position = read_json(wd.checkpoints.preempted_position)
        if position and position["epoch"] >= done:
            target = _checkpoint(self.state)
            restored = ocp.StandardCheckpointer().restore(wd.checkpoints.preempted, target)
            try:
                check_restored(restored, target)
            except DamagedCheckpoint as e:
                log.warning("train: the mid-epoch state in %s is damaged (%s): resuming from "
                            "the epoch checkpoint before it", wd.checkpoints.preempted, e)
                _clear_preempted(wd)
                return done, 0, {}
            self.state = self.state.replace(**restored)
            log.info("train: resumed mid-epoch from %s (%d epochs and %d batches done)",
                     wd.checkpoints.preempted, position["epoch"], position["batch"])
            return position["epoch"], position["batch"], position["sums"]
        if position:  # older than the newest checkpoint: nothing to resume from
            _clear_preempted(wd)
        return done, 0, {}

    def _compile(self, model) -> dict:
        """Both phases' steps, and phase 2's validation, compiling on background threads from
        here, beside pretraining (at the paper's scale on a CPU, phase 2's take ~16 s)."""
        tc, steps = self.tc, {}
        for ph, last in zip(PHASES, (tc.pretrain_epochs, self.total), strict=True):
            steps[ph] = make_steps(model, self.mesh, ph, tc.loss, tc.batch, tc.model.latent)
            if self.start < last:  # epochs of this phase remain
                steps[ph] = compile_ahead(
                    steps[ph], self.compiling, self.mesh, ph, self.state, self.order_of,
                    self.per_call[ph], -(-self.tables[ph].shape[0] // tc.batch),
                    self.tables[ph], self.val, self.consts, tc.seed)
        return steps

    def write_best(self) -> None:
        tracked = self.tracked
        step_, loss = (x.item() for x in jax.device_get((tracked["step"], tracked["val_loss"])))
        if step_ > self.best_written:
            self.best.save(step_, args=ocp.args.StandardSave({"params": tracked["params"]}),
                           metrics={"val_loss": loss})
            self.best_written = step_

    def save(self, g: int) -> None:
        """Everything after epoch g: the host's work done first, so that a non-finite loss
        stops the run before its state is written."""
        self.ledger.run()
        self.writer.flush()
        # the state and the best parameters, with room for Orbax's metadata and a margin
        check_room(self.wd.checkpoints.dir, int(1.25 * self.checkpoint_bytes) + (4 << 20))
        self.latest.save(g + 1, args=ocp.args.StandardSave(_checkpoint(self.state)))
        self.write_best()
        if self.preempted_pending:
            _clear_preempted(self.wd)
            self.preempted_pending = False
        self.saved_at = time.time()

    def _train_calls(self, g: int, phase: str, epoch: int, stop: _StopRequest) -> tuple[int, int]:
        """Epoch g's batches from where it stands, a device call of per_call[phase] batches at a
        time, until the epoch ends or a stop is requested -> (batches done, batches)."""
        tc, wd, table = self.tc, self.wd, self.tables[phase]
        n_batches = -(-table.shape[0] // tc.batch)
        train_steps, _ = self.steps[phase]
        self.ledger.sums.setdefault(g, {})
        rng = put(self.mesh, np.array([tc.seed, PHASES.index(phase), epoch], np.int32))
        order = self.order_of(rng, table.shape[0])
        end = self.skip if g == self.start else 0
        for lo in range(end, n_batches, self.per_call[phase]):
            end = min(lo + self.per_call[phase], n_batches)
            # the first phase-2 call compiles its step: trace the second (once)
            trace = tc.profile and phase == "train" and self.calls["train"] == 1
            if trace:
                jax.profiler.start_trace(wd.profile)
            ids = put(self.mesh, np.arange(lo, end, dtype=np.int32))
            self.state, metrics, n_real = train_steps(self.state, order, ids, rng, table,
                                                      self.consts)
            self.calls[phase] += 1
            if trace:
                jax.block_until_ready(metrics)
                jax.profiler.stop_trace()
                log.info("train: profile of %d steps in %s (tensorboard --logdir %s)",
                         end - lo, wd.profile, wd.profile)
            self.ledger.queue.append(functools.partial(
                self.ledger.add, g, _Call(phase, epoch, lo, metrics, n_real)))
            self.ledger.run(keep=1)
            if stop.signum is not None:
                break
        return end, n_batches

    def epoch(self, g: int, stop: _StopRequest) -> None:
        """Train epoch g (pretraining first), validate it, and checkpoint when it is time;
        raises Preempted, with the state saved, when a stop was requested."""
        tc, wd = self.tc, self.wd
        phase = "pretrain" if g < tc.pretrain_epochs else "train"
        epoch = g if phase == "pretrain" else g - tc.pretrain_epochs
        end, n_batches = self._train_calls(g, phase, epoch, stop)
        if stop.signum is not None and end < n_batches:
            self.ledger.run()
            self.writer.flush()
            self.latest.wait_until_finished()
            self.write_best()
            _save_preempted(wd, self.state,
                            {"epoch": g, "batch": end, "sums": self.ledger.sums[g]})
            raise Preempted(
                f"stopped by {signal.Signals(stop.signum).name} in {phase} epoch {epoch} "
                f"after batch {end - 1}; the state is saved in {wd.checkpoints.preempted}: "
                "run the same command again to resume from there")
        v = None
        if phase == "train":
            v = self.steps[phase][1](self.state.params, self.val, self.consts)
            self.tracked = keep_best(self.tracked, self.state.params, v["loss"],
                                     put(self.mesh, np.array(g + 1, np.int32)))
            if tc.patience:  # the host reads one number an epoch: every process the same
                loss = float(jax.device_get(v["loss"]))
                if loss < self.best_seen[0]:
                    self.best_seen = (loss, g + 1)
                self.stopped = self.patience_ran_out(g + 1)
        self.ledger.queue.append(functools.partial(self.ledger.end_epoch, g, phase, epoch, v))
        if (g + 1 in (tc.pretrain_epochs, self.total) or stop.signum is not None or self.stopped
                or time.time() - self.saved_at >= tc.checkpoint_every_s):
            self.save(g)
        if stop.signum is not None:  # it came in the epoch's last call, or after it
            raise Preempted(f"stopped by {signal.Signals(stop.signum).name} after {phase} "
                            f"epoch {epoch}; its checkpoint is in {wd.checkpoints.dir}: run the "
                            "same command again to resume")

    def patience_ran_out(self, done: int) -> str:
        """Why phase 2 stops after `done` epochs in all ('' when it goes on): no better
        validation loss for train.patience epochs. A function of the best checkpoint's epoch, so
        a resumed run stops where an uninterrupted one did."""
        tc, (loss, at) = self.tc, self.best_seen
        if not tc.patience or done <= tc.pretrain_epochs or done >= self.total:
            return ""
        if done - max(at, tc.pretrain_epochs) < tc.patience:
            return ""
        return (f"early: validation loss {loss:.4g} at phase-2 epoch {at - tc.pretrain_epochs - 1}"
                f" not bettered in {tc.patience} epoch{'s' * (tc.patience != 1)} "
                f"(train.patience); stopped after epoch {done - tc.pretrain_epochs - 1} of "
                f"{tc.epochs}")

    def run(self) -> dict:
        self.stopped = self.patience_ran_out(self.start)
        try:
            with _StopRequest() as stop:
                for g in range(self.start, self.total):
                    if self.stopped:
                        break
                    self.epoch(g, stop)
        except NonFiniteLoss:
            self.write_best()  # what validation chose before the loss went bad
            raise
        finally:
            self.compiling.shutdown(wait=False)
            self.bar.close()
            self.latest.wait_until_finished()
            self.best.wait_until_finished()
            self.writer.close()
        summary = dict(self.ledger.summary)
        summary["stopped"] = self.stopped or f"after the last epoch ({self.tc.epochs})"
        if self.stopped:
            log.info("train: stopped %s", self.stopped)
        summary["best_step"] = self.best.best_step()
        summary["resumed_from"] = self.start  # epochs already done when this call began
        summary["resumed_batches"] = self.skip  # and batches of the next one (after preemption)
        return summary


def compile_ahead(steps: tuple, pool, mesh: Mesh, phase: str, state, order_of, per_call: int,
                  n_batches: int, table, val, consts, seed: int) -> tuple:
    """`make_steps`'s (train_steps, evaluate) with their compilation for this run's shapes
    started on `pool` (`drumlayer.training.aot`): train_steps for calls of per_call batches of
    table, and of the rest when n_batches is not a multiple (`configs/snare.py`'s 29 batches:
    15 + 14; compiled at its first call, that took ~7 s of phase 2's first epoch on a CPU),
    evaluate (phase 2 only: pretraining has no validation) for val."""
    train_steps, evaluate = steps
    state = aot.abstract(state)  # the state itself is donated to the first call

    def example(length):
        rng = put(mesh, np.array([seed, PHASES.index(phase), 0], np.int32))
        ids = put(mesh, np.arange(length, dtype=np.int32))
        return state, order_of(rng, table.shape[0]), ids, rng, table, consts

    rest = n_batches % per_call
    train_steps = aot.Ahead(train_steps, pool, functools.partial(example, per_call),
                              f"{phase} steps",
                              more=(functools.partial(example, rest),) if rest else ())
    if phase == "train":
        evaluate = aot.Ahead(evaluate, pool, lambda: (state.params, val, consts),
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


def validate(evaluate, params, mesh: Mesh, feats: np.ndarray, consts) -> dict:
    """Mean metrics over every example of feats [n, D] (the last batch padded and masked),
    with z at the encoder's mean; evaluate is make_steps' second function."""
    return _to_host(evaluate(params, put(mesh, np.asarray(feats, np.float32)), consts))
