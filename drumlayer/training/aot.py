"""Compiling ahead of time: a jitted function's compilation, started on a background thread.

At the paper's scale on a CPU the training step of phase 2 takes ~12 s to trace and compile and
its validation ~4 s; compiled when phase 2 begins, they come after pretraining and the
pretraining step's own compilation. Started when training starts, they run beside them.

    step = Ahead(jax.jit(f), pool, lambda: example_args)
    step(*args)  # args shaped like example_args: the compilation made ahead (waits for it)

A call whose arguments differ in shape, dtype, weak type or sharding from the example's (a
resumed epoch's shorter last call) goes to the jitted function, compiled at that call as usual:
the numbers are the same either way. A matching call waits for the compilation made ahead: the
jitted function called before it finished would compile the same program a second time.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable

import jax

log = logging.getLogger(__name__)


def abstract(tree):
    """The arrays of a pytree as jax.ShapeDtypeStructs (shape, dtype, weak type, sharding):
    something to compile for that holds no memory and survives the arrays' donation."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=x.sharding, weak_type=x.aval.weak_type), tree)


def signature(args) -> tuple:
    """What a compilation is specific to: the pytree structure and each leaf's shape, dtype,
    weak type and sharding (leaves: arrays or jax.ShapeDtypeStructs)."""
    leaves, tree = jax.tree.flatten(args)

    def leaf(x):
        aval = x if isinstance(x, jax.ShapeDtypeStruct) else x.aval
        return tuple(x.shape), str(x.dtype), bool(aval.weak_type), x.sharding

    return tree, tuple(leaf(x) for x in leaves)


class Ahead:
    """`jitted`, with its compilation for example()'s arguments (and for each of `more`'s, e.g.
    an epoch's shorter last call) started now on `pool` (each example runs there too, so what
    it computes, e.g. an epoch's order, is off this thread)."""

    def __init__(self, jitted, pool: concurrent.futures.Executor, example: Callable[[], tuple],
                 name: str = "", more: tuple[Callable[[], tuple], ...] = ()):
        self.jitted, self.name = jitted, name or getattr(jitted, "__name__", "function")
        self.calls = {"ahead": 0, "jitted": 0}  # which compilation the calls ran
        self._futures = [pool.submit(self._compile, e) for e in (example, *more)]

    def _compile(self, example):
        args = example()
        return signature(args), self.jitted.lower(*args).compile()

    def __call__(self, *args):
        sig = signature(args)
        for future in self._futures:
            ahead_sig, compiled = future.result()  # a failed compilation raises here
            if sig == ahead_sig:
                self.calls["ahead"] += 1
                return compiled(*args)
        if not self.calls["jitted"]:
            log.info("%s: called with other shapes than compiled for ahead: compiling them",
                     self.name)
        self.calls["jitted"] += 1
        return self.jitted(*args)
