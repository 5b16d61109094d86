"""A trained model as the evaluation, the notebooks and the studio use it: WORKDIR/bundle/.

    params.msgpack       the best parameters (flax serialisation)
    sources.npy          [k, S] the source library's audio
    standardisation.npz  mean [D], std [D] of the encoder's input
    pca.npz              center [L], components [n, L], variance [n], explained [n]
    bundle.json          config, source names, sample rate

`Bundle.load(workdir)` gives jit-compiled encode / decode / mix over those arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer import model as model_lib
from drumlayer import spectral
from drumlayer.workdir import Workdir


class BundleError(FileNotFoundError):
    """The workdir has no (complete) bundle: the main job has not finished training there."""


@dataclasses.dataclass(frozen=True, eq=False)
class Bundle:
    model: model_lib.LayeringVAE
    params: dict
    sources: np.ndarray  # [k, S]
    mean: np.ndarray  # [D]
    std: np.ndarray  # [D]
    names: list[str]
    config: dict
    pca: dict | None  # see metrics.pca; None until the bundle stage wrote it

    @classmethod
    def load(cls, workdir: str) -> Bundle:
        from flax import serialization

        d = Workdir(workdir).bundle
        try:
            with open(os.path.join(d, "bundle.json")) as f:
                meta = json.load(f)
            sources = np.load(os.path.join(d, "sources.npy"))
            std = np.load(os.path.join(d, "standardisation.npz"))
            with open(os.path.join(d, "params.msgpack"), "rb") as f:
                raw = serialization.msgpack_restore(f.read())
        except FileNotFoundError as e:
            raise BundleError(f"{d} is incomplete ({e.filename} missing): run the main job "
                              f"(python -m drumlayer.main --config=... --workdir={workdir}) "
                              "until it finishes") from e
        m = meta["config"]["model"]
        model = model_lib.LayeringVAE(
            sources=sources.shape[0], latent=int(m["latent"]),
            encoder_hidden=int(m["encoder_hidden"]), decoder_hidden=int(m["decoder_hidden"]),
            normaliser=m["normaliser"])
        pca_path = os.path.join(d, "pca.npz")
        pca = dict(np.load(pca_path)) if os.path.exists(pca_path) else None
        params = jax.tree_util.tree_map(jnp.asarray, raw)
        return cls(model, params, sources, std["mean"], std["std"], meta["source_names"],
                   meta["config"], pca)

    @property
    def k(self) -> int:
        return self.sources.shape[0]

    @property
    def latent(self) -> int:
        return self.model.latent

    def features(self, clips: jax.Array) -> jax.Array:
        """The model's input features of clips [B, S] -> [B, D] (this run's feature config)."""
        f = self.config["features"]
        return spectral.features(clips, int(f["n_fft"]), int(f["hop"]),
                                 compression=f["compression"])

    @functools.cached_property
    def _encode(self):
        return jax.jit(lambda p, x: self.model.apply(
            {"params": p}, (x - self.mean) / self.std, method=model_lib.LayeringVAE.encode))

    @functools.cached_property
    def _decode(self):
        return jax.jit(lambda p, z: self.model.apply(
            {"params": p}, z, method=model_lib.LayeringVAE.decode))

    def encode(self, feats: jax.Array) -> tuple[jax.Array, jax.Array]:
        """feats [B, D] raw features -> (mean [B, L], scale [B, L])."""
        return self._encode(self.params, jnp.asarray(feats, jnp.float32))

    def decode(self, z: jax.Array) -> jax.Array:
        """z [B, L] -> weights [B, k] (non-negative, summing to 1)."""
        return self._decode(self.params, jnp.asarray(z, jnp.float32))

    def mix(self, weights: jax.Array) -> jax.Array:
        """weights [B, k] -> audio [B, S]."""
        return model_lib.mix(jnp.asarray(weights, jnp.float32), jnp.asarray(self.sources))
