"""The one place that knows the layout of a run's working directory.

    WORKDIR/config.json       the config the run was started with
    WORKDIR/corpus/           clips.npy, manifest.csv, rejected.csv, corpus.json, augmented.*
    WORKDIR/features/         clips.npy [N, 2049], augmented.npy, features.json
    WORKDIR/selection/        sources.json, sources.npy [k, 22050], targets.json, selection.json
    WORKDIR/checkpoints/      Orbax: the latest epochs, and best/ (by validation loss)
    WORKDIR/metrics.jsonl     per step and per epoch; WORKDIR/tensorboard/ the same as events
    WORKDIR/bundle/           params.msgpack, sources.npy, standardisation.npz, bundle.json
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Workdir:
    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.path.abspath(os.path.expanduser(self.root)))

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def config(self) -> str:
        return self.path("config.json")

    @property
    def corpus(self) -> str:
        return self.path("corpus")

    @property
    def features(self) -> str:
        return self.path("features")

    @property
    def selection(self) -> str:
        return self.path("selection")

    @property
    def checkpoints(self) -> str:
        return self.path("checkpoints")

    @property
    def bundle(self) -> str:
        return self.path("bundle")
