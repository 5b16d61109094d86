"""The device mesh, arrays placed on it, and joining a multi-process run.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


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


def put(mesh: Mesh, x: np.ndarray, spec: P | None = None) -> jax.Array:
    """A host array, identical on every process, as a global array sharded by spec (None:
    replicated)."""
    sharding = NamedSharding(mesh, P() if spec is None else spec)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
