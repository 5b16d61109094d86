"""The layering VAE (the paper's Section 3.3) and the mix it decodes to.

encoder: features [B, D] (standardised) -> Dense(1500) - ReLU - Dense(2 x latent) -> mean, scale
decoder: z [B, latent] -> Dense(144) - ReLU - Dense(k) -> logits -> non-negative weights that
         sum to 1 (softmax, sparsemax or relu/sum)
mix:     weights [B, k] @ sources [k, S] -> audio [B, S]

`create(k, ModelConfig(...))` is the one way to build the model (training, checkpoints, the bundle,
the benchmarks); `init_params` / `abstract_params` give its parameters, or their shapes (restore
targets, without running anything). Parameters are plain pytrees (Flax linen). Nothing here knows
about losses or training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMALISERS = ("softmax", "sparsemax", "relu")


def sparsemax(logits: jax.Array) -> jax.Array:
    """Euclidean projection onto the simplex (Martins & Astudillo 2016): exactly sparse weights.
    logits [..., k] -> [..., k], non-negative, summing to 1."""
    z = jnp.sort(logits, axis=-1)[..., ::-1]
    k = jnp.arange(1, logits.shape[-1] + 1, dtype=logits.dtype)
    cum = jnp.cumsum(z, axis=-1)
    support = (1.0 + k * z) > cum
    k_z = jnp.sum(support, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(cum, k_z.astype(jnp.int32) - 1, axis=-1) - 1.0) / k_z
    return jnp.maximum(logits - tau, 0.0)


def normalise(logits: jax.Array, kind: str) -> jax.Array:
    """Mixing weights from decoder logits [..., k]: non-negative, summing to 1."""
    if kind == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if kind == "sparsemax":
        return sparsemax(logits)
    if kind == "relu":
        w = jax.nn.relu(logits) + 1e-6  # the floor keeps an all-negative row defined
        return w / jnp.sum(w, axis=-1, keepdims=True)
    raise ValueError(f"normaliser must be one of {NORMALISERS}, got {kind!r}")


def mix(weights: jax.Array, sources: jax.Array) -> jax.Array:
    """The layered sound: weights [..., k] @ sources [k, S] -> [..., S]."""
    return weights @ sources


class Encoder(nn.Module):
    hidden: int = 1500
    latent: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [B, D] -> (mean [B, latent], scale [B, latent] > 0)."""
        h = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
        out = nn.Dense(2 * self.latent, name="out")(h)
        mean, raw = jnp.split(out, 2, axis=-1)
        return mean, jax.nn.softplus(raw) + 1e-6


class Decoder(nn.Module):
    hidden: int = 144
    sources: int = 200

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """z [B, latent] -> logits [B, sources]."""
        h = nn.relu(nn.Dense(self.hidden, name="hidden")(z))
        return nn.Dense(self.sources, name="out")(h)


class LayeringVAE(nn.Module):
    sources: int = 200
    latent: int = 32
    encoder_hidden: int = 1500
    decoder_hidden: int = 144
    normaliser: str = "softmax"

    def setup(self):
        self.encoder = Encoder(self.encoder_hidden, self.latent)
        self.decoder = Decoder(self.decoder_hidden, self.sources)

    def __call__(self, x: jax.Array, eps: jax.Array) -> dict[str, jax.Array]:
        """x [B, D] standardised features, eps [B, latent] standard normal noise ->
        {'mean', 'scale', 'z', 'logits', 'weights'}; z = mean + scale * eps."""
        mean, scale = self.encoder(x)
        z = mean + scale * eps
        logits = self.decoder(z)
        return {"mean": mean, "scale": scale, "z": z, "logits": logits,
                "weights": normalise(logits, self.normaliser)}

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        """z [B, latent] -> weights [B, sources]."""
        return normalise(self.decoder(z), self.normaliser)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model's hyperparameters: the fields of `config.model`."""

    latent: int = 32
    encoder_hidden: int = 1500
    decoder_hidden: int = 144
    normaliser: str = "softmax"

    @classmethod
    def from_mapping(cls, m: Mapping) -> ModelConfig:
        """From config.model (a ConfigDict or the dict a bundle stores); unknown keys are an
        error, so a typo cannot silently build the default model."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(m) - names
        if unknown:
            raise ValueError(f"model: unknown fields {sorted(unknown)} (known: {sorted(names)})")
        return cls(latent=int(m.get("latent", cls.latent)),
                   encoder_hidden=int(m.get("encoder_hidden", cls.encoder_hidden)),
                   decoder_hidden=int(m.get("decoder_hidden", cls.decoder_hidden)),
                   normaliser=str(m.get("normaliser", cls.normaliser)))


def create(k: int, mc: ModelConfig) -> LayeringVAE:
    """The layering VAE over k sources."""
    return LayeringVAE(sources=k, **dataclasses.asdict(mc))


def init_params(model: LayeringVAE, dim: int, seed: int) -> dict:
    """Fresh parameters for inputs of dim features, from PRNGKey(seed). One compiled program:
    run op by op, the initialisation took 5 s at the paper's scale on a CPU (1.5 s so)."""

    def init(key):
        return model.init(key, jnp.zeros((1, dim)), jnp.zeros((1, model.latent)))["params"]

    return jax.jit(init)(jax.random.PRNGKey(seed))


def abstract_params(model: LayeringVAE, dim: int) -> dict:
    """The parameters' shapes and dtypes (jax.ShapeDtypeStruct), computing nothing."""
    return jax.eval_shape(lambda: init_params(model, dim, 0))


def kl_nats(mean: jax.Array, scale: jax.Array) -> jax.Array:
    """KL(N(mean, scale^2) || N(0, I)) summed over the latent dims: [B, latent] -> [B] nats."""
    return 0.5 * jnp.sum(mean**2 + scale**2 - 1.0 - 2.0 * jnp.log(scale), axis=-1)
