"""Greedy Frank-Wolfe exemplar selection (Cheng, Askari, Ramchandran, El Ghaoui 2020).

Choose k columns of A (d features x n points) that best represent all n as linear combinations:

    minimise f(Z) = ||A - A Z||_F^2   subject to   sum_i ||Z^(i)||_2 <= beta,

by Frank-Wolfe: each iteration moves Z towards the vertex of the l1,2 ball that the gradient
-2 (K - K Z), K = A^T A, points at (the row i of largest gradient norm), with an exact line
search; it stops when Z has k non-zero rows, which are the exemplars.

Nothing here stores an n x n matrix. Z lives as its non-zero rows; the gradient's row norms
||K_i - (K Z)_i||^2 = (K^2)_ii - 2 (K K Z)_ii + ||(K Z)_i||^2 are kept as three n-vectors updated
by rank-one formulas, and the line search needs only traces, also updated in O(n). One
product K s per iteration: with K in memory (kernel form, n up to ~20,000) or as A^T (A s)
(matrix-free, so n = 100,000 fits in memory). The whole loop is one jit-compiled lax.while_loop.
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.errors import ConfigError

log = logging.getLogger(__name__)

KERNEL_MAX_N = 20000


class FWResult(NamedTuple):
    indices: np.ndarray  # [k] int: exemplar columns of A, in the order first chosen
    rows: np.ndarray  # [k, n]: Z's non-zero rows, rows[j] = Z^(indices[j])
    objective: np.ndarray  # [iterations]: f(Z) after each iteration (non-increasing)
    iterations: int


class _State(NamedTuple):
    it: jax.Array  # iterations done
    m: jax.Array  # rows selected so far
    J: jax.Array  # [k] selected indices, -1 where free
    ZJ: jax.Array  # [k, n] Z's rows at J
    KJ: jax.Array  # [n, k] K's columns at J
    b: jax.Array  # [n] (K K Z)_ii
    c: jax.Array  # [n] ||(K Z)_i||^2
    t_kz: jax.Array  # tr(K Z)
    t_zkz: jax.Array  # tr(Z^T K Z) = ||A Z||_F^2
    obj: jax.Array  # [max_iter] objective per iteration
    R: jax.Array  # [n, n] K - K Z, only for positive=True (kernel form); else [1, 1]


# X = A^T [n, d] holds the points as rows: row-major matrix-vector products on it are several
# times faster than on A [d, n], and a caller's feature matrix [n, d] passes as A = X.T for free.


# K and X are float32: each iteration reads them whole once or twice, so their size sets the
# speed; the quantities the loop accumulates are float64.


def _column(X, K, i):
    """K[:, i] = X x_i -> [n] float64."""
    if K is not None:
        return K[:, i].astype(jnp.float64)
    return (X @ X[i]).astype(jnp.float64)


def _matvec(X, K, s):
    """K s = X (X^T s) -> [n] float64."""
    if K is not None:
        return (K @ s.astype(K.dtype)).astype(jnp.float64)
    return (X @ (s.astype(X.dtype) @ X)).astype(jnp.float64)


@functools.partial(jax.jit, static_argnames=("k", "max_iter", "kernel", "positive"))
def _fw(X, K, d2, trace_k, beta, k: int, max_iter: int, kernel: bool, positive: bool):
    """The loop. X [n, d] (matrix-free) or K [n, n] (kernel form; X unused), float32."""
    n = d2.shape[0]
    K = K if kernel else None
    state = _State(
        it=jnp.int32(0), m=jnp.int32(0), J=jnp.full((k,), -1, jnp.int32),
        ZJ=jnp.zeros((k, n), jnp.float64), KJ=jnp.zeros((n, k), jnp.float64),
        b=jnp.zeros(n, jnp.float64), c=jnp.zeros(n, jnp.float64),
        t_kz=jnp.float64(0.0), t_zkz=jnp.float64(0.0),
        obj=jnp.full((max_iter,), jnp.nan, jnp.float64),
        R=K.astype(jnp.float64) if positive else jnp.zeros((1, 1), jnp.float64),
    )

    def cond(st):
        return (st.m < k) & (st.it < max_iter)

    def body(st):
        # Row norms of the negative half-gradient R = K - K Z; pick the largest.
        if positive:
            scores = jnp.sum(jnp.maximum(st.R, 0.0) ** 2, axis=1)
        else:
            scores = d2 - 2.0 * st.b + st.c
        i = jnp.argmax(scores).astype(jnp.int32)
        k_i = _column(X, K, i)  # [n]
        r = st.R[i] if positive else k_i - st.KJ[i] @ st.ZJ
        r = jnp.maximum(r, 0.0) if positive else r
        s = beta * r / jnp.maximum(jnp.linalg.norm(r), 1e-30)  # the vertex's row
        ks = _matvec(X, K, s)
        zs = st.ZJ @ s  # [k] z_a . s
        kzs = st.KJ @ zs  # [n] (K Z s)
        tr_ks = ks[i]
        tr_zks = zs @ st.KJ[i]
        tr_sks = k_i[i] * (s @ s)
        num = tr_ks - st.t_kz - tr_zks + st.t_zkz
        den = tr_sks - 2.0 * tr_zks + st.t_zkz
        gamma = jnp.clip(num / jnp.maximum(den, 1e-30), 0.0, 1.0)
        g1 = 1.0 - gamma
        # Slot of row i: where it already is, else the next free one.
        hit = st.J == i
        slot = jnp.where(jnp.any(hit), jnp.argmax(hit), st.m)
        m = st.m + jnp.where(jnp.any(hit), 0, 1)
        J = st.J.at[slot].set(i)
        KJ = st.KJ.at[:, slot].set(k_i)
        ZJ = (g1 * st.ZJ).at[slot].add(gamma * s)
        b = g1 * st.b + gamma * k_i * ks
        c = g1**2 * st.c + 2.0 * g1 * gamma * k_i * kzs + gamma**2 * k_i**2 * (s @ s)
        t_kz = g1 * st.t_kz + gamma * tr_ks
        t_zkz = g1**2 * st.t_zkz + 2.0 * g1 * gamma * tr_zks + gamma**2 * tr_sks
        R = g1 * st.R + gamma * (K - jnp.outer(k_i, s)) if positive else st.R
        obj = st.obj.at[st.it].set(trace_k - 2.0 * t_kz + t_zkz)
        return _State(st.it + 1, m, J, ZJ, KJ, b, c, t_kz, t_zkz, obj, R)

    return jax.lax.while_loop(cond, body, state)


def _diag_k2(X: jax.Array, chunk: int = 4096) -> jax.Array:
    """(K^2)_ii = ||X x_i||^2 = x_i^T (X^T X) x_i for every point, without forming K: [n] f64."""
    M = X.T @ X  # [d, d]
    f = jax.jit(lambda x: jnp.sum((x @ M).astype(jnp.float64) * x, axis=1))
    return jnp.concatenate([f(X[j : j + chunk]) for j in range(0, X.shape[0], chunk)])


def frank_wolfe(
    A, k: int, beta: float = 1000.0, positive: bool = False, max_iter: int | None = None,
    form: str = "auto",
) -> FWResult:
    """Select k exemplar columns of A [d, n] (for features X [n, d], pass X.T: no copy).

    beta: radius of the l1,2 ball; it must be large enough for k distinct rows (on 2,500 to
    10,000 unit-norm feature vectors, 1,000 reaches 200 rows in 260-360 iterations; below ~150
    it stalls). positive: Z >= 0 as well (kernel form only). form: 'kernel' keeps K = A^T A
    (n x n) in memory, 'matrix-free' multiplies by A^T A on the fly, 'auto' picks by n.
    Products with A in float32, the loop in float64. Returns FWResult; fewer than k indices
    (with a warning) if max_iter (default 20 k) iterations did not reach k rows.
    """
    A = np.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"A must be [d, n], got shape {A.shape}")
    d, n = A.shape
    X = A.T  # a view; contiguous when the caller passed features.T
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n} (the number of columns of A), got {k}")
    if not np.all(np.isfinite(A)):
        raise ValueError("A holds NaN or infinite values")
    if form == "auto":
        form = "kernel" if n <= KERNEL_MAX_N else "matrix-free"
    if form not in ("kernel", "matrix-free"):
        raise ValueError(f"form must be 'auto', 'kernel' or 'matrix-free', got {form!r}")
    if positive and form != "kernel":
        raise ValueError(f"positive=True needs the kernel form (n <= {KERNEL_MAX_N}); n = {n}")
    max_iter = max_iter or 20 * k
    kernel = form == "kernel"
    with jax.enable_x64(True):
        Xj = jnp.asarray(X, jnp.float32)
        trace_k = jnp.sum(jnp.square(Xj), dtype=jnp.float64)
        if kernel:
            K = jax.jit(lambda x: x @ x.T)(Xj)
            d2 = jnp.sum(jnp.square(K), axis=1, dtype=jnp.float64)
        else:
            K, d2 = None, _diag_k2(Xj)
        st = _fw(Xj, K, d2, trace_k, jnp.float64(beta), k, max_iter, kernel, positive)
        st = jax.device_get(st)
    m, it = int(st.m), int(st.it)
    if m < k:
        log.warning("frank_wolfe: %d of %d exemplars after %d iterations: raise beta "
                    "(now %g) or max_iter", m, k, it, beta)
    return FWResult(indices=np.asarray(st.J[:m]), rows=np.asarray(st.ZJ[:m]),
                    objective=np.asarray(st.obj[:it]), iterations=it)


def normalise_columns(A: np.ndarray) -> np.ndarray:
    """A [d, n] with each column scaled to unit L2 norm (zero columns left at zero)."""
    norms = np.linalg.norm(A, axis=0, keepdims=True)
    return A / np.where(norms > 0, norms, 1.0)


def k_medoids(X: np.ndarray, k: int, seed: int = 0, max_iter: int = 100) -> np.ndarray:
    """k medoids of the rows of X [n, d] under Euclidean distance (an ablation baseline for
    Frank-Wolfe): k-means++ seeding, then alternating assignment / medoid update (Park & Jun
    2009) until the medoids stop changing. Returns the medoids' row indices [k], sorted."""
    n = X.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    X = np.asarray(X, np.float64)
    sq = np.sum(X**2, axis=1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0))  # [n, n]
    rng = np.random.default_rng(seed)
    medoids = [int(rng.integers(n))]
    nearest = D[medoids[0]].copy()
    for _ in range(1, k):
        p = nearest**2
        i = int(rng.choice(n, p=p / p.sum())) if p.sum() > 0 else int(rng.integers(n))
        medoids.append(i)
        nearest = np.minimum(nearest, D[i])
    medoids = np.array(medoids)
    for _ in range(max_iter):
        assign = np.argmin(D[:, medoids], axis=1)
        new = medoids.copy()
        for c in range(k):
            members = np.flatnonzero(assign == c)
            if len(members):
                new[c] = members[np.argmin(D[np.ix_(members, members)].sum(axis=0))]
        if np.array_equal(np.sort(new), np.sort(medoids)):
            break
        medoids = new
    return np.sort(medoids)


