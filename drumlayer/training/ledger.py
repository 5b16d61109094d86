"""The host's side of training: each call's metrics checked and written to metrics.jsonl and
TensorBoard, one device call behind the device.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import numpy as np

from drumlayer.errors import DrumlayerError
from drumlayer.workdir import Workdir


class NonFiniteLoss(DrumlayerError, RuntimeError):
    """The loss became NaN or infinite; the run stops and the last good checkpoint stays."""


def keep_metrics(path: str, step: int) -> dict:
    """Cut metrics.jsonl back to the records of steps <= step (a resumed run's state: what a
    killed run logged after it is logged again), and return the last epoch record kept, as
    the run's summary ({} when none)."""
    if not os.path.exists(path):
        return {}
    kept, last = [], {}
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
            if r.get("step", 0) <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
                if r.get("kind") == "epoch":
                    last = {k: v for k, v in r.items() if k not in ("step", "kind")}
    with open(path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)
    return last


class MetricsWriter:
    """metrics.jsonl (one JSON object a line) and TensorBoard event files; process 0 only.
    `summary`: the last epoch record of the steps up to `step` that the file already holds."""

    def __init__(self, wd: Workdir, step: int = 0):
        self.active = jax.process_index() == 0
        self.summary: dict = {}
        if not self.active:
            return
        self.summary = keep_metrics(wd.metrics, step)
        self.f = open(wd.metrics, "a")  # noqa: SIM115
        from tensorboardX import SummaryWriter  # heavy (protobuf): only once a run writes

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

    def flush(self) -> None:
        """To disk: what a checkpoint is written with, so that a killed run loses no record of
        the steps its checkpoint holds."""
        if self.active:
            self.f.flush()

    def close(self) -> None:
        if self.active:
            self.f.close()
            self.tb.close()


def _to_host(metrics) -> dict:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


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
