"""Mixing weights found without the model, over the same sources: what the VAE is compared with.

Each baseline fits a target's feature spectrum y [D] as a non-negative combination of the
sources' spectra F [k, D] (features are close to additive under mixing: the RMS-weighted
magnitude of a sum is near the sum of magnitudes when the layers' energy overlaps little), and
returns weights [B, k] for a batch of targets Y [B, D]; the weights are then mixed as audio and
measured exactly like the model's.

- `nnls`: min ||w F - y||^2, w >= 0 (accelerated projected gradient with adaptive restart);
- `nnls_simplex`: the same on the simplex (w >= 0, sum w = 1), like the model's weights;
- `matching_pursuit`: greedy, non-negative, at most `layers` picks (Mallat & Zhang 1993);
- `nearest`: the single closest source; `uniform`: every source at 1/k.

Pure JAX, batched over targets: one jit-compiled loop for the whole test set.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from drumlayer.model.vae import sparsemax

BASELINES = ("nnls", "nnls_simplex", "matching_pursuit", "nearest", "uniform")


def _projected_gradient(F, Y, project, init, iterations):
    """FISTA with gradient-based restart for min 0.5 ||w F - y||^2 over a convex set given by
    `project`. F [k, D], Y [B, D], init [B, k] -> [B, k]."""
    F = F.astype(jnp.float32)
    scale = jnp.maximum(jnp.max(jnp.abs(F)), 1e-12)  # numbers near 1 for float32
    F, Y = F / scale, Y.astype(jnp.float32) / scale
    G = F @ F.T  # [k, k]
    C = Y @ F.T  # [B, k]
    lipschitz = jnp.maximum(jnp.linalg.eigvalsh(G)[-1], 1e-12)

    def step(_, carry):
        w, v, t = carry
        w_new = project(v - (v @ G - C) / lipschitz)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        restart = jnp.sum((v - w_new) * (w_new - w), axis=-1, keepdims=True) > 0
        mom = jnp.where(restart, 0.0, (t - 1.0) / t_new)
        v_new = w_new + mom * (w_new - w)
        return w_new, v_new, jnp.where(restart, 1.0, t_new)

    w, _, _ = jax.lax.fori_loop(0, iterations, step,
                                (init, init, jnp.ones((Y.shape[0], 1), jnp.float32)))
    return w


@functools.partial(jax.jit, static_argnames=("iterations",))
def nnls(F: jax.Array, Y: jax.Array, iterations: int = 3000) -> jax.Array:
    """argmin_{w >= 0} ||w F - y||^2 for every row y of Y: F [k, D], Y [B, D] -> [B, k]."""
    init = jnp.zeros((Y.shape[0], F.shape[0]), jnp.float32)
    return _projected_gradient(F, Y, lambda w: jnp.maximum(w, 0.0), init, iterations)


@functools.partial(jax.jit, static_argnames=("iterations",))
def nnls_simplex(F: jax.Array, Y: jax.Array, iterations: int = 3000) -> jax.Array:
    """argmin ||w F - y||^2 with w >= 0 and sum(w) = 1: F [k, D], Y [B, D] -> [B, k]."""
    k = F.shape[0]
    init = jnp.full((Y.shape[0], k), 1.0 / k, jnp.float32)
    return _projected_gradient(F, Y, sparsemax, init, iterations)


@functools.partial(jax.jit, static_argnames=("layers",))
def matching_pursuit(F: jax.Array, Y: jax.Array, layers: int = 15) -> jax.Array:
    """Non-negative matching pursuit: `layers` greedy steps, each adding the source whose unit
    spectrum best matches the residual (positive correlation only; a step with none adds nothing).
    A source may be picked twice, so at most `layers` are used. F [k, D], Y [B, D] -> [B, k]."""
    norms = jnp.maximum(jnp.linalg.norm(F, axis=-1), 1e-12)  # [k]
    atoms = F / norms[:, None]

    def step(_, carry):
        w, r = carry
        corr = r @ atoms.T  # [B, k]
        j = jnp.argmax(corr, axis=-1)
        c = jnp.maximum(jnp.take_along_axis(corr, j[:, None], axis=-1), 0.0)  # [B, 1]
        w = w + jax.nn.one_hot(j, F.shape[0]) * (c / norms[j][:, None])
        return w, r - c * atoms[j]

    w0 = jnp.zeros((Y.shape[0], F.shape[0]), jnp.float32)
    return jax.lax.fori_loop(0, layers, step, (w0, Y.astype(jnp.float32)))[0]


@jax.jit
def nearest(F: jax.Array, Y: jax.Array) -> jax.Array:
    """One-hot weights on the source closest to each target in feature space: -> [B, k]."""
    d = jnp.sum(Y**2, -1, keepdims=True) - 2.0 * Y @ F.T + jnp.sum(F**2, -1)[None]
    return jax.nn.one_hot(jnp.argmin(d, axis=-1), F.shape[0])


def uniform(F: jax.Array, Y: jax.Array) -> jax.Array:
    """Every source at 1/k: [B, k]."""
    return jnp.full((Y.shape[0], F.shape[0]), 1.0 / F.shape[0], jnp.float32)


def fit(name: str, F: jax.Array, Y: jax.Array) -> jax.Array:
    """The weights [B, k] of baseline `name` (one of BASELINES)."""
    fns = {"nnls": nnls, "nnls_simplex": nnls_simplex, "matching_pursuit": matching_pursuit,
           "nearest": nearest, "uniform": uniform}
    if name not in fns:
        raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
    return fns[name](F, Y)
