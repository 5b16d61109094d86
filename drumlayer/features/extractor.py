"""The model's features, what the encoder sees and the loss compares: the RMS-weighted
spectrum (compressed or not) and the smooth log-attack time. clips [..., S] -> [..., n_fft/2 + 1].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from drumlayer.features.attack import soft_log_attack_time
from drumlayer.features.batching import flattened
from drumlayer.features.spectral import HOP, N_FFT, SAMPLE_RATE, weighted_spectrum

COMPRESSIONS = ("linear", "log")


def compress(spectrum: jax.Array, compression: str) -> jax.Array:
    """'linear': the magnitudes as they are; 'log': log1p, which tames the range of the loud
    low bins against the quiet highs."""
    if compression == "linear":
        return spectrum
    if compression == "log":
        return jnp.log1p(spectrum)
    raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")


@functools.partial(jax.jit, static_argnames=("n_fft", "hop", "sample_rate", "compression",
                                             "chunk"))
@flattened
def features(clips: jax.Array, n_fft: int = N_FFT, hop: int = HOP,
             sample_rate: int = SAMPLE_RATE, compression: str = "linear",
             chunk: int | None = -1) -> jax.Array:
    """What the model sees and what its loss compares: [..., S] -> [..., n_fft // 2 + 1].

    The RMS-weighted spectrum (n_fft // 2 bins, compressed; computed in chunks of `chunk`
    clips) followed by the smooth log-attack time (differentiable, so the same function serves
    the encoder's input and the loss)."""
    spec = weighted_spectrum(clips, n_fft, hop, chunk=chunk)
    return _with_attack(spec, clips, sample_rate, compression)


def _with_attack(spectrum: jax.Array, clips: jax.Array, sample_rate: int,
                 compression: str) -> jax.Array:
    """[compress(spectrum [B, F]), soft_log_attack_time(clips [B, S])] -> [B, F + 1]."""
    lat = soft_log_attack_time(clips, sample_rate)
    return jnp.concatenate([compress(spectrum, compression), lat[:, None]], axis=-1)
