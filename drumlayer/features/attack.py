"""Log-attack time (Peeters' 20%-90% convention) on a fine energy envelope: the exact one for
analysis and a smooth one, with the same value to rounding, for the loss. clips [..., S] -> [...].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from drumlayer.features.batching import flattened
from drumlayer.features.spectral import SAMPLE_RATE, safe_sqrt

# Energy envelope for the attack: 2.9 ms windows every 0.73 ms (hop 512 is 23 ms: far too coarse).
ENV_WIN = 64
ENV_HOP = 16


@flattened
def energy_envelope(clips: jax.Array, win: int = ENV_WIN, hop: int = ENV_HOP) -> jax.Array:
    """RMS over `win` samples every `hop` samples (win a multiple of hop), not centred:
    clips [..., S] -> [..., (S - win) // hop + 1]; frame k covers samples [k*hop, k*hop + win)."""
    return _envelope(clips, win, hop)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _envelope(clips: jax.Array, win: int, hop: int) -> jax.Array:
    b, s = clips.shape
    k = win // hop
    n_blocks = s // hop
    blocks = (clips[:, : n_blocks * hop] ** 2).reshape(b, n_blocks, hop).sum(-1)
    t = n_blocks - k + 1
    return safe_sqrt(sum(blocks[:, j : j + t] for j in range(k)) / win)


def _envelope_fwd(clips, win, hop):
    env = _envelope(clips, win, hop)
    return env, (clips, env)


def _envelope_bwd(win, hop, res, g):
    """env_k = sqrt(sum of blocks k .. k + win/hop - 1 / win), block m = sum of its samples'
    squares: block m's cotangent sums g_k / (2 win env_k) over the frames k that hold it, and
    each sample's is 2 x_n times its block's. Autodiff's gradient is the same sum, but XLA
    fuses it into the loop over the samples and recomputes each block's sum for each of its
    samples (with a non-linear function of the envelope after it: ~2x slower)."""
    clips, env = res
    b, s = clips.shape
    k = win // hop
    n_blocks = s // hop
    h = jnp.pad(g / (2.0 * win * env), ((0, 0), (k - 1, k - 1)))  # [B, T + 2 (k - 1)]
    g_blocks = sum(h[:, k - 1 - j : k - 1 - j + n_blocks] for j in range(k))  # [B, n_blocks]
    g_blocks = jax.lax.optimization_barrier(g_blocks)  # computed once, not once per sample
    g_x = 2.0 * clips[:, : n_blocks * hop].reshape(b, n_blocks, hop) * g_blocks[:, :, None]
    return (jnp.pad(g_x.reshape(b, -1), ((0, 0), (0, s - n_blocks * hop))),)


_envelope.defvjp(_envelope_fwd, _envelope_bwd)


def _first_crossing(env: jax.Array, level: jax.Array) -> jax.Array:
    """Index of the first frame with env >= level: env [B, T], level [B] -> [B] float."""
    return jnp.argmax(env >= level[:, None], axis=-1).astype(jnp.float32)


def _soft_first_crossing(env: jax.Array, level: jax.Array, temperature: float) -> jax.Array:
    """Differentiable expected index of the first crossing: each frame crosses with probability
    sigmoid((env - level) / (temperature * max)), and the first crossing is where the running
    probability of 'not crossed yet' hands over. Tends to `_first_crossing` as temperature -> 0."""
    z = (env - level[:, None]) / (temperature * jnp.max(env, -1, keepdims=True) + 1e-12)
    log_not = -jax.nn.softplus(z)  # log(1 - sigmoid(z))
    log_before = jnp.cumsum(log_not, axis=-1) - log_not  # log P(no crossing before frame k)
    p_first = jnp.exp(log_before) * jax.nn.sigmoid(z)
    k = jnp.arange(env.shape[-1], dtype=env.dtype)
    return jnp.sum(p_first * k, -1) + jnp.exp(log_before[:, -1] + log_not[:, -1]) * k[-1]


@functools.partial(jax.jit, static_argnames=("sample_rate", "start", "stop"))
@flattened
def log_attack_time(
    clips: jax.Array, sample_rate: int = SAMPLE_RATE, start: float = 0.2, stop: float = 0.9
) -> jax.Array:
    """Peeters' log-attack time: log10 of the time from the envelope's first reaching start*max
    to its first reaching stop*max, at least one envelope hop. clips [..., S] -> [...]."""
    env = energy_envelope(clips)
    peak = env.max(-1)
    frames_ = _first_crossing(env, stop * peak) - _first_crossing(env, start * peak)
    return jnp.log10(jnp.maximum(frames_, 1.0) * ENV_HOP / sample_rate)


@functools.partial(jax.jit, static_argnames=("sample_rate", "start", "stop", "temperature"))
@flattened
def soft_log_attack_time(
    clips: jax.Array, sample_rate: int = SAMPLE_RATE, start: float = 0.2, stop: float = 0.9,
    temperature: float = 0.005,
) -> jax.Array:
    """Smooth `log_attack_time` for the loss: soft crossings, and a soft floor of one hop."""
    env = energy_envelope(clips)
    peak = env.max(-1)
    frames_ = (_soft_first_crossing(env, stop * peak, temperature)
               - _soft_first_crossing(env, start * peak, temperature))
    floored = 1.0 + jax.nn.softplus(16.0 * (frames_ - 1.0)) / 16.0
    return jnp.log10(floored * ENV_HOP / sample_rate)
