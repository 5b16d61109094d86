import os

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from drumlayer.data import audio

from kitgen import hit

SR = audio.SAMPLE_RATE


def sine(freq, rate, seconds=1.0, phase=0.0):
    t = np.arange(int(round(seconds * rate))) / rate
    return np.sin(2 * np.pi * freq * t + phase).astype(np.float32)


@pytest.mark.parametrize("rate_in", [8000, 16000, 44100, 48000, 96000, 192000])
def test_resample_matches_analytic_sine(rate_in):
    x = sine(1000.0, rate_in)
    y = audio.resample(x, rate_in, SR)
    assert y.shape == (SR,)
    ref = sine(1000.0, SR)
    inner = slice(200, SR - 200)  # away from the edges the filter has no history for
    np.testing.assert_allclose(y[inner], ref[inner], atol=2e-3)


def test_resample_agrees_with_scipy_polyphase():
    rng = np.random.default_rng(0)
    x = signal.sosfilt(signal.butter(12, 6000, fs=44100, output="sos"),
                       rng.standard_normal(44100)).astype(np.float32)
    ours = audio.resample(x, 44100, SR)
    ref = signal.resample_poly(x, 1, 2, window=("kaiser", 12.0))
    inner = slice(500, SR - 500)
    err = np.sqrt(np.mean((ours[inner] - ref[inner]) ** 2) / np.mean(ref[inner] ** 2))
    assert err < 5e-3


def test_resample_is_band_limited():
    # 15 kHz is above the new Nyquist (11.025 kHz): it must vanish, not alias to 7.05 kHz.
    y = audio.resample(sine(15000.0, 48000), 48000, SR)
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 1e-3


def test_resample_batched_rows_are_independent():
    x = np.stack([sine(500.0, 44100), sine(2000.0, 44100)])
    y = audio.resample(x, 44100, SR)
    np.testing.assert_allclose(y[1], audio.resample(x[1], 44100, SR), atol=1e-6)


def test_canonical_trims_pads_and_normalises():
    x = hit(44100, seconds=0.3, lead=0.25)
    clip = audio.canonical(0.01 * x, 44100)
    assert clip.shape == (SR,) and clip.dtype == np.float32
    assert np.max(np.abs(clip)) == pytest.approx(1.0)
    onset = np.argmax(np.abs(clip) >= 0.05)
    assert 18 <= onset <= 26  # the 1 ms kept before the onset is ~22 samples
    assert np.all(clip[int(0.32 * SR):] == 0.0)  # 0.3 s of sound, zero-padded to 1 s
    # normalisation makes the level irrelevant
    np.testing.assert_allclose(audio.canonical(x, 44100), clip, atol=1e-5)


def test_canonical_cuts_with_fade():
    x = np.random.default_rng(0).uniform(-1, 1, 3 * 44100).astype(np.float32)
    clip = audio.canonical(x, 44100)
    assert clip.shape == (SR,)
    assert abs(clip[-1]) < 1e-6  # faded to zero
    fade = int(0.01 * SR)
    assert np.max(np.abs(clip[-fade // 4:])) < 0.3
    assert np.max(np.abs(clip[-3 * fade:-fade])) > 0.5  # not faded before the last 10 ms


def test_canonical_mono_is_channel_mean():
    x = hit(SR)
    stereo = np.stack([x, 0.5 * x], axis=1)
    np.testing.assert_allclose(audio.canonical(stereo, SR), audio.canonical(0.75 * x, SR),
                               atol=1e-6)


@pytest.mark.parametrize("x,reason", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros(1000, np.float32), "silent"),
    (np.full(1000, np.nan, np.float32), "non-finite"),
    (np.full(1000, 1e-5, np.float32), "silent"),
])
def test_canonical_rejects(x, reason):
    with pytest.raises(audio.AudioError, match=reason):
        audio.canonical(x, SR)


@pytest.mark.parametrize("subtype,fmt,rate,channels,tol", [
    ("PCM_U8", "WAV", 8000, 1, 2e-2),
    ("PCM_16", "WAV", 44100, 2, 1e-3),
    ("PCM_24", "WAV", 48000, 6, 1e-4),
    ("PCM_32", "WAV", 96000, 1, 1e-4),
    ("FLOAT", "WAV", 192000, 2, 1e-4),
    ("PCM_16", "FLAC", 44100, 1, 1e-3),
    ("PCM_24", "AIFF", 22050, 1, 1e-4),
    ("VORBIS", "OGG", 44100, 2, 5e-2),
])
def test_load_clip_reads_formats(tmp_path, subtype, fmt, rate, channels, tol):
    x = hit(rate)
    data = np.repeat(x[:, None], channels, axis=1)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, data, rate, subtype=subtype, format=fmt)
    clip = audio.load_clip(path)
    ref = audio.canonical(x, rate)
    err = np.sqrt(np.mean((clip - ref) ** 2))
    assert err < tol, err
    # aligned to the sample: a lossy codec's tolerance must not hide a shifted onset
    lags = np.arange(-8, 9)
    corr = [np.dot(np.roll(clip, -lag), ref) for lag in lags]
    assert lags[int(np.argmax(corr))] == 0


def test_long_file_is_not_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    rate = 44100
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        block = 0.5 * sine(220.0, rate, 10.0)
        for _ in range(30):  # 5 minutes
            f.write(block)
    decoded = []
    read = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        out = read(self, frames, *args, **kwargs)
        decoded.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    data, got_rate = audio.read_audio(path, max_seconds=2.0)
    assert data.shape == (2 * rate, 1) and got_rate == rate
    assert sum(decoded) == 2 * rate  # of 5 minutes, only the 2 s asked for were decoded


def test_bad_files_raise_one_error_type_naming_the_file(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    dangling = tmp_path / "dangling.wav"
    os.symlink(tmp_path / "missing.wav", dangling)
    loop = tmp_path / "loop.wav"
    os.symlink(loop, loop)
    for path, reason in ((text, "unreadable"), (empty, "empty"), (dangling, "cannot open"),
                         (loop, "symlink loop"), (tmp_path, "not a regular file")):
        with pytest.raises(audio.AudioError, match=reason) as e:
            audio.load_clip(path)
        assert str(path) in str(e.value)


@pytest.mark.parametrize("bits,rate", [(16, 44100), (24, 48000), (24, SR)])
def test_write_wav_round_trip(tmp_path, bits, rate):
    # Band-limit below the resampler's transition band (~95% of Nyquist) so the round trip is exact.
    sos = signal.butter(12, 7000, fs=SR, output="sos")
    clip = signal.sosfilt(sos, audio.canonical(hit(SR), SR)).astype(np.float32)
    clip *= 0.9 / np.abs(clip).max()
    path = tmp_path / "out.wav"
    audio.write_wav(path, clip, SR, out_rate=rate, bits=bits)
    info = sf.info(path)
    assert info.samplerate == rate and info.subtype == f"PCM_{bits}"
    back, _ = sf.read(path, dtype="float32")
    back = audio.resample(back, rate, SR)[:SR]
    np.testing.assert_allclose(back[100:-100], clip[100:-100], atol=2e-3 if bits == 16 else 1e-3)
