"""Orbax checkpoints of a run: the newest that restores (a damaged one moved aside), the best
by validation loss (tracked on the device), the mid-epoch state a preemption leaves, and the
parameters for the bundle.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax.training import train_state

from drumlayer.errors import DrumlayerError
from drumlayer.model import vae as model_lib
from drumlayer.training.optimizer import create_state, make_optimizer
from drumlayer.training.options import TrainConfig
from drumlayer.workdir import Workdir, write_json

log = logging.getLogger(__name__)


def _checkpoint(state: train_state.TrainState) -> dict:
    """What a 'latest' checkpoint holds (a 'best' one holds only the params)."""
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


@functools.partial(jax.jit, donate_argnums=0)
def keep_best(best: dict, params, val_loss: jax.Array, step: jax.Array) -> dict:
    """best {"params", "val_loss": [], "step": [] int32}, replaced on the device by (params,
    val_loss, step) when val_loss is lower (a NaN never is): the best parameters by validation
    are tracked without a transfer to the host, and written with the next checkpoint."""
    better = val_loss < best["val_loss"]
    new = {"params": params, "val_loss": val_loss, "step": step}
    return jax.tree.map(lambda b, n: jnp.where(better, n, b), best, new)


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


class DamagedCheckpoint(DrumlayerError, ValueError):
    """A checkpoint restored, but its values are not a model's (NaN, infinite, far out of any
    trained range, or of the wrong shape)."""


LARGEST = 1e30  # no trained parameter or optimiser moment comes near; random float32 bits do


def check_restored(restored, target) -> None:
    """Raises DamagedCheckpoint unless restored has target's tree, shapes and dtypes and every
    floating-point value is finite: bytes overwritten at the same length restore without an
    error from Orbax (nothing checksums the arrays), and a NaN in them stops training later
    with the damaged checkpoint named as the last good one."""
    got, want = jax.tree_util.tree_flatten_with_path(restored)[0], jax.tree_util.tree_leaves(target)
    if len(got) != len(want):
        raise DamagedCheckpoint(f"{len(got)} arrays where the model has {len(want)}")
    for (path, a), t in zip(got, want, strict=True):
        name = jax.tree_util.keystr(path)
        if jnp.shape(a) != tuple(t.shape):
            raise DamagedCheckpoint(f"{name} has shape {jnp.shape(a)}, not {tuple(t.shape)}")
        if jnp.issubdtype(jnp.result_type(a), jnp.inexact):
            bad = int(jnp.sum(~(jnp.abs(a) < LARGEST)))  # NaN compares False
            if bad:
                raise DamagedCheckpoint(f"{name} holds {bad} values that are NaN, infinite "
                                        f"or beyond {LARGEST:g}")


def restore_newest(mngr: ocp.CheckpointManager, target) -> tuple[int, dict | None]:
    """(step, state) of the newest checkpoint that restores into target with finite values of
    its shapes (`check_restored`), or (0, None). A damaged one (a truncated file after a full
    disk, a copy cut short, bytes overwritten) is moved aside to STEP.damaged-TIME with one
    line saying which step and what is wrong, and the one before it is tried."""
    where = os.fspath(mngr.directory)
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            restored = mngr.restore(step, args=ocp.args.StandardRestore(target))
            check_restored(restored, target)
            return step, restored
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
        tx = make_optimizer(tc.learning_rate, tc.grad_clip, tc.weight_decay)
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
    restored = mngr.restore(step, args=ocp.args.StandardRestore(target))
    try:
        check_restored(restored, target)
    except DamagedCheckpoint as e:
        raise DamagedCheckpoint(f"the {which} checkpoint {path}/{step} is damaged: {e}; "
                                "delete it and rerun the main job to train again") from None
    return restored["params"]