METHODS = ("frank_wolfe", "random", "k_medoids")


def select(feats: np.ndarray, pool: np.ndarray, k: int, method: str = "frank_wolfe",
           beta: float = 1000.0, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Choose k source ids among `pool` [m] (row ids of feats [n, d]), each candidate's features
    scaled to unit norm first. method: 'frank_wolfe' (the paper's), 'random', 'k_medoids'.
    Returns (ids [k], info: the Frank-Wolfe iterations and objective)."""
    if method not in METHODS:
        raise ConfigError(f"selection.method must be one of {METHODS}, got {method!r}")
    if k > len(pool):
        raise ConfigError(f"selection.k = {k} but only {len(pool)} candidate clips: lower "
                         "selection.k or add samples")
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(pool, k, replace=False)), {}
    A = normalise_columns(feats[pool].T)  # [d, m]; A.T is row-major, as frank_wolfe wants
    if method == "k_medoids":
        return pool[k_medoids(A.T, k, seed=seed)], {}
    res = frank_wolfe(A, k, beta=float(beta))
    if len(res.indices) < k:
        raise ConfigError(f"Frank-Wolfe found {len(res.indices)} of {k} sources in "
                         f"{res.iterations} iterations: raise selection.beta (now {beta})")
    return pool[res.indices], {"iterations": res.iterations, "objective": res.objective.tolist()}
