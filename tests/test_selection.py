import numpy as np
import pytest

from drumlayer.errors import ConfigError
from drumlayer.features import selection


def fwsr_reference(A, k, beta, positive=False, max_iter=2000):
    """A plain numpy transcription of greedy Frank-Wolfe for sparse representation."""
    n = A.shape[1]
    K = A.T @ A
    Z = np.zeros((n, n))
    chosen, objective = [], []
    for _ in range(max_iter):
        if len(chosen) == k:
            break
        G = -2.0 * (K - K @ Z)
        D = np.maximum(-G, 0.0) if positive else -G
        i = int(np.argmax(np.linalg.norm(D, axis=1)))
        S = np.zeros_like(Z)
        S[i] = beta * D[i] / np.linalg.norm(D[i])
        E = A - A @ Z
        AD = A @ (S - Z)
        gamma = np.clip(np.sum(E * AD) / np.sum(AD * AD), 0.0, 1.0)
        Z = (1 - gamma) * Z + gamma * S
        if i not in chosen:
            chosen.append(i)
        objective.append(np.sum((A - A @ Z) ** 2))
    return np.array(chosen), Z, np.array(objective)


def clustered(n=300, d=40, centres=25, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((d, centres))
    A = c[:, rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((d, n))
    return selection.normalise_columns(A)


@pytest.mark.parametrize("form", ["kernel", "matrix-free"])
def test_same_picks_as_numpy_reference(form):
    A = clustered()
    ref_idx, ref_Z, ref_obj = fwsr_reference(A, 20, beta=50.0)
    res = selection.frank_wolfe(A, 20, beta=50.0, form=form)
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_allclose(res.objective, ref_obj, rtol=1e-6 if form == "kernel" else 1e-4)
    np.testing.assert_allclose(res.rows, ref_Z[res.indices], atol=1e-6 * np.abs(ref_Z).max()
                               if form == "kernel" else 1e-3 * np.abs(ref_Z).max())
    assert np.count_nonzero(np.abs(ref_Z).sum(axis=1)) == 20


def test_positive_matches_reference():
    A = np.abs(clustered(seed=1))
    ref_idx, ref_Z, ref_obj = fwsr_reference(A, 15, beta=40.0, positive=True)
    res = selection.frank_wolfe(A, 15, beta=40.0, positive=True)
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_allclose(res.objective, ref_obj, rtol=1e-6)
    assert np.all(res.rows >= 0)


def test_objective_never_increases_and_rows_are_distinct():
    A = clustered(n=500, seed=2)
    res = selection.frank_wolfe(A, 40, beta=100.0)
    assert len(res.indices) == 40 == len(set(res.indices.tolist()))
    assert np.all(np.diff(res.objective) <= 1e-9 * res.objective[0])


def test_exemplars_represent_the_rest_better_than_random():
    A = clustered(n=400, d=30, centres=30, seed=3)
    k = 30
    res = selection.frank_wolfe(A, k, beta=100.0)

    def residual(idx):
        B = A[:, idx]
        coef, *_ = np.linalg.lstsq(B, A, rcond=None)
        return np.sum((A - B @ coef) ** 2)

    rng = np.random.default_rng(0)
    random_res = [residual(rng.choice(A.shape[1], k, replace=False)) for _ in range(20)]
    assert residual(res.indices) < np.min(random_res)


def test_small_beta_stalls_with_a_warning(caplog):
    A = clustered(seed=4)
    res = selection.frank_wolfe(A, 50, beta=1.0, max_iter=100)
    assert len(res.indices) < 50 and res.iterations == 100
    assert "raise beta" in caplog.text


def test_bad_arguments():
    A = clustered()
    with pytest.raises(ValueError, match="k must be"):
        selection.frank_wolfe(A, 0)
    with pytest.raises(ValueError, match="NaN"):
        selection.frank_wolfe(np.full((3, 4), np.nan), 2)
    with pytest.raises(ValueError, match="kernel form"):
        selection.frank_wolfe(A, 2, positive=True, form="matrix-free")


def test_k_medoids_finds_one_medoid_per_cluster_and_each_is_optimal():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 20, (4, 5))
    X = np.concatenate([c + rng.normal(0, 0.5, (30, 5)) for c in centers])
    med = selection.k_medoids(X, 4, seed=1)
    assert sorted(set(m // 30 for m in med)) == [0, 1, 2, 3]  # one per cluster
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    assign = np.argmin(D[:, med], axis=1)
    for c, m in enumerate(med):  # each medoid minimises the distances within its cluster
        members = np.flatnonzero(assign == c)
        assert D[np.ix_(members, members)].sum(0).min() == pytest.approx(D[m, members].sum())
    np.testing.assert_array_equal(med, selection.k_medoids(X, 4, seed=1))  # seeded
    with pytest.raises(ValueError, match="k must be in"):
        selection.k_medoids(X, 0)


@pytest.mark.parametrize("method", ["frank_wolfe", "k_medoids", "random"])
def test_select_returns_clip_ids_of_the_pool_not_positions_in_it(method):
    """The pool is the training split: every other row here. The sources are rows of feats."""
    rng = np.random.default_rng(0)
    feats = rng.random((60, 12)).astype(np.float32)
    pool = np.arange(1, 60, 2)  # odd ids only
    ids, _ = selection.select(feats, pool, 5, method=method)
    assert len(ids) == 5 and set(ids.tolist()) <= set(pool.tolist()), ids
    if method == "frank_wolfe":  # the same picks as Frank-Wolfe on the pool's own rows
        A = selection.normalise_columns(feats[pool].T)
        np.testing.assert_array_equal(ids, pool[selection.frank_wolfe(A, 5, beta=1000.0).indices])


def test_random_selection_is_k_distinct_seeded_pool_ids():
    pool = np.arange(100, 130)
    feats = np.zeros((130, 4), np.float32)
    ids, info = selection.select(feats, pool, 29, method="random", seed=3)
    assert len(set(ids.tolist())) == 29 and set(ids.tolist()) <= set(pool.tolist())
    assert list(ids) == sorted(ids) and info == {}
    np.testing.assert_array_equal(ids, selection.select(feats, pool, 29, "random", seed=3)[0])
    assert not np.array_equal(ids, selection.select(feats, pool, 29, "random", seed=4)[0])


def test_select_passes_beta_and_says_what_to_raise():
    feats = clustered(seed=4).T.copy()  # [n, d] rows
    pool = np.arange(len(feats))
    with pytest.raises(ConfigError, match=r"Frank-Wolfe found \d+ of 50 sources in \d+ "
                                          r"iterations: raise selection.beta \(now 1.0\)"):
        selection.select(feats, pool, 50, beta=1.0)
    with pytest.raises(ConfigError, match="selection.method must be one of .* got 'greedy'"):
        selection.select(feats, pool, 5, method="greedy")
    with pytest.raises(ValueError, match="form must be 'auto', 'kernel' or 'matrix-free', got "
                                         "'dense'"):
        selection.frank_wolfe(feats.T, 2, form="dense")


def test_normalise_columns_by_hand():
    A = np.array([[3.0, 0.0, 0.06, 0.0], [4.0, 2.0, 0.08, 0.0]])
    np.testing.assert_allclose(selection.normalise_columns(A),
                               [[0.6, 0.0, 0.6, 0.0], [0.8, 1.0, 0.8, 0.0]])
