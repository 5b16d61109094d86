"""Descriptors of the paper's Section 4: librosa-compatible mel filterbank, MFCC and spectral
centroid, and their RMS-weighted means over frames. clips [..., S] at 22.05 kHz.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.features.batching import default_chunk, flattened, map_chunks
from drumlayer.features.spectral import HOP, SAMPLE_RATE, frame_rms, rms_weighted_mean, stft


def _hz_to_mel(f):
    """Slaney's mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) /
                    (np.log(6.4) / 27.0), lin)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)),
                    m * (200.0 / 3))


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters [n_mels, n_fft // 2 + 1] (librosa's default)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=16)
def dct_matrix(n: int, k: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix [n, k]: x @ D = scipy.fft.dct(x, 2, norm='ortho')[..., :k]."""
    i = np.arange(n)[:, None]
    j = np.arange(k)[None, :]
    d = np.cos(np.pi * j * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    d[:, 0] /= np.sqrt(2.0)
    return d.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_mfcc", "n_fft", "hop",
                                             "n_mels", "top_db"))
def mfcc(clips: jax.Array, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 13, n_fft: int = 2048,
         hop: int = HOP, n_mels: int = 128, top_db: float = 80.0) -> jax.Array:
    """librosa.feature.mfcc's defaults: power mel spectrogram (128 Slaney bands), power_to_db
    (ref 1, amin 1e-10, top_db 80 below each clip's maximum), DCT-II ortho.
    clips [..., S] -> [..., frames, n_mfcc]."""
    power = jnp.abs(stft(clips, n_fft, hop)) ** 2
    mel = power @ mel_filterbank(sample_rate, n_fft, n_mels).T
    db = 10.0 * jnp.log10(jnp.maximum(mel, 1e-10))
    db = jnp.maximum(db, db.max(axis=(-2, -1), keepdims=True) - top_db)
    return db @ dct_matrix(n_mels, n_mfcc)


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_fft", "hop"))
def spectral_centroid(clips: jax.Array, sample_rate: int = SAMPLE_RATE, n_fft: int = 2048,
                      hop: int = HOP) -> jax.Array:
    """librosa.feature.spectral_centroid's defaults (magnitude, n_fft 2048):
    clips [..., S] -> [..., frames] in Hz; a silent frame has centroid 0."""
    mag = jnp.abs(stft(clips, n_fft, hop))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate).astype(np.float32)
    total = mag.sum(-1)
    return jnp.where(total > 1e-10, (mag @ freqs) / jnp.maximum(total, 1e-10), 0.0)


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_mfcc", "chunk"))
@flattened
def weighted_mfcc(clips: jax.Array, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 13,
                  chunk: int | None = -1) -> jax.Array:
    """RMS-weighted mean MFCC: [..., S] -> [..., n_mfcc] (weights: `frame_rms`, same frames)."""

    def one(x):
        return rms_weighted_mean(mfcc(x, sample_rate, n_mfcc), frame_rms(x))

    return map_chunks(one, clips, default_chunk() if chunk == -1 else chunk)


@functools.partial(jax.jit, static_argnames=("sample_rate", "chunk"))
@flattened
def weighted_centroid(clips: jax.Array, sample_rate: int = SAMPLE_RATE,
                      chunk: int | None = -1) -> jax.Array:
    """RMS-weighted mean spectral centroid in Hz: [..., S] -> [...]."""

    def one(x):
        return rms_weighted_mean(spectral_centroid(x, sample_rate)[..., None], frame_rms(x))[:, 0]

    return map_chunks(one, clips, default_chunk() if chunk == -1 else chunk)
