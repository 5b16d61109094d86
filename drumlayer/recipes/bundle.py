"""A trained model as the evaluation, the notebooks and the studio use it: WORKDIR/bundle/.

    params.msgpack       the best parameters (flax serialisation)
    sources.npy          [k, S] the source library's audio at 22.05 kHz: what the model mixes
    full_sources.npy     [k, R] the same sources at full band (drumlayer.data.fullband): what a
                         person hears and exports; absent in bundles made before it
    standardisation.npz  mean [D], std [D] of the encoder's input
    pca.npz              center [L], components [n, L], variance [n], explained [n]
    bundle.json          config, source names, sample rates (written last)

`save` writes one (the main job's bundle stage), `Bundle.load(workdir)` reads it back with
jit-compiled encode / decode / mix over those arrays, and `latent_pca` computes its principal
directions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.errors import DrumlayerError
from drumlayer.features import extractor, measures, spectral
from drumlayer.model import vae as model_lib
from drumlayer.workdir import Workdir

if TYPE_CHECKING:
    from drumlayer.data.fullband import FullBand


class BundleError(DrumlayerError, FileNotFoundError):
    """The workdir has no (complete) bundle: the main job has not finished training there."""


@dataclasses.dataclass(frozen=True, eq=False)
class Bundle:
    model: model_lib.LayeringVAE
    params: dict
    sources: np.ndarray  # [k, S] at 22.05 kHz
    mean: np.ndarray  # [D]
    std: np.ndarray  # [D]
    names: list[str]
    config: dict
    pca: dict | None  # see features.measures.pca; None until the bundle stage wrote it
    full_sources: np.ndarray  # [k, full_rate * seconds]: the sources as heard
    full_rate: int

    @classmethod
    def load(cls, workdir: str) -> Bundle:
        from flax import serialization

        d = Workdir(workdir).bundle
        path = d.meta
        try:
            with open(path) as f:
                meta = json.load(f)
            path = d.sources
            sources = np.load(path)
            path = d.standardisation
            std = dict(np.load(path))
            path = d.params
            with open(path, "rb") as f:
                raw = serialization.msgpack_restore(f.read())
            full, full_rate = sources, int(meta.get("sample_rate", spectral.SAMPLE_RATE))
            if "full_band" in meta:
                path = d.full_sources
                full, full_rate = np.load(path, mmap_mode="r"), int(meta["full_band"]["rate"])
            path = d.pca
            pca = dict(np.load(path)) if os.path.exists(path) else None
        except FileNotFoundError as e:
            raise BundleError(f"{d} is incomplete ({e.filename} missing): run the main job "
                              f"(python -m drumlayer.main --config=... --workdir={workdir}) "
                              "until it finishes") from e
        except Exception as e:  # noqa: BLE001 - json, numpy, zip and msgpack each raise their own
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise BundleError(f"{path} is damaged ({type(e).__name__}: {first}): delete {d} "
                              "and rerun the main job to rebuild the bundle") from e
        model = model_lib.create(len(meta["source_names"]),
                                 model_lib.ModelConfig.from_mapping(meta["config"]["model"]))
        _check_shapes(d, meta, model, {"sources": sources, "full_sources": full, **std},
                      pca or {}, raw)
        params = jax.tree_util.tree_map(jnp.asarray, raw)
        return cls(model, params, sources, std["mean"], std["std"], meta["source_names"],
                   meta["config"], pca, full, full_rate)

    @property
    def k(self) -> int:
        return self.sources.shape[0]

    @property
    def latent(self) -> int:
        return self.model.latent

    def features(self, clips: jax.Array) -> jax.Array:
        """The model's input features of clips [B, S] -> [B, D] (this run's feature config)."""
        f = self.config["features"]
        return extractor.features(clips, int(f["n_fft"]), int(f["hop"]),
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
        """weights [B, k] -> audio [B, S] at 22.05 kHz: the mix the model hears."""
        return model_lib.mix(jnp.asarray(weights, jnp.float32), jnp.asarray(self.sources))

    def mix_full(self, weights: np.ndarray) -> np.ndarray:
        """weights [B, k] -> audio [B, full_rate * seconds]: the same mix at full band."""
        return np.asarray(weights, np.float32) @ self.full_sources


def _check_shapes(d, meta: dict, model: model_lib.LayeringVAE, arrays: dict, pca: dict,
                  raw: dict) -> None:
    """Every array of a loaded bundle against bundle.json: k sources (its names), D features
    (its n_fft), L latent dimensions; raises BundleError naming the first file that differs.
    None in an expected shape: any length."""
    k, latent = len(meta["source_names"]), model.latent
    dim = int(meta["config"]["features"]["n_fft"]) // 2 + 1
    want = {"sources": (d.sources, (k, None)), "full_sources": (d.full_sources, (k, None)),
            "mean": (d.standardisation, (dim,)), "std": (d.standardisation, (dim,))}
    if pca:
        n = np.shape(pca.get("variance"))[:1]
        want.update({"center": (d.pca, (latent,)), "components": (d.pca, (*n, latent)),
                     "variance": (d.pca, n), "explained": (d.pca, n)})
    have = {**arrays, **pca}
    for name, (path, shape) in want.items():
        got = np.shape(have.get(name))
        fits = len(got) == len(shape) and all(w in (None, g) for w, g in zip(shape, got,
                                                                              strict=True))
        if not fits:
            raise BundleError(f"{path} does not fit {d.meta}: its {name} is {list(got)}, "
                              f"expected {['any' if w is None else w for w in shape]} "
                              f"({k} sources, {dim} features, latent {latent}): delete {d} and "
                              "rerun the main job to rebuild the bundle")
    expected = jax.tree_util.tree_map(lambda a: tuple(a.shape),
                                      model_lib.abstract_params(model, dim))
    if jax.tree_util.tree_map(np.shape, raw) != expected:
        raise BundleError(f"{d.params} does not fit {d.meta}: its parameters are not those of "
                          f"a model of {k} sources, {dim} features and latent {latent}: delete "
                          f"{d} and rerun the main job to rebuild the bundle")


def save(wd: Workdir, b: Bundle, sample_rate: int, full: FullBand) -> None:
    """Write b (made in memory: its full_sources are full.audio) to WORKDIR/bundle/, pca.npz
    too when b has one; bundle.json last, so a crash leaves no bundle that looks complete."""
    from flax import serialization

    d = wd.bundle
    os.makedirs(d.dir, exist_ok=True)
    if os.path.exists(d.meta):
        os.remove(d.meta)
    with open(d.params, "wb") as f:
        f.write(serialization.to_bytes(b.params))
    np.save(d.sources, b.sources)
    # by a new file, not over the old one: a studio may have the old one memory-mapped
    np.save(d.full_sources + ".tmp.npy", full.audio)
    os.replace(d.full_sources + ".tmp.npy", d.full_sources)
    np.savez(d.standardisation, mean=b.mean, std=b.std)
    if b.pca is not None:
        np.savez(d.pca, **b.pca)
    with open(d.meta + ".tmp", "w") as f:
        json.dump({"config": b.config, "source_names": b.names, "sample_rate": sample_rate,
                   "full_band": full.summary()}, f, indent=2)
    os.replace(d.meta + ".tmp", d.meta)


def latent_pca(b: Bundle, feats: np.ndarray, components: int, block: int = 1024) -> dict:
    """The principal directions of the latent means of feats [N, D] (the paper's 4.2: the
    studio's sliders and the evaluation's traversals); see features.measures.pca."""
    z = np.concatenate([np.asarray(b.encode(feats[i:i + block])[0])
                        for i in range(0, len(feats), block)])
    return measures.pca(z, components)

