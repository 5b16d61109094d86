"""Shaping by gradient: the cutoff, the decay and the start delay of a recipe's leading layers,
refined on the exact objective (pure JAX).

The shaping refinement (recipes.refine, 'shape') puts each layer on one copy of its source from
a grid. Here the `tune_slots` leading layers of each target (shaped ones first, then by weight)
leave the grid: their filter's cutoff, their decay and their delay are continuous parameters
refined by Adam on the exact J together with every layer's weight; their pitch and the kind of
filter stay the grid's. A slot's layer is rendered as recipes.shaping renders it, to float
rounding (tests/test_tune.py):

    f = irfft(rfft(p, F) * H(e^{jw}) * e^{-jw tau}, F)[:S]       (filtered, delayed by tau)
    y[t] = f[t] * 10 ** (-3 (t - tau) / (rate * decay))           (the decay from its own start)

with p [S] the source pitched (the bank's copy with that pitch and nothing else), H the 2-pole
filter's frequency response and F >= S + TAIL a power of two: the product is lfilter's
recursion up to the impulse response's part past TAIL - tau samples, below float precision for
any cutoff from 20 Hz (a pole radius of 0.9971 to the 7,000th power: 1e-9) and any delay up to
MAX_DELAY_S; an integer delay is an exact shift into the zero padding. Delays are whole
samples at the end (the recipe's offsets), and the result is kept only where its exact J is
below the grid's.

Shapes: B targets, K layers each (the recipe's leading layers), Ks slots, S samples.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.features import spectral
from drumlayer.recipes import shaping
from drumlayer.recipes.recipe import CUTOFF_HZ
from drumlayer.recipes.surrogate import adam

DECAY_S = (0.01, 10.0)  # LayerShape's range
DELAY_UNIT = 0.005  # seconds: the delay's parameter is in these units (its steps' scale)
MAX_DELAY_S = 0.05
TAIL = 8192  # samples of zero padding (module docstring)


def fft_length(n: int) -> int:
    """The FFT length F for layers of n samples: the power of two >= n + TAIL."""
    return 1 << (n + TAIL - 1).bit_length()


class Grid(NamedTuple):
    """Per variant of the grid [V]: the variant with its pitch and nothing else (int), the
    filter (0 none, 1 low-pass, 2 high-pass), its cutoff (Hz) and decay (s, 0: none)."""

    base: np.ndarray
    kind: np.ndarray
    cutoff: np.ndarray
    decay: np.ndarray


def grid_table(variants: list) -> Grid:
    plain_pitch = {v.pitch_cents: j for j, v in enumerate(variants)
                   if v.filter is None and v.decay is None}
    kinds = {None: 0, "lpf": 1, "hpf": 2}
    return Grid(np.array([plain_pitch[v.pitch_cents] for v in variants], np.int32),
                np.array([kinds[v.filter] for v in variants], np.int32),
                np.array([v.cutoff_hz or 1000.0 for v in variants], np.float32),
                np.array([v.decay or 0.0 for v in variants], np.float32))


def response(kind: jax.Array, cutoff: jax.Array, rate: int, n: int) -> jax.Array:
    """H(e^{jw}) of shaping.biquad at the rfft's bins of an n-point FFT: kind, cutoff [...]
    -> complex [..., n // 2 + 1] (kind 0: 1)."""
    w0 = 2 * jnp.pi * cutoff / rate
    high = kind == 2
    through = (kind == 0) | ((kind == 1) & (w0 >= jnp.pi * 0.999))
    w0 = jnp.minimum(w0, jnp.pi * 0.999)
    alpha, c = jnp.sin(w0) / (2 * shaping.Q), jnp.cos(w0)
    b0 = jnp.where(high, (1 + c) / 2, (1 - c) / 2)
    b1 = jnp.where(high, -(1 + c), 1 - c)
    z1 = jnp.exp(-1j * 2 * jnp.pi * jnp.arange(n // 2 + 1) / n)  # z^-1
    z2 = z1 * z1
    num = b0[..., None] + b1[..., None] * z1 + b0[..., None] * z2
    den = (1 + alpha)[..., None] - 2 * c[..., None] * z1 + (1 - alpha)[..., None] * z2
    return jnp.where(through[..., None], 1.0 + 0j, num / den)


def render(spectra: jax.Array, kind: jax.Array, cutoff: jax.Array, decay: jax.Array,
           delay: jax.Array, rate: int, n: int) -> jax.Array:
    """Slots' layers [..., n]: spectra [..., F // 2 + 1] (rfft of the pitched sources at
    F = fft_length(n) points); kind, cutoff (Hz), decay (s, 0: none), delay (samples, 0 to
    MAX_DELAY_S, may be fractional) [...]."""
    m = fft_length(n)
    phase = jnp.exp(-1j * 2 * jnp.pi * jnp.arange(m // 2 + 1) / m * delay[..., None])
    f = jnp.fft.irfft(spectra * response(kind, cutoff, rate, m) * phase, m)[..., :n]
    t = jnp.maximum(jnp.arange(n) - delay[..., None], 0.0) / rate
    env = 10.0 ** (-3.0 * t / jnp.where(decay > 0, decay, 1.0)[..., None])
    return f * jnp.where(decay[..., None] > 0, env, 1.0)


class Tuned(NamedTuple):
    """The slots' refined shaping [B, K] (the other layers keep the grid's, delay 0) and every
    layer's weight."""

    vs: jax.Array
    cutoff: jax.Array
    decay: jax.Array
    delay: jax.Array  # whole samples


def tune(sh, target, idx: jax.Array, pick: jax.Array, vs: jax.Array,
         table: Grid) -> tuple[Tuned, jax.Array]:
    """Refine the slots of each target (module docstring). sh: the Analyzer over the bank;
    idx, pick, vs [B, K] (source, its copy, weight). -> (Tuned, exact J [B] plus the cost of
    the audible shaped layers): the better of the grid's and the tuned, per target."""
    cfg, bank = sh.config, sh.constants
    nv, k, n = len(table.base), idx.shape[1], bank.sources.shape[-1]
    rate = spectral.SAMPLE_RATE
    kind, cut0, dec0 = (jnp.asarray(a)[pick] for a in table[1:])
    shaped = (pick > 0).astype(vs.dtype)

    def cost(v):
        return cfg.shape_cost * jnp.sum(shaped * (v > 0), -1)

    slots = jax.lax.top_k(shaped * 1e3 + vs, min(cfg.tune_slots, k))[1]  # [B, Ks]
    at = jax.nn.one_hot(slots, k, dtype=vs.dtype)  # [B, Ks, K]
    in_slot = jnp.sum(at, 1)  # [B, K]: 1 where the layer is a slot's

    def take(x):
        return jnp.take_along_axis(x, slots, axis=1)

    base = bank.sources[take(idx) * nv + jnp.asarray(table.base)[take(pick)]]  # [B, Ks, S]
    spectra = jnp.fft.rfft(base, fft_length(n))
    rows = bank.sources[idx * nv + pick]  # [B, K, S]: the grid's layers
    s_kind, s_cut, s_dec = take(kind), take(cut0), take(dec0)

    def mix(p):
        v, log_cut, log_dec, d = p
        cut = jnp.clip(jnp.exp(log_cut), *CUTOFF_HZ)
        dec = jnp.where(s_dec > 0, jnp.clip(jnp.exp(log_dec), *DECAY_S), 0.0)
        delay = d * DELAY_UNIT * rate
        y = render(spectra, s_kind, cut, dec, delay, rate, n)
        v_slots = jnp.einsum("bj,bsj->bs", v, at)
        rest = jnp.einsum("bj,bjs->bs", v * (1 - in_slot), rows)
        return rest + jnp.einsum("bs,bsn->bn", v_slots, y), cut, dec, delay

    def loss(p):
        return sh.objective(sh.target(mix(p)[0]), target)

    p0 = (vs, jnp.log(s_cut), jnp.log(jnp.where(s_dec > 0, s_dec, 1.0)),
          jnp.zeros(s_cut.shape, vs.dtype))
    p = adam(loss, p0, cfg.tune_steps, cfg.tune_learning_rate,
             lambda q: (jnp.maximum(q[0], 0.0), *q[1:3],
                        jnp.clip(q[3], 0.0, MAX_DELAY_S / DELAY_UNIT)))
    p = (*p[:3], jnp.round(p[3] * DELAY_UNIT * rate) / (DELAY_UNIT * rate))
    x, cut, dec, delay = mix(p)
    j_grid = sh.objective(sh.target(jnp.einsum("bj,bjs->bs", vs, rows)), target) + cost(vs)
    j_tuned = sh.objective(sh.target(x), target) + cost(p[0])
    better = (j_tuned < j_grid)[:, None]

    def spread(x_slots, fill):
        return jnp.where(in_slot > 0, jnp.einsum("bs,bsj->bj", x_slots, at), fill)

    out = Tuned(jnp.where(better, p[0], vs),
                jnp.where(better, spread(cut, cut0), cut0),
                jnp.where(better, spread(dec, dec0), dec0),
                jnp.where(better, spread(delay, 0.0), 0.0))
    return out, jnp.minimum(j_tuned, j_grid)
