import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.fft
from scipy import signal

from drumlayer.data import procedural
from drumlayer.features import attack as attack_lib
from drumlayer.features import batching, descriptors, extractor, spectral

SR = 22050


@pytest.fixture(scope="module")
def clips():
    """Procedural snares, a chirp, a sine with a silent second half, and noise: [6, 22050]."""
    t = np.arange(SR) / SR
    snares = procedural.procedural_snares(3, SR, seed=5)
    chirp = signal.chirp(t, 100, 1.0, 8000).astype(np.float32)
    half = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    half[SR // 2 :] = 0.0
    noise = np.random.default_rng(0).uniform(-1, 1, SR).astype(np.float32)
    return np.stack([*snares, chirp, half, noise])


def librosa_mag(x, n_fft=4096):
    return np.abs(librosa.stft(x, n_fft=n_fft, hop_length=512, center=True,
                               pad_mode="constant")).swapaxes(-1, -2)


def librosa_rms(x):
    return librosa.feature.rms(y=x, frame_length=4096, hop_length=512, center=True,
                               pad_mode="constant")[..., 0, :]


def test_stft_matches_librosa(clips):
    ours = np.asarray(spectral.stft(clips))
    assert ours.shape == (6, 44, 2049) and ours.dtype == np.complex64
    ref = librosa_mag(clips)
    np.testing.assert_allclose(np.abs(ours), ref, atol=1e-5 * ref.max())
    # an off-by-one frame or a symmetric window would be far outside this tolerance
    assert np.abs(np.abs(ours[:, 1:]) - ref[:, :-1]).max() > 100 * 1e-5 * ref.max()


def test_stft_other_sizes_and_leading_axes(clips):
    ours = np.asarray(spectral.stft(clips[:2].reshape(2, 1, SR), n_fft=1000, hop=300))
    ref = np.abs(librosa.stft(clips[:2], n_fft=1000, hop_length=300, center=True,
                              pad_mode="constant")).swapaxes(-1, -2)
    assert ours.shape == (2, 1, 1 + SR // 300, 501)
    np.testing.assert_allclose(np.abs(ours[:, 0]), ref, atol=1e-5 * ref.max())


def test_frame_rms_matches_librosa(clips):
    np.testing.assert_allclose(spectral.frame_rms(clips), librosa_rms(clips), atol=1e-6)
    np.testing.assert_allclose(spectral.frame_rms(clips, 1000, 300),
                               librosa.feature.rms(y=clips, frame_length=1000, hop_length=300,
                                                   pad_mode="constant")[:, 0], atol=1e-6)


def test_weighted_spectrum(clips):
    ours = np.asarray(spectral.weighted_spectrum(clips))
    mag, rms = librosa_mag(clips)[..., :-1], librosa_rms(clips)
    ref = np.einsum("bt,btf->bf", rms, mag) / rms.sum(-1, keepdims=True)
    assert ours.shape == (6, 2048)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.max())


def test_chunking_does_not_change_results(clips):
    x = np.concatenate([clips, clips[:1]])  # 7 clips: chunks of 3 need padding
    a = extractor.features(x, chunk=3)
    b = extractor.features(x, chunk=None)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("b", "chunk", "streams"), [(7, 4, 2), (8, 4, 2), (9, 6, 3), (7, 3, 2),
                                                     (5, 4, 4), (5, 8, 2)])
