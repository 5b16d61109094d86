"""Typed results of the evaluation's experiments, apart from the code that makes them and the
report that draws them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from drumlayer.recipes.bundle import Bundle


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    pairs: int = 200
    points: int = 21
    pca_range: float = 20.0
    pca_points: int = 21
    audio_examples: int = 3
    generation_draws: int = 256  # sounds of each generated set (evaluation.generation)
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict) -> EvalConfig:
        e = config.get("evaluate", {})
        fields = {f.name for f in dataclasses.fields(cls)} - {"seed"}
        return cls(**{k: v for k, v in e.items() if k in fields}, seed=int(config["seed"]))


@dataclasses.dataclass
class TestSet:
    ids: np.ndarray  # [N] corpus ids
    names: list[str]  # [N] "kit / instrument"
    audio: np.ndarray  # [N, S]
    features: np.ndarray  # [N, D]
    rows: list[dict]  # [N] their manifest rows (to hear their recordings at full band)


@dataclasses.dataclass(frozen=True)
class Measures:
    """One value (or array) per measure of a path: the weights, the centroid, the MFCCs."""

    weights: object
    centroid: object
    mfcc: object

    def items(self):
        return ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))

    def map(self, fn) -> Measures:
        return Measures(**{k: fn(v) for k, v in self.items()})


@dataclasses.dataclass(frozen=True)
class Interpolation:
    """Section 4.1: P pairs, T points each."""

    pairs: np.ndarray  # [P, 2] indices into the test clips
    alpha: np.ndarray  # [T]
    weights: np.ndarray  # [P, T, k]
    centroid: np.ndarray  # [P, T] Hz
    mfcc: np.ndarray  # [P, T, 13]
    distance: Measures  # of [P, T]: from the start of each path
    mean: Measures  # of [T]: distance averaged over the pairs
    r2: Measures  # of floats: R^2 of each mean curve against a straight line
    new_layers: np.ndarray  # [P] layers active only mid-path


@dataclasses.dataclass(frozen=True)
class PrincipalDirections:
    """Section 4.2: N test clips moved along C directions over T offsets."""

    offsets: np.ndarray  # [T]
    weights: np.ndarray  # [N, C, T, k]
    centroid: np.ndarray  # [N, C, T]
    mfcc: np.ndarray  # [N, C, T, 13]
    explained: np.ndarray  # [C] fraction of the latent variance
    variance: np.ndarray  # [C]
    centroid_span_hz: np.ndarray  # [C] means over the clips
    mfcc_span: np.ndarray  # [C] L2 between the two ends
    weight_change: np.ndarray  # [C] L2 between the two ends
    active_layers: np.ndarray  # [C] mean along the path


@dataclasses.dataclass(frozen=True)
class Scores:
    """Section 4.4, per test clip [N]: a mix measured against its target."""

    # (alphabetical: the order of metrics.json, as it always was)
    active_layers: np.ndarray  # weights > metrics.ACTIVE
    centroid_error_hz: np.ndarray
    feature_mse: np.ndarray  # in the loss's feature space
    log_spectral_distance_db: np.ndarray
    mfcc_distance: np.ndarray
    multi_resolution_stft: np.ndarray
    nonzero_layers: np.ndarray  # weights > 1e-6

    def items(self):
        return ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class Fit:
    """One method's mixes of the test clips: its weights [N, k] and their scores."""

    weights: np.ndarray  # times the recipe's gain, where it has one
    scores: Scores
    seconds_per_sound: float = 0.0  # to find the weights (after compilation)
    # per clip, where the recipe is more than its weights: its start delays and each layer's
    # shaping (refine.recipe_fields); None: the plain mix of the weights
    layers: list | None = None


@dataclasses.dataclass
class Results:
    """Everything `run` measures on a workdir."""

    bundle: Bundle
    test: TestSet
    z: np.ndarray  # [N, L] latent means of the test clips
    config: EvalConfig
    interpolation: Interpolation
    pca: PrincipalDirections
    cardinality: dict  # metrics.cardinality of the model's weights
    reconstruction: dict[str, Fit]  # 'model', 'model_pruned', REFINED, baselines.BASELINES
    seconds: dict[str, float]
    outside: TestSet | None = None  # the out-of-library set, when the run has one
    outside_reconstruction: dict[str, Fit] | None = None  # its fits, by method as above
    generation: dict | None = None  # evaluation.generation.measure of the generated sounds
