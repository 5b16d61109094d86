"""The evaluation's metrics against librosa, scipy and hand-computed values."""

import librosa
import numpy as np
import pytest
import scipy.stats

from drumlayer.data import procedural
from drumlayer.features import measures

SR = 22050


@pytest.fixture(scope="module")
def pair():
    """Two different procedural snares [2, S] and white noise [S]."""
    s = procedural.procedural_snares(2, SR, seed=3)
    noise = np.random.default_rng(1).uniform(-1, 1, SR).astype(np.float32)
    return s, noise


def _librosa_db(x, n_fft, hop):
    p = np.abs(librosa.stft(x.astype(np.float64), n_fft=n_fft, hop_length=hop, center=True,
                            pad_mode="constant")) ** 2
    return 10 * np.log10(np.maximum(p, 1e-10)).T  # [frames, bins]


def test_log_spectral_distance_matches_a_direct_computation(pair):
    (a, b), _ = pair
    e, r = _librosa_db(a, 2048, 512), _librosa_db(b, 2048, 512)
    floor = r.max() - 80
    e, r = np.maximum(e, floor), np.maximum(r, floor)
    live = (r > floor).any(axis=1)
    ref = np.sqrt(((e - r) ** 2).mean(axis=1))[live].mean()
    np.testing.assert_allclose(float(measures.log_spectral_distance(a, b)), ref, rtol=1e-3)
    assert float(measures.log_spectral_distance(a, a)) == pytest.approx(0.0, abs=1e-5)


def test_log_spectral_distance_of_a_gain_is_the_gain_in_db(pair):
    _, noise = pair
    np.testing.assert_allclose(float(measures.log_spectral_distance(2 * noise, noise)),
                               20 * np.log10(2), atol=2e-3)


def test_multi_resolution_stft_matches_a_direct_computation(pair):
    (a, b), _ = pair
    total = 0.0
    for n in (512, 1024, 2048):
        e, r = (np.abs(librosa.stft(x.astype(np.float64), n_fft=n, hop_length=n // 4,
                                    center=True, pad_mode="constant")) for x in (a, b))
        total += np.linalg.norm(r - e) / np.linalg.norm(r)
        total += np.mean(np.abs(np.log(r + 1e-7) - np.log(e + 1e-7)))
    np.testing.assert_allclose(float(measures.multi_resolution_stft(a, b)), total / 3, rtol=1e-3)
    assert float(measures.multi_resolution_stft(b, b)) == pytest.approx(0.0, abs=1e-6)


def test_layer_counts_prune_and_cardinality_by_hand():
    w = np.array([[0.5, 0.3, 0.15, 0.03, 0.02], [0.97, 0.005, 0.005, 0.01, 0.01]], np.float32)
    np.testing.assert_array_equal(measures.active_layers(w), [5, 1])
    np.testing.assert_array_equal(measures.active_layers(2 * w), [5, 1])  # shares, not values
    p = np.asarray(measures.prune(w))
    np.testing.assert_allclose(p[0], [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(p[1], [1, 0, 0, 0, 0], rtol=1e-6)
    low = np.full((1, 50), 0.02, np.float32)  # nothing above 0.04: the largest stays
    assert np.count_nonzero(np.asarray(measures.prune(low))) == 1
    c = measures.cardinality(w)
    np.testing.assert_array_equal(c["above_0.001"], [5, 5])
    np.testing.assert_array_equal(c["above_0.01"], [5, 1])
    np.testing.assert_array_equal(c["above_0.04"], [3, 1])
    np.testing.assert_allclose(c["max_weight"], [0.5, 0.97])


def test_r_squared_against_scipy():
    x = np.linspace(0, 1, 21)
    assert measures.r_squared(3 * x + 1) == pytest.approx(1.0)
    y = x**2 + np.random.default_rng(0).normal(0, 0.05, 21)
    assert measures.r_squared(y) == pytest.approx(scipy.stats.linregress(x, y).rvalue ** 2)
    small = 0.01 * y  # a total sum of squares below 1 is still a curve
    assert measures.r_squared(small) == pytest.approx(scipy.stats.linregress(x, small).rvalue ** 2)
    xs = np.sort(np.random.default_rng(1).uniform(0, 5, 21))  # uneven steps, given
    ys = np.sqrt(xs)
    assert measures.r_squared(ys, xs) == pytest.approx(scipy.stats.linregress(xs, ys).rvalue ** 2)


def test_pca_against_the_covariance_eigendecomposition():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    p = measures.pca(z, 4)
    vals, vecs = np.linalg.eigh(np.cov(z.T))
    vals, vecs = vals[::-1], vecs[:, ::-1]
    np.testing.assert_allclose(p["variance"], vals[:4], rtol=1e-6)
    np.testing.assert_allclose(p["explained"], vals[:4] / vals.sum(), rtol=1e-6)
    np.testing.assert_allclose(np.abs(p["components"] @ vecs[:, :4]), np.eye(4), atol=1e-5)
    np.testing.assert_allclose(p["center"], z.mean(0), rtol=1e-5)


def test_path_distances_and_new_layers_by_hand():
    w = np.array([[[1, 0, 0], [0.5, 0.5, 0], [0, 0, 1]]], np.float32)  # [1 pair, 3 points, 3]
    cen = np.array([[100.0, 250.0, 50.0]])
    mf = np.zeros((1, 3, 13))
    mf[0, 2, 0] = 3.0
    mf[0, 2, 1] = 4.0
    d = measures.path_distances(w, cen, mf)
    np.testing.assert_allclose(d["weights"][0], [0, np.sqrt(0.5), np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(d["centroid"][0], [0, 150, 50])
    np.testing.assert_allclose(d["mfcc"][0], [0, 0, 5])
    np.testing.assert_array_equal(measures.new_layers_mid_path(w), [1])  # layer 1 only mid-path
    # [3 pairs, 3 points, 3 layers]; pair 1's middle holds only layers its ends hold
    three = np.stack([w[0], [[1, 0, 0], [0.5, 0, 0.5], [0, 0, 1]], w[0][::-1]])
    np.testing.assert_array_equal(measures.new_layers_mid_path(three), [1, 0, 1])


def test_distances_of_a_batch_are_each_clips_own(pair):
    """Three different clips at once: each row's distances are that clip's alone."""
    (s0, s1), noise = pair
    mixes = np.stack([s0, 0.5 * s0 + 0.5 * s1, 0.1 * noise])
    refs = np.stack([s1, s0, s0])
    batch = measures.batch_distances(mixes, refs)
    for i in range(3):
        one = measures.batch_distances(mixes[i:i + 1], refs[i:i + 1])
        for k in batch:
            assert batch[k].shape == (3,)
            np.testing.assert_allclose(batch[k][i], one[k][0], rtol=1e-4)


def test_distances_of_a_gain_by_hand(pair):
    """x against x/2: the log spectrum moves 6.02 dB everywhere (but below the floor), so the
    MFCCs (an orthonormal DCT of 128 mel bands in dB, each floored relative to its own peak)
    move only in coefficient 0, by 6.02 x 128 / sqrt(128); the centroid does not move."""
    s, _ = pair
    d = {k: float(v[0]) for k, v in measures.batch_distances(s[:1], s[:1] / 2).items()}
    db = 20 * np.log10(2.0)
    assert 0 < d["log_spectral_distance_db"] <= db + 1e-4  # floored at -80 dB: up to 6.02
    assert d["mfcc_distance"] == pytest.approx(db * 128 / np.sqrt(128), rel=1e-3)
    assert d["centroid_error_hz"] == pytest.approx(0.0, abs=0.5)
