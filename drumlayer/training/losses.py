"""The training loss, per example:

    pretraining: cross-entropy of the decoder's logits against each source's own index;
    training:    MSE(features(weights @ sources), features(target))
                 + db_weight * MSE(dB spectrum of the mix, dB spectrum of the target)
                 + beta * max(KL - free_bits * ln 2, 0)

where the dB spectra are floored DB_RANGE below the target's loudest bin (db_weight 0: the
paper's loss), and how the mix's spectrum is computed (SPECTRA).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from drumlayer.features import attack, extractor, spectral
from drumlayer.model import vae as model_lib
from drumlayer.training.distributed import put


@dataclasses.dataclass(frozen=True)
class LossConfig:
    beta: float = 0.02
    free_bits: float = 1000.0
    db_weight: float = 0.0
    input_dropout: float = 0.0  # share of the encoder's input features zeroed in training
    n_fft: int = 4096
    hop: int = 512
    compression: str = "linear"
    spectrum: str = "fft"  # how the mix's spectrum is computed (SPECTRA); not what


# How the loss computes the spectrum of a mix: "fft" transforms the mix, "linear" mixes the
# sources' STFTs (`spectral.mix_spectrum`); the same up to float rounding. "auto" picks "linear"
# on a CPU for at most LINEAR_MAX_SOURCES sources, where it measured faster (the step in one
# process, alternating calls: 1.19x at 20 sources, 1.02x at 30; 0.93x at 40, since the FFT
# path computes its gradient in the forward pass, in chunks of 8 clips), "fft" otherwise.
SPECTRA = ("auto", "fft", "linear")
LINEAR_MAX_SOURCES = 32


def resolve_spectrum(kind: str, k: int, backend: str | None = None) -> str:
    """'fft' or 'linear' for `kind` (one of SPECTRA) with k sources on `backend` (JAX's
    default when None)."""
    if kind not in SPECTRA:
        raise ValueError(f"train.spectrum must be one of {SPECTRA}, got {kind!r}")
    if kind != "auto":
        return kind
    backend = backend or jax.default_backend()
    return "linear" if backend == "cpu" and k <= LINEAR_MAX_SOURCES else "fft"


def make_consts(mesh: Mesh, sources: np.ndarray, mean: np.ndarray, std: np.ndarray,
                lc: LossConfig) -> tuple:
    """What every step reads, replicated on the mesh: (sources [k, S], mean [D], std [D],
    the sources' STFTs [T, k, n_fft] for lc.spectrum == 'linear', else None)."""
    consts = tuple(put(mesh, np.asarray(a, np.float32)) for a in (sources, mean, std))
    spectra = None
    if lc.spectrum == "linear":
        spectra = spectral.source_spectra(consts[0], lc.n_fft, lc.hop)
        spectra = jax.device_put(spectra, NamedSharding(mesh, P()))
    return (*consts, spectra)


def per_example(params, model, phase: str, lc: LossConfig, feats, labels, eps, consts,
                keep=None):
    """Per-example loss and metrics. feats [B, D] raw features, labels [B] (pretraining),
    eps [B, latent]. consts: `make_consts`'s. keep [B, D] (training with lc.input_dropout):
    1 where the encoder sees a standardised feature, 0 where it is dropped; the kept ones
    are scaled by 1 / (1 - input_dropout). The targets are the whole features either way."""
    sources, mean, std, spectra = consts
    x = (feats - mean) / std
    if keep is not None:
        x = x * keep / (1.0 - lc.input_dropout)
    out = model.apply({"params": params}, x, eps)
    w = out["weights"]
    m = {"active_layers": jnp.sum(w > 0.01, axis=-1).astype(jnp.float32),
         "max_weight": jnp.max(w, axis=-1)}
    if phase == "pretrain":
        ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels)
        m["accuracy"] = (jnp.argmax(out["logits"], -1) == labels).astype(jnp.float32)
        return ce, {**m, "cross_entropy": ce}
    mixed = model_lib.mix(w, sources)
    d = feats.shape[-1]

    def spectrum_loss(spectrum, target):
        """The loss's spectral terms, row by row: [B, F], [B, F] -> [B]."""
        f = extractor.compress(spectrum, lc.compression)
        loss = jnp.sum((f - target) ** 2, axis=-1) / d
        if lc.db_weight:
            loss = loss + lc.db_weight * spectrum_db_distance(f, target, lc.compression)
        return loss

    if lc.spectrum == "linear":
        spectrum = spectral.mix_spectrum(w, mixed, spectra, lc.n_fft, lc.hop)
        spec_loss = spectrum_loss(spectrum, feats[:, :-1])
        spectrum = jax.lax.stop_gradient(spectrum)
    else:  # one STFT and its inverse for value and gradient (spectral.spectrum_loss)
        spec_loss, spectrum = spectral.spectrum_loss(mixed, feats[:, :-1], spectrum_loss,
                                                     lc.n_fft, lc.hop)
    lat = attack.soft_log_attack_time(mixed)
    # The metrics, from the same numbers without gradients; the loss: the same MSE over all
    # D features (split into its spectral terms and the attack time's) + the KL term.
    f = jnp.concatenate([extractor.compress(spectrum, lc.compression),
                         jax.lax.stop_gradient(lat)[:, None]], axis=-1)
    kl = model_lib.kl_nats(out["mean"], out["scale"])
    kl_term = lc.beta * jnp.maximum(kl - lc.free_bits * math.log(2.0), 0.0)
    m = {**m, "reconstruction": jnp.mean((f - feats) ** 2, axis=-1), "kl_bits": kl / math.log(2.0),
         "kl_active": (kl_term > 0).astype(jnp.float32)}
    if lc.db_weight:
        m["spectrum_db"] = spectrum_db_distance(f[:, :-1], feats[:, :-1], lc.compression)
    return spec_loss + (lat - feats[:, -1]) ** 2 / d + kl_term, m


DB_RANGE = 80.0  # dB below the target's loudest bin where the dB term stops counting


def spectrum_db_distance(f: jax.Array, target: jax.Array, compression: str) -> jax.Array:
    """Mean squared dB difference of the (compressed) RMS-weighted spectra f and target
    [B, F], both floored DB_RANGE below the target's loudest bin: -> [B]."""
    spec = [x if compression == "linear" else jnp.expm1(x) for x in (f, target)]
    db = [20.0 * jnp.log10(jnp.maximum(s, 1e-9)) for s in spec]
    floor = jnp.max(db[1], axis=-1, keepdims=True) - DB_RANGE
    d = jnp.maximum(db[0], floor) - jnp.maximum(db[1], floor)
    return jnp.mean(d * d, axis=-1)
