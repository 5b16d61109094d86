"""Per-layer shaping (recipes.shaping) against hand computations and sfizz."""

import numpy as np
import pytest
import soundfile as sf

from drumlayer.recipes import render, shaping
from drumlayer.recipes.recipe import LayerShape, Recipe

R = 48000


def tone(freqs, n=R, rate=R):
    t = np.arange(n) / rate
    return sum(0.2 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def peaks(x, rate, count):
    """The `count` strongest partials (Hz) of x, to the FFT bin."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    hz = np.fft.rfftfreq(len(x), 1 / rate)
    found = []
    for i in np.argsort(-spec):
        if all(abs(hz[i] - f) > 20 for f in found):
            found.append(hz[i])
        if len(found) == count:
            break
    return sorted(found)


@pytest.mark.parametrize("cents,ratio", [(1200, 2.0), (-1200, 0.5), (700, 2 ** (7 / 12))])
def test_pitch_scales_the_partials_of_a_tone(cents, ratio):
    x = tone([300, 1100, 2500])
    y = shaping.pitch(x, cents)[: R // 3]  # the first third: inside the sample for any pitch
    assert np.allclose(peaks(y, R, 3), np.array([300, 1100, 2500]) * ratio, atol=4.0)


def test_pitch_up_an_octave_ends_the_sample_at_half_time_and_sfz_says_transpose_12():
    x = tone([440])
    y = shaping.pitch(x, 1200)
    assert np.max(np.abs(y[R // 2 + shaping.HALF_TAPS:])) == 0.0
    assert np.max(np.abs(y[: R // 2 - shaping.HALF_TAPS])) > 0.15
    ops = shaping.sfz_opcodes(LayerShape(pitch_cents=1200), 1.0)
    assert ops == {"transpose": 12}
    assert shaping.sfz_opcodes(LayerShape(pitch_cents=-730), 1.0) == {"transpose": -7,
                                                                       "tune": "-30.00"}


def test_a_pitch_of_whole_samples_interpolates_nothing():
    """At an octave down every other output sample falls on an input sample: the windowed sinc
    there is exactly that sample."""
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    y = shaping.pitch(x, -1200)
    np.testing.assert_allclose(y[::2], x[:2000], atol=1e-6)


def test_a_decay_of_T_falls_60_dB_at_T():
    x = tone([1000])
    for decay in (0.1, 0.35):
        y = shaping.shape(x, R, decay=decay)
        win = 480

        def level(t, y=y, win=win):
            i = int(t * R)
            return 20 * np.log10(np.sqrt(np.mean(y[i:i + win] ** 2)))

        # RMS over a 10 ms window starting at t: the envelope's mean over it, by hand
        start = 20 * np.log10(np.sqrt(np.mean(10 ** (-6 * np.arange(win) / R / decay))) * 0.2
                              / np.sqrt(2))
        assert level(decay) - start == pytest.approx(-60.0, abs=0.5)
        assert level(decay / 2) - start == pytest.approx(-30.0, abs=0.5)


@pytest.mark.parametrize("kind", ["lpf", "hpf"])
def test_the_filter_attenuates_as_its_response_says(kind):
    """Sines at octaves around the cutoff come out at |H| of the RBJ biquad (Q = 1), computed
    here from the analog prototype by the bilinear transform (cutoff pre-warped)."""
    fc = 1000.0
    for f in (250.0, 500.0, 1000.0, 2000.0, 4000.0):
        y = shaping.shape(tone([f]), R, filter=kind, cutoff_hz=fc)
        got = 20 * np.log10(np.sqrt(np.mean(y[R // 2:] ** 2)) / (0.2 / np.sqrt(2)))
        k = np.tan(np.pi * f / R) / np.tan(np.pi * fc / R)  # the warped analog frequency
        s = 1j * k
        h = 1 / (s * s + s + 1) if kind == "lpf" else s * s / (s * s + s + 1)  # Q = 1
        assert got == pytest.approx(20 * np.log10(abs(h)), abs=0.05), f


def test_a_plain_shape_is_the_source_itself():
    x = np.random.default_rng(1).standard_normal((3, 2205)).astype(np.float32)
    assert shaping.is_plain(LayerShape()) and shaping.is_plain(None)
    np.testing.assert_array_equal(shaping.shape(x[0], 22050), x[0])
    w = np.array([0.5, 0.0, 0.25], np.float32)
    env = np.ones(2205, np.float32)
    plain = render.render(w, x, {}, env, 0.0, {0: LayerShape(), 2: LayerShape()}, 22050)
    np.testing.assert_allclose(plain, 0.5 * x[0] + 0.25 * x[2], atol=1e-6)


def test_a_shaped_layer_renders_its_weight_times_its_shaped_source_delayed():
    x = np.random.default_rng(2).standard_normal((2, 22050)).astype(np.float32)
    w = np.array([0.5, 0.25], np.float32)
    s = LayerShape(pitch_cents=-500, filter="hpf", cutoff_hz=300, decay=0.2)
    got = render.render(w, x, {1: 100}, np.ones(22050, np.float32), -6.0, {1: s}, 22050)
    b, a = shaping.biquad("hpf", 300, 22050)
    from scipy import signal

    layer = signal.lfilter(b, a, shaping.pitch(x[1], -500)) * 10 ** (
        -3 * np.arange(22050) / 22050 / 0.2)
    want = 0.5 * x[0]
    want[100:] += 0.25 * layer[:-100]
    np.testing.assert_allclose(got, want * 10 ** (-6 / 20), atol=2e-5)


def test_a_version_1_recipe_loads_and_has_no_shaping():
    r = Recipe.model_validate_json('{"version": 1, "latent": [0.5, -1], "offsets_ms": {"2": 4}}')
    assert r.version == 1 and r.shaping == {} and r.offsets_ms == {2: 4.0}
    assert Recipe(latent=[0.0]).version == 2


@pytest.mark.parametrize("bad", [{"pitch_cents": 1300}, {"cutoff_hz": 5}, {"decay": 0.0},
                                 {"filter": "bpf"}, {"gain": 1}])
def test_a_bad_shape_is_refused(bad):
    with pytest.raises(ValueError):
        LayerShape(**bad)


def test_sfizz_filters_as_the_shaping_does(tmp_path):
    """sfizz's lpf_2p and hpf_2p are the biquads of `shaping.tone` (white noise through both)."""
    pysfizz = pytest.importorskip("pysfizz")
    x = (np.random.default_rng(3).standard_normal(R) * 0.1).astype(np.float32)
    sf.write(tmp_path / "noise.wav", x, R, subtype="FLOAT")
    out = {}
    for name, ops in (("plain", ""), ("lpf", "fil_type=lpf_2p cutoff=700"),
                      ("hpf", "fil_type=hpf_2p cutoff=3000")):
        (tmp_path / f"{name}.sfz").write_text(
            f"<control> default_path=./\n<region> sample=noise.wav {ops}\n")
        synth = pysfizz.Synth(sample_rate=R, block_size=4096)
        assert synth.load_sfz_file(str(tmp_path / f"{name}.sfz"))
        out[name] = synth.render_note(60, 127, 0.5, 0.5).mean(axis=0)[:4096]
    g = np.std(out["plain"]) / np.std(x[:4096])
    for kind, fc in (("lpf", 700), ("hpf", 3000)):
        ours = shaping.tone(x, kind, fc, R)[:4096] * g
        err = np.std(out[kind][64:] - ours[64:]) / np.std(ours[64:])
        assert err < 0.03, (kind, err)


def test_the_refinements_bank_is_every_source_shaped_as_the_renderer_shapes_it():
    x = np.random.default_rng(4).standard_normal((2, 3000)).astype(np.float32)
    variants = shaping.grid((-200.0,), (("hpf", 900.0),), (0.05,))
    assert len(variants) == 8 and variants[0] == shaping.Variant()
    assert len(set(variants)) == 8
    bank = shaping.bank(x, 22050, variants)
    for i in range(2):
        for j, v in enumerate(variants):
            want = shaping.shape(x[i], 22050, v.pitch_cents, v.filter, v.cutoff_hz, v.decay)
            np.testing.assert_array_equal(bank[i * 8 + j], want)
