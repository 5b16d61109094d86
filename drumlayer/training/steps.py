"""The train and eval steps, data-parallel over a 1-D mesh of every device (axis 'data').

Each device takes its slice of the global batch, parameters are replicated, and per-shard
gradient sums are all-reduced with lax.psum and divided by the global example count: lax.pmean
of equal shards, still exact when a padded last batch leaves the shards uneven. jax.shard_map
under jax.jit serves 1 CPU, 8 accelerators or many hosts; on one device the same function runs
without the shard_map. Up to steps_per_call steps run in one call as a lax.scan over the
device-resident table; everything random is folded from (seed, phase, epoch, batch), so a
resumed run and a run on another number of devices see the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from drumlayer.training.losses import LossConfig, per_example
from drumlayer.training.optimizer import global_norm

PHASES = ("pretrain", "train")


def _masked_sums(loss, metrics, mask, count):
    total = jnp.sum(loss * mask) / count
    sums = {k: jnp.sum(v * mask) / count for k, v in metrics.items()}
    return total, {"loss": total, **sums}


def epoch_keys(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(permutation key, noise key) of an epoch; rng [3] int32 is (seed, phase index, epoch)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(rng[0]), rng[1]), rng[2])
    perm, noise = jax.random.split(key)
    return perm, noise


def _keep(key, dropout: float, batch: int, dim: int, n_dev: int, dtype):
    """The input-dropout mask of this device's rows of a batch (None without dropout): the
    whole batch's [batch, dim] draw from key, sliced as eps is, so no device count changes it."""
    if not dropout:
        return None
    keep = jax.random.bernoulli(jax.random.fold_in(key, 1), 1.0 - dropout, (batch, dim))
    per = batch // n_dev
    start = jax.lax.axis_index("data") * per if n_dev > 1 else 0
    return jax.lax.dynamic_slice_in_dim(keep.astype(dtype), start, per)


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

    def loss_fn(params, feats, labels, eps, mask, count, consts, keep=None):
        loss, metrics = per_example(params, model, phase, lc, feats, labels, eps, consts, keep)
        return _masked_sums(loss, metrics, mask, count)

    def over_devices(tree):
        """The sum over the devices' shards (one device: the tree itself)."""
        return jax.lax.psum(tree, "data") if n_dev > 1 else tree

    def local_train(state, feats, labels, eps, mask, count, consts, keep=None):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        # The replicated parameters are cast to per-shard values first, so each shard's
        # gradient is its own sum; differentiating the replicated ones directly would already
        # sum over the shards, and the psum below would then count every example n_dev times.
        local = jax.lax.pcast(state.params, "data", to="varying") if n_dev > 1 else state.params
        (_, metrics), grads = grad_fn(local, feats, labels, eps, mask, count, consts, keep)
        grads = over_devices(grads)
        metrics = over_devices(metrics)
        metrics["grad_norm"] = global_norm(grads)
        state = state.apply_gradients(grads=grads)
        metrics["param_norm"] = global_norm(state.params)
        return state, metrics

    def local_steps(state, order, batch_ids, rng, table, consts):
        noise = epoch_keys(rng)[1]

        def one(state, b):
            key = jax.random.fold_in(noise, b)
            args = local_batch(order[b], jax.random.normal(key, (batch, latent)), table)
            state, metrics = local_train(state, *args, consts, _keep(
                key, lc.input_dropout, batch, table.shape[1], n_dev, table.dtype))
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
