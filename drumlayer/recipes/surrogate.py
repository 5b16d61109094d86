"""The linear models the refinement runs most of its steps on (recipes.refine), and the dB
measures it compares: pure JAX.

A mix's feature spectrum is modelled as the weighted sum of its layers' (matching pursuit's
model) and its mel power spectrogram as the sum of theirs, squared weights (incoherent sounds),
each shifted by an anchor that makes the model exact at one point (`make_anchor`). `an` below is
a refine.Analyzer (its compression, and `exact` for the anchor).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from drumlayer.features import extractor, measures, spectral

MEL_FFT = 2048
MEL_HOP = 512
MEL_BANDS = 128
TOP_DB = 80.0
CENTROID_HZ = 100.0  # the unit of the centroid term


class Features(NamedTuple):
    """What J compares, of a batch of mixes: the model's features [B, D], log-mel dB
    [B, T, M] and the frames' RMS weights [B, T] (spectral.frame_rms, summing to 1); of
    targets also their RMS-weighted mean MFCC [B, C]."""

    feats: jax.Array
    mel_db: jax.Array
    weights: jax.Array | None = None
    mfcc: jax.Array | None = None
    bin_db: jax.Array | None = None


def power(clips: jax.Array) -> jax.Array:
    """Power spectrogram: clips [B, S] -> [B, T, MEL_FFT // 2 + 1]."""
    return jnp.abs(spectral.stft(clips, MEL_FFT, MEL_HOP)) ** 2


def lsd_term(bin_db: jax.Array, target_db: jax.Array) -> jax.Array:
    """The evaluation's log-spectral distance (measures.log_spectral_distance) of power
    spectrograms in dB: [B, T, F] x 2 -> [B]."""
    return measures.db_spectral_distance(bin_db, target_db, TOP_DB, eps=1e-6)


def mel_power(clips: jax.Array, filterbank: jax.Array) -> jax.Array:
    """Mel power spectrogram: clips [B, S] -> [B, T, M]."""
    return power(clips) @ filterbank.T


def to_db(power: jax.Array) -> jax.Array:
    return 10.0 * jnp.log10(jnp.maximum(power, 1e-10))


def db_distance(mel_db: jax.Array, target_db: jax.Array) -> jax.Array:
    """Mean squared dB difference, both floored TOP_DB below the target's loudest band:
    [B, T, M] x 2 -> [B]."""
    floor = jnp.max(target_db, axis=(-2, -1), keepdims=True) - TOP_DB
    d = jnp.maximum(mel_db, floor) - jnp.maximum(target_db, floor)
    return jnp.mean(d * d, axis=(-2, -1))


def mfcc_distance(mix: Features, target: Features, dct: jax.Array) -> jax.Array:
    """The squared distance of the RMS-weighted mean MFCCs (librosa's, as the evaluation's MFCC
    distance takes them): mix (mel_db [B, T, M], weights [B, T]) against target.mfcc [B, C]
    -> [B]. The mix's dB are floored with the target's (as `db_distance`); the DCT of the
    weighted mean is the weighted mean of the DCTs."""
    floor = jnp.max(target.mel_db, axis=(-2, -1), keepdims=True) - TOP_DB
    mean = jnp.einsum("bt,btm->bm", mix.weights, jnp.maximum(mix.mel_db, floor))
    return jnp.sum((mean @ dct - target.mfcc) ** 2, axis=-1)


def centroid(feats: jax.Array, compression: str, n_fft: int) -> jax.Array:
    """The centroid (Hz) of the features' RMS-weighted spectrum: [B, D] -> [B]."""
    spec = feats[:, :-1]
    if compression == "log":
        spec = jnp.expm1(spec)
    hz = jnp.arange(spec.shape[-1], dtype=spec.dtype) * (spectral.SAMPLE_RATE / n_fft)
    return spec @ hz / jnp.maximum(jnp.sum(spec, axis=-1), 1e-9)


class Layers(NamedTuple):
    """The layers a surrogate mixes: every source (index None, spectra [k, D - 1], mel
    [k, T * M], frame energies [k, T]) or each target's own few (index [B, K], spectra
    [B, K, D - 1], mel [B, K, T * M], energy [B, K, T])."""

    index: jax.Array | None
    spectra: jax.Array
    mel: jax.Array
    energy: jax.Array

    def full(self, v: jax.Array, k: int) -> jax.Array:
        """v over these layers [B, K] -> over every source [B, k]."""
        if self.index is None:
            return v
        return jnp.einsum("bj,bjk->bk", v, jax.nn.one_hot(self.index, k, dtype=v.dtype))

    def mix(self, v: jax.Array, sources: jax.Array) -> jax.Array:
        """The audio of v [B, K] over these layers of sources [k, S]: [B, S] (a K-row gather
        for each target, not a product with all k)."""
        if self.index is None:
            return v @ sources
        return jnp.einsum("bj,bjs->bs", v, sources[self.index])

    def combine(self, v: jax.Array, table: jax.Array) -> jax.Array:
        return v @ table if self.index is None else jnp.einsum("bj,bjd->bd", v, table)


def frame_energy(clips: jax.Array) -> jax.Array:
    """The energy of the evaluation's RMS frames: clips [B, S] -> [B, T]."""
    return spectral.frame_rms(clips) ** 2


def rms_weights(energy: jax.Array) -> jax.Array:
    """Frame energies [..., T] -> RMS weights summing to 1 [..., T]."""
    rms = jnp.sqrt(energy + 1e-14)
    return rms / jnp.sum(rms, -1, keepdims=True)


def surrogate(an, layers: Layers, v: jax.Array, anchor: tuple) -> Features:
    """Features of v [B, K] by the linear models (feature spectra add; mel powers and frame
    energies add as incoherent sounds' do), shifted by `anchor` (see `make_anchor`)."""
    spec = extractor.compress(layers.combine(v, layers.spectra), an.compression) + anchor[0]
    mel = to_db(layers.combine(v * v, layers.mel)).reshape(anchor[2].shape) + anchor[2]
    energy = layers.combine(v * v, layers.energy) * anchor[3]
    return Features(jnp.concatenate([spec, anchor[1]], axis=-1), mel, rms_weights(energy))


def make_anchor(an, layers: Layers, v: jax.Array) -> tuple:
    """(spectrum, attack, mel, energy) corrections that make the surrogate exact at v [B, K]:
    offsets, the last a ratio; the attack time is held at its exact value (it is not
    additive)."""
    x = layers.mix(v, an.constants.sources)
    ex, energy = an.target(x), frame_energy(x)
    zero = (jnp.zeros(ex.feats[:, :-1].shape), ex.feats[:, -1:], jnp.zeros(ex.mel_db.shape),
            jnp.ones(energy.shape))
    sur = surrogate(an, layers, v, zero)
    model = layers.combine(v * v, layers.energy)
    return jax.lax.stop_gradient(
        (ex.feats[:, :-1] - sur.feats[:, :-1], ex.feats[:, -1:], ex.mel_db - sur.mel_db,
         energy / jnp.maximum(model, 1e-20)))


def adam(loss, params, steps: int, lr: float, project):
    """`steps` Adam steps on sum(loss(params)) (a [B] loss of a pytree of [B, ...] leaves: each
    row's steps depend on its own loss only), each followed by project."""
    if steps == 0:
        return params
    opt = optax.adam(lr)

    def body(carry, _):
        p, s = carry
        g = jax.grad(lambda q: jnp.sum(loss(q)))(p)
        u, s = opt.update(g, s)
        return (project(optax.apply_updates(p, u)), s), None

    return jax.lax.scan(body, (params, opt.init(params)), None, steps)[0][0]
