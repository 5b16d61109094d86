"""The device mesh, arrays placed on it, and joining a multi-process run.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from drumlayer.workdir import Workdir


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


# Most CPU devices `use_cpu_cores` makes by itself: measured only on 2 cores (see the docstring).
MAX_CPU_DEVICES = 8


def cpu_device_count(cpus: int, batch: int, requested: int = 0) -> int:
    """How many JAX devices a host's CPU becomes: `requested` when > 0, else one per CPU this
    process may use, at most MAX_CPU_DEVICES, lowered to a divisor of the global batch (each
    device trains an equal slice of it)."""
    if requested > 0:
        return requested
    n = max(1, min(cpus, MAX_CPU_DEVICES, batch))
    while batch % n:
        n -= 1
    return n


def use_cpu_cores(batch: int, requested: int = 0) -> int:
    """Make the host's CPU `cpu_device_count` JAX devices, so that the data-parallel training
    step runs one shard per core. XLA's CPU runtime runs one program's operations on a second
    thread only when many are ready at once, so one device keeps 2 cores both busy a quarter of
    the time; a program per core keeps them busy (a paper-scale epoch on 2 cores: 0.82x the time
    with 2 devices; the step 1.1x with 4). The training is the same up to float rounding (the
    step's numbers do not depend on the device count). Returns the count set, or 0 where it is
    left alone: XLA_FLAGS already sets it, a multi-process run (launch/multihost.sh shares the
    cores between processes), or JAX has already started. Must run before anything touches a
    device; accelerators are not affected."""
    if ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
            or os.environ.get("DRUMLAYER_COORDINATOR")):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = cpu_device_count(cpus or 1, batch, requested)
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX already started (a second job in one process): leave it
        return 0
    return n


def use_cpu_cores_as_trained(workdir: str) -> int:
    """`use_cpu_cores` with the train section of WORKDIR/config.json (one device where it names
    none: the default, and what jobs from before the field used), for the commands that read a
    trained workdir (studio, analyze, evaluate): JAX's compilation cache keys count the devices,
    so only the job's device count finds what the job compiled for them."""
    try:
        with open(Workdir(workdir).config) as f:
            train = json.load(f).get("train", {})
    except (OSError, ValueError, AttributeError):
        train = {}
    return use_cpu_cores(int(train.get("batch", 64)), int(train.get("cpu_devices", 1)))


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