def test_map_chunks_in_streams_equals_one_call(b, chunk, streams):
    # Each step's parts are separate calls of fn: their rows must come back in order, padded
    # rows dropped, for a tuple in and a tuple out; a stream count that does not divide the
    # chunk runs the chunk whole.
    x = jax.random.normal(jax.random.PRNGKey(0), (b, 5))
    t = jax.random.normal(jax.random.PRNGKey(1), (b, 2))
    seen = []

    def fn(xt):
        seen.append(xt[0].shape[0])
        return xt[0] * jnp.sum(xt[1], -1, keepdims=True), jnp.cumsum(xt[1], -1)

    want = fn((x, t))
    seen.clear()
    got = batching.map_chunks(fn, (x, t), chunk, streams=streams)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    part = chunk // streams if chunk % streams == 0 else chunk
    assert seen == ([b] if b <= chunk else [part] * (chunk // part))


def test_mel_filterbank_and_dct_match_references():
    np.testing.assert_allclose(descriptors.mel_filterbank(SR, 2048, 128),
                               librosa.filters.mel(sr=SR, n_fft=2048, n_mels=128), atol=1e-7)
    x = np.random.default_rng(1).standard_normal((5, 128))
    np.testing.assert_allclose(x @ descriptors.dct_matrix(128, 13),
                               scipy.fft.dct(x, type=2, norm="ortho")[:, :13], atol=1e-5)


def test_mfcc_matches_librosa(clips):
    ours = np.asarray(descriptors.mfcc(clips))
    ref = np.stack([librosa.feature.mfcc(y=x, sr=SR, n_mfcc=13).T for x in clips])
    assert ours.shape == (6, 44, 13)
    np.testing.assert_allclose(ours, ref, atol=2e-3 * np.abs(ref).max())


def test_spectral_centroid_matches_librosa(clips):
    ours = np.asarray(descriptors.spectral_centroid(clips))
    ref = librosa.feature.spectral_centroid(y=clips, sr=SR)[:, 0]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-2)
    assert np.all(ours[4, -5:] == 0.0)  # silent frames


def test_weighted_means(clips):
    rms = librosa_rms(clips)
    w = rms / rms.sum(-1, keepdims=True)
    cent = librosa.feature.spectral_centroid(y=clips, sr=SR)[:, 0]
    np.testing.assert_allclose(descriptors.weighted_centroid(clips), (w * cent).sum(-1), rtol=1e-4)
    mf = np.stack([librosa.feature.mfcc(y=x, sr=SR, n_mfcc=13) for x in clips])
    np.testing.assert_allclose(descriptors.weighted_mfcc(clips), np.einsum("bt,bkt->bk", w, mf),
                               atol=2e-3 * np.abs(mf).max())


def lat_direct(x, sr=SR, win=64, hop=16, start=0.2, stop=0.9):
    """Peeters / Essentia: log10 of the time between the envelope's first reaching 20% and 90%
    of its maximum. The envelope: RMS of win samples every hop samples, written plainly."""
    env = np.array([np.sqrt(np.mean(x[k : k + win] ** 2))
                    for k in range(0, len(x) - win + 1, hop)])
    a = np.argmax(env >= start * env.max())
    b = np.argmax(env >= stop * env.max())
    return np.log10(max(b - a, 1) * hop / sr)


def ramp(attack_s, seed=0):
    t = np.arange(SR) / SR
    rng = np.random.default_rng(seed)
    env = np.minimum(t / attack_s, 1.0) * np.exp(-np.maximum(t - attack_s, 0) / 0.1)
    return (env * rng.uniform(-1, 1, SR)).astype(np.float32)


def test_log_attack_time_matches_direct_definition(clips):
    x = np.concatenate([clips, np.stack([ramp(a, i) for i, a in enumerate((.002, .01, .05))])])
    ours = np.asarray(attack_lib.log_attack_time(x))
    ref = np.array([lat_direct(c) for c in x])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("attack", [0.005, 0.02, 0.08])
def test_log_attack_time_of_a_linear_ramp(attack):
    # an amplitude ramp over T crosses 20% at ~0.2 T and 90% at ~0.9 T: 0.7 T apart
    lat = float(attack_lib.log_attack_time(ramp(attack)))
    assert lat == pytest.approx(np.log10(0.7 * attack), abs=0.12)


def test_soft_log_attack_time_agrees_with_hard(clips):
    x = np.concatenate([clips, np.stack([ramp(a, i) for i, a in
                                         enumerate(np.geomspace(0.001, 0.1, 12))])])
    hard = np.asarray(attack_lib.log_attack_time(x))
    soft = np.asarray(attack_lib.soft_log_attack_time(x))
    err = np.abs(soft - hard)
    assert np.median(err) < 0.02 and err.max() < 0.15


def test_features_layout(clips):
    f = np.asarray(extractor.features(clips))
    assert f.shape == (6, 2049)
    np.testing.assert_allclose(f[:, :2048], spectral.weighted_spectrum(clips), rtol=1e-5)
    np.testing.assert_allclose(f[:, 2048], attack_lib.soft_log_attack_time(clips), atol=1e-5)
    g = np.asarray(extractor.features(clips, compression="log"))
    np.testing.assert_allclose(g[:, :2048], np.log1p(f[:, :2048]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="compression"):
        extractor.features(clips, compression="cubic")


@pytest.mark.parametrize("compression", ["linear", "log"])
def test_features_gradient_matches_finite_differences(clips, compression):
    rng = np.random.default_rng(3)
    # A noise floor keeps every STFT bin away from |X| = 0, where the magnitude has a kink that
    # no finite difference resolves (the analytic gradient there is 0, as it should be).
    noisy = clips[:3] + 0.01 * rng.uniform(-1, 1, clips[:3].shape)
    with jax.enable_x64(True):
        x = jnp.asarray(noisy, jnp.float64)
        w = jnp.asarray(rng.standard_normal(2049))
        direction = jnp.asarray(rng.standard_normal(x.shape)) * 1e-3

        def loss(x):
            return jnp.sum(extractor.features(x, compression=compression) * w)

        analytic = jnp.sum(jax.grad(loss)(x) * direction)
        eps = 1e-3
        numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-4)


def test_gradient_is_finite_on_zero_padded_clips():
    x = np.zeros((2, SR), np.float32)
    x[0, :3000] = procedural.procedural_snares(1, 3000, seed=1)[0]
    x[1, 100:200] = 1.0  # silence before and after

    def loss(x):
        return jnp.sum(extractor.features(x) ** 2)

    g = np.asarray(jax.grad(loss)(jnp.asarray(x)))
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize(("n_fft", "hop", "chunk"), [(4096, 512, None), (4096, 512, 2),
                                                     (1024, 256, 4), (1000, 300, None),
                                                     (512, 512, None)])
def test_spectrum_gradient_matches_autodiff(clips, n_fft, hop, chunk):
    # The hand-written backward pass against autodiff of the plain definition, including a
    # silent clip (|Y| = 0 everywhere), a zero-padded one and a length that is no multiple of
    # hop; and the chunked forward against the whole batch.
    x = np.concatenate([clips, np.zeros((1, SR), np.float32)])
    x[-2, 5000:] = 0.0
    x = jnp.asarray(x[:, : SR - 37])
    g = jnp.asarray(np.random.default_rng(4).standard_normal((len(x), n_fft // 2)), x.dtype)

    def ours(x):
        return jnp.sum(spectral.weighted_spectrum(x, n_fft, hop, chunk=chunk) * g)

    def reference(x):
        return jnp.sum(spectral._spectrum(x, n_fft, hop) * g)

    np.testing.assert_allclose(spectral.weighted_spectrum(x, n_fft, hop, chunk=chunk),
                               spectral._spectrum(x, n_fft, hop), rtol=1e-6, atol=1e-6)
    got, want = jax.grad(ours)(x), jax.grad(reference)(x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, atol=2e-5 * float(jnp.abs(want).max()))
    assert float(jnp.abs(want).max()) > 0


@pytest.mark.parametrize(("n_fft", "hop"), [(4096, 512), (1000, 300)])
def test_mix_spectrum_by_linearity_equals_the_fft_of_the_mix(clips, n_fft, hop):
    # Sources: the clips and a silent one; the last mix is that silent source alone (|Y| = 0
    # in every frame). Forward and the gradient with respect to the weights against autodiff of
    # the plain definition on the mixed audio; in float64, where the two differ by rounding
    # only.
    with jax.enable_x64(True):
        _check_mix_spectrum(clips, n_fft, hop)


def _check_mix_spectrum(clips, n_fft, hop):
    src = jnp.asarray(np.concatenate([clips, np.zeros((1, SR), np.float32)]), jnp.float64)
    rng = np.random.default_rng(6)
    w = rng.dirichlet(np.full(len(src), 0.3), 4)
    w[-1] = np.eye(len(src))[-1]
    w = jnp.asarray(w)
    g = jnp.asarray(rng.standard_normal((len(w), n_fft // 2)))
    spectra = spectral.source_spectra(src, n_fft, hop)
    frames = spectral.num_frames(SR, hop)
    assert spectra.shape == (frames, len(src), n_fft)
    y = np.asarray(spectral.stft(src, n_fft, hop))[..., :-1]
    np.testing.assert_array_equal(spectra[:, :, : n_fft // 2], y.real.swapaxes(0, 1))
    np.testing.assert_array_equal(spectra[:, :, n_fft // 2 :], y.imag.swapaxes(0, 1))

    def ours(w, src):
        return jnp.sum(spectral.mix_spectrum(w, w @ src, spectra, n_fft, hop) * g)

    def reference(w, src):
        return jnp.sum(spectral._spectrum(w @ src, n_fft, hop) * g)

    np.testing.assert_allclose(spectral.mix_spectrum(w, w @ src, spectra, n_fft, hop),
                               spectral._spectrum(w @ src, n_fft, hop), rtol=1e-10, atol=1e-12)
    got, want = jax.grad(ours)(w, src), jax.grad(reference)(w, src)
    assert np.all(np.isfinite(got)) and float(jnp.abs(want).max()) > 0
    np.testing.assert_allclose(got, want, atol=1e-10 * float(jnp.abs(want).max()))
    assert float(jnp.abs(got[-1]).max()) == 0.0  # the silent mix: no gradient, no NaN
    # the spectra are constants: no gradient reaches them
    g_spectra = jax.grad(lambda s: jnp.sum(spectral.mix_spectrum(w, w @ src, s, n_fft, hop)))
    assert float(jnp.abs(g_spectra(spectra)).max()) == 0.0


@pytest.mark.parametrize("n", [4096, 1000, 8, 2])
def test_irfft_matches_numpy(n):
    # Any complex input, including imaginary parts in the first and last bins, which irfft
    # ignores; and a batch with leading axes.
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, 3, n // 2 + 1)) + 1j * rng.standard_normal((2, 3, n // 2 + 1))
    want = np.fft.irfft(x, n=n)
    got = np.asarray(spectral.irfft(jnp.asarray(x.real, jnp.float32),
                                    jnp.asarray(x.imag, jnp.float32), n))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6 * np.abs(want).max() * np.log2(n))
    with pytest.raises(ValueError, match="even"):
        spectral.irfft(jnp.zeros(3), jnp.zeros(3), 5)


@pytest.mark.parametrize(("n_fft", "hop", "samples"), [(4096, 512, SR), (64, 16, 1000),
                                                       (16, 16, 100), (48, 16, 10),
                                                       (40, 16, 200)])
def test_overlap_add_constant_equals_overlap_add(n_fft, hop, samples):
    frames = spectral.num_frames(samples, hop)
    v = jnp.asarray(np.random.default_rng(1).standard_normal((3, frames)), jnp.float32)
    want = spectral.overlap_add(jnp.broadcast_to(v[:, :, None], (3, frames, n_fft)), hop,
                                samples)
    got = spectral.overlap_add_constant(v, n_fft, hop, samples)
    assert got.shape == (3, samples)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(("n_fft", "hop", "chunk"), [(4096, 512, None), (4096, 512, 3),
                                                     (1000, 300, 2), (1000, 300, -1)])
def test_spectrum_loss_equals_the_loss_of_the_spectrum(clips, n_fft, hop, chunk):
    # The loss and its gradient in one pass (gradient computed in the forward pass, scaled by
    # the loss's cotangent in the backward pass) against autodiff of loss_fn(_spectrum(x)),
    # with a loss that is non-linear in the spectrum, per-row cotangents that differ, a silent
    # clip and a chunk that does not divide the batch (-1: the default chunks and parts,
    # over more clips than one chunk).
    if chunk == -1:
        clips = np.concatenate([clips, clips[:, ::-1], 0.5 * clips, clips[::-1] ** 2])
        assert len(clips) + 1 > (batching.default_loss_chunks()[0] or 0)
    x = np.concatenate([clips, np.zeros((1, SR), np.float32)])
    x[-2, 5000:] = 0.0
    x = jnp.asarray(x[:, : SR - 37])
    rng = np.random.default_rng(5)
    target = jnp.asarray(np.abs(rng.standard_normal((len(x), n_fft // 2))) * 0.1, x.dtype)
    ct = jnp.asarray(rng.uniform(0.5, 2.0, len(x)), x.dtype)

    def loss_fn(spectrum, target):
        d = jnp.log1p(spectrum) - jnp.log1p(target)
        return jnp.mean(d * d, -1) + jnp.max(spectrum, -1) ** 2

    def ours(x):
        return spectral.spectrum_loss(x, target, loss_fn, n_fft, hop, chunk=chunk)

    def reference(x):
        return loss_fn(spectral._spectrum(x, n_fft, hop), target)

    loss, spectrum = jax.jit(ours)(x)
    np.testing.assert_allclose(loss, reference(x), rtol=1e-5)
    np.testing.assert_allclose(spectrum, spectral._spectrum(x, n_fft, hop), rtol=1e-5,
                               atol=1e-7)
    got = jax.jit(jax.grad(lambda x: jnp.sum(ct * ours(x)[0])))(x)
    want = jax.grad(lambda x: jnp.sum(ct * reference(x)))(x)
    assert np.all(np.isfinite(got)) and float(jnp.abs(want).max()) > 0
    np.testing.assert_allclose(got, want, atol=2e-5 * float(jnp.abs(want).max()))
    # the spectrum it returns is for metrics: no gradient flows through it
    g_spectrum = jax.grad(lambda x: jnp.sum(ours(x)[1]))(x)
    assert float(jnp.abs(g_spectrum).max()) == 0.0


def test_energy_envelope_gradient_matches_autodiff(clips):
    # The hand-written backward pass of the envelope against autodiff of its plain definition,
    # through a non-linear function of it (what the soft attack time is), on a length that is
    # no multiple of the hop.
    x = jnp.asarray(np.concatenate([clips, np.zeros((1, SR), np.float32)])[:, : SR - 7])

    def plain(x, win=attack_lib.ENV_WIN, hop=attack_lib.ENV_HOP):
        frames = (x.shape[-1] - win) // hop + 1
        idx = np.arange(frames)[:, None] * hop + np.arange(win)[None, :]
        return jnp.sqrt(jnp.mean(x[:, idx] ** 2, -1) + 1e-14)

    g = jnp.asarray(np.random.default_rng(2).standard_normal(len(x)), x.dtype)
    np.testing.assert_allclose(attack_lib.energy_envelope(x), plain(x), rtol=1e-5, atol=1e-7)

    def loss(env_fn):
        return lambda x: jnp.sum(g * jnp.sum(jnp.sin(40.0 * env_fn(x)), -1))

    got = jax.grad(loss(attack_lib.energy_envelope))(x)
    want = jax.grad(loss(plain))(x)
    assert float(jnp.abs(want).max()) > 0
    np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.abs(want).max()))
