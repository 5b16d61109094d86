"""TrainConfig: what a training run is made of (numbers from the config's train and model
sections), and which fields change how a run goes but not what it computes.
"""

from __future__ import annotations

import dataclasses

from drumlayer.model import vae as model_lib
from drumlayer.training.losses import LossConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch: int = 64
    learning_rate: float = 1e-3
    grad_clip: float = 1.0
    weight_decay: float = 0.0  # > 0: AdamW's decoupled decay
    pretrain_epochs: int = 50
    epochs: int = 150  # the most epochs of phase 2
    patience: int = 0  # stop phase 2 when validation has not improved for this many; 0: never
    seed: int = 0
    steps_per_call: int = 16  # most steps a device call (a lax.scan); how the run goes, not what
    profile: bool = False  # write a jax.profiler trace of one call to WORKDIR/profile
    checkpoint_every_s: float = 60.0  # and at each phase's end and on SIGTERM; 0: every epoch
    loss: LossConfig = LossConfig()
    model: model_lib.ModelConfig = model_lib.ModelConfig()


# TrainConfig fields (and config.train keys) that change how a run goes but not what it computes
RUN_ONLY = ("steps_per_call", "profile", "checkpoint_every_s", "spectrum", "cpu_devices")
