"""Velocity layers (drumlayer/kit/velocity.py): ranges, levels, the fitted direction, the choice
of steps and the darkening, against hand computations, numpy and librosa."""

import librosa
import numpy as np
import pytest

from drumlayer.kit import velocity


def test_ranges_cover_every_velocity_once_in_order():
    assert velocity.ranges(4) == [(1, 31), (32, 63), (64, 95), (96, 127)]  # by hand
    assert velocity.ranges(1) == [(1, 127)]
    for n in range(1, 17):
        r = velocity.ranges(n)
        covered = [v for lo, hi in r for v in range(lo, hi + 1)]
        assert covered == list(range(1, 128)), n  # no gap, no overlap, in order
    for bad in (0, 128):
        with pytest.raises(ValueError, match="1 to 127"):
            velocity.ranges(bad)


def test_level_and_the_gain_inside_a_layer():
    assert velocity.level_db(127) == 0.0 and velocity.level_db(1) == -velocity.RANGE_DB
    assert velocity.level_db(64) == pytest.approx(-24.0 * 63 / 126)
    # inside 96..127: 1 at the top, the level of 96 relative to 127 at the bottom, linear
    lo = 10 ** (-24.0 * 31 / 126 / 20)
    assert velocity.velocity_gain(127, 96, 127) == pytest.approx(1.0)
    assert velocity.velocity_gain(96, 96, 127) == pytest.approx(lo)
    assert velocity.velocity_gain(111.5, 96, 127) == pytest.approx((lo + 1) / 2)
    assert velocity.velocity_gain(5, 5, 5) == 1.0


def _pca(rng, L=6, C=3):
    q, _ = np.linalg.qr(rng.standard_normal((L, C)))
    return {"center": rng.standard_normal(L).astype(np.float32),
            "components": q.T.astype(np.float32), "variance": np.array([4.0, 1.0, 0.25])}


def test_the_fitted_direction_is_where_level_and_brightness_grow():
    rng = np.random.default_rng(0)
    pca = _pca(rng)
    coords = rng.standard_normal((400, 3))
    a = np.array([0.2, 1.0, -0.5])  # level and brightness both grow along a (in sd units)
    rms = 10 ** ((3.0 * coords @ a) / 20)
    cen = 2000 + 150 * coords @ a + rng.normal(0, 5, 400)
    fit = velocity.fit_direction(coords, rms, cen, pca)
    # back to PCA coordinates in standard deviations: parallel to a, unit length
    u = (fit["direction"] @ pca["components"].T) / np.sqrt(pca["variance"])
    assert np.dot(u, a) / np.linalg.norm(a) == pytest.approx(1.0, abs=1e-3)
    assert np.linalg.norm(u) == pytest.approx(1.0, abs=1e-4)
    slope = np.linalg.norm(a)  # per unit step along a: 3 dB and 150 Hz per unit of a.x
    assert fit["rms_db_per_step"] == pytest.approx(3.0 * slope, rel=1e-3)
    assert fit["centroid_hz_per_step"] == pytest.approx(150 * slope, rel=0.02)
    assert fit["r2"] > 0.99
    with pytest.raises(ValueError, match="no velocity direction"):
        velocity.fit_direction(coords, np.ones(400), np.full(400, 1000.0), pca)


def test_steps_darken_in_order_even_where_the_model_bends_back():
    grid = np.linspace(-3, 0, 13)
    # darker down to -1.5, then brighter again (measured on trained models)
    cen = 1000 + 100 * np.abs(grid + 1.5) - 150
    chosen = velocity.choose_steps(grid, cen, 4, span=1.5)
    assert chosen == [-1.5, -1.0, -0.5, 0.0]
    centroids = [cen[np.argmin(np.abs(grid - t))] for t in chosen]
    assert np.all(np.diff(centroids) > 0)
    # nowhere darker: every layer keeps the top's timbre (only the level falls)
    assert velocity.choose_steps(grid, 1000 - grid, 3) == [0.0, 0.0, 0.0]
    # darker only a little way down: the steps stop there rather than turn brighter
    cen = np.where(grid >= -0.5, 1000 + 50 * grid, 2000.0)
    assert velocity.choose_steps(grid, cen, 3) == [-0.5, -0.5, 0.0]


