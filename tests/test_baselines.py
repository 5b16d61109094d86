"""The reconstruction baselines against scipy and plain loops."""

import numpy as np
import pytest
import scipy.optimize

from drumlayer.evaluation import baselines


@pytest.fixture(scope="module")
def problem():
    """Correlated non-negative 'spectra' of 12 sources and 6 targets (D = 40)."""
    rng = np.random.default_rng(2)
    base = rng.random((3, 40))
    F = (rng.random((12, 3)) @ base + 0.1 * rng.random((12, 40))).astype(np.float32)
    Y = (rng.random((6, 12)) @ F * 0.2 + 0.3 * rng.random((6, 40))).astype(np.float32)
    return F, Y


def test_nnls_matches_scipy(problem):
    F, Y = problem
    W = np.asarray(baselines.nnls(F, Y))
    for w, y in zip(W, Y, strict=True):
        ref, rnorm = scipy.optimize.nnls(F.T.astype(np.float64), y.astype(np.float64))
        assert np.linalg.norm(w @ F - y) == pytest.approx(rnorm, rel=1e-4)
        np.testing.assert_allclose(w, ref, atol=2e-3)
        assert w.min() >= 0


def test_nnls_simplex_matches_scipy_slsqp(problem):
    F, Y = problem
    W = np.asarray(baselines.nnls_simplex(F, Y))
    k = F.shape[0]
    for w, y in zip(W, Y, strict=True):
        res = scipy.optimize.minimize(
            lambda v, y=y: np.sum((v @ F - y) ** 2), np.full(k, 1 / k), method="SLSQP",
            bounds=[(0, None)] * k, constraints={"type": "eq", "fun": lambda v: v.sum() - 1},
            options={"ftol": 1e-12, "maxiter": 1000})
        assert w.sum() == pytest.approx(1.0, abs=1e-5) and w.min() >= 0
        assert np.sum((w @ F - y) ** 2) <= res.fun * (1 + 1e-4) + 1e-7


def test_matching_pursuit_matches_a_plain_loop(problem):
    F, Y = problem
    W = np.asarray(baselines.matching_pursuit(F, Y, layers=4))
    norms = np.linalg.norm(F, axis=1)
    atoms = F / norms[:, None]
    for w, y in zip(W, Y, strict=True):
        ref, r = np.zeros(len(F)), y.astype(np.float64).copy()
        for _ in range(4):
            corr = atoms @ r
            j = int(np.argmax(corr))
            c = max(corr[j], 0.0)
            ref[j] += c / norms[j]
            r -= c * atoms[j]
        np.testing.assert_allclose(w, ref, rtol=1e-4, atol=1e-6)
        assert np.count_nonzero(w) <= 4


def test_nearest_and_uniform(problem):
    F, Y = problem
    near = np.asarray(baselines.nearest(F, Y))
    want = np.argmin(((Y[:, None] - F[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(near.argmax(1), want)
    np.testing.assert_array_equal(near.sum(1), 1.0)
    uni = np.asarray(baselines.uniform(F, Y[:5]))
    assert uni.shape == (5, 12)  # [targets, sources]
    np.testing.assert_allclose(uni, 1 / 12)
    with pytest.raises(ValueError, match="baseline must be one of"):
        baselines.fit("lasso", F, Y)


@pytest.mark.parametrize("name", ["nnls", "nnls_simplex", "matching_pursuit", "nearest",
                                  "uniform"])
def test_fit_by_name_is_that_baseline(problem, name):
    F, Y = problem
    np.testing.assert_array_equal(np.asarray(baselines.fit(name, F, Y)),
                                  np.asarray(getattr(baselines, name)(F, Y)))


def test_matching_pursuit_never_takes_a_negative_step():
    """Where every correlation with the residual is negative, a non-negative pursuit adds
    nothing (no layer at a negative weight), whatever the target."""
    rng = np.random.default_rng(1)
    F = rng.random((6, 40)).astype(np.float32)  # spectra: non-negative
    Y = -rng.random((3, 40)).astype(np.float32)  # anti-correlated with every source
    np.testing.assert_array_equal(np.asarray(baselines.matching_pursuit(F, Y, layers=5)), 0.0)
    mixed = rng.standard_normal((8, 40)).astype(np.float32)
    assert np.all(np.asarray(baselines.matching_pursuit(F, mixed, layers=15)) >= 0.0)