def test_the_centroid_is_librosas_weighted_by_frame_rms():
    rng = np.random.default_rng(1)
    rate = 48000
    t = np.arange(rate) / rate
    x = (np.sin(2 * np.pi * 300 * t) * np.exp(-t * 8) + 0.3 * rng.standard_normal(rate)
         * np.exp(-t * 30))
    S = np.abs(librosa.stft(x, n_fft=2048, hop_length=512, center=False))
    c = librosa.feature.spectral_centroid(S=S, sr=rate)[0]
    rms = np.sqrt(np.mean(S ** 2, axis=0))
    assert velocity.centroid(x, rate) == pytest.approx(float(c @ rms / rms.sum()), rel=1e-3)


def test_darken_meets_its_target_with_the_gentlest_lowpass():
    rate = 48000
    x = np.random.default_rng(2).standard_normal(rate // 2) * np.exp(-np.arange(rate // 2) / 4000)
    c = velocity.centroid(x, rate)
    same, cut, c1 = velocity.darken(x, rate, c * 1.01)
    assert cut is None and same is x and c1 == c
    y, cut, c2 = velocity.darken(x, rate, 0.7 * c)
    assert velocity.centroid(y, rate) == pytest.approx(c2, rel=1e-6) and c2 <= 0.7 * c
    gentler = velocity.CUTOFFS[velocity.CUTOFFS > cut + 0.1]  # cut is rounded to 0.1 Hz
    from drumlayer.recipes import shaping
    z = shaping.tone(x, "lpf", float(gentler[-1]), rate)  # the next gentler misses the target
    assert velocity.centroid(z, rate) > 0.7 * c


def test_voices_of_a_toy_model_get_softer_and_darker_layer_by_layer():
    """A 'model' whose sound at z is noise low-passed at a cutoff that rises along the first
    latent axis: the layers' levels and centroids fall from the top layer down, each round
    robin's top layer is its own latent at 0 dB."""
    from drumlayer.recipes import shaping

    rng = np.random.default_rng(3)
    rate, pca = 22050, _pca(rng, L=3, C=3)
    pca["components"] = np.eye(3, dtype=np.float32)
    noise = rng.standard_normal(rate // 2)

    def sound(z):
        return shaping.tone(noise, "lpf", float(np.clip(3000 * 2 ** z[0], 100, 10000)), rate)

    def measure(zs):
        xs = [sound(z) for z in zs]
        return (np.array([np.sqrt(np.mean(x ** 2)) for x in xs]),
                np.array([velocity.centroid(x, rate) for x in xs]))

    latents = np.array([[0.5, 0, 0], [0.2, 0.1, 0]], np.float32)
    layers, fits, audio = velocity.voices(
        latents, measure, lambda z, db: sound(z) * 10 ** (db / 20), rate, pca, n=4)
    assert audio.shape == (4, 2, rate // 2)
    assert [(lay["lovel"], lay["hivel"]) for lay in layers] == velocity.ranges(4)
    for j in range(2):
        level = [20 * np.log10(np.sqrt(np.mean(audio[v, j] ** 2))) for v in range(4)]
        cen = [velocity.centroid(audio[v, j], rate) for v in range(4)]
        assert np.all(np.diff(level) > 0), level
        assert np.all(np.diff(cen) > 0), cen
        np.testing.assert_allclose(layers[-1]["latents"][j], latents[j])
        np.testing.assert_allclose(audio[-1, j], sound(latents[j]), atol=1e-6)
        assert fits[j]["r2"] > 0.5 and fits[j]["centroid_hz_per_step"] > 0
    # the model darkens enough here: the steps do it, no low-pass needed
    assert all(c is None for lay in layers for c in lay["lowpass_hz"])
    assert layers[0]["steps"][0] < layers[1]["steps"][0] < 0 == layers[3]["steps"][0]
