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


def forged_wav(path, channels: int, rate: int, frames: int = 100) -> None:
    """A 16-bit PCM WAV whose header claims `channels` at `rate`, with `frames` frames of data:
    written by hand, as a hostile or damaged file would be."""
    import struct

    data = np.random.default_rng(0).integers(-3000, 3000, frames * channels, np.int16).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * channels * 2) & 0xFFFFFFFF,
                      channels * 2, 16)
    body = (b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", len(data)) + data)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("channels, rate, says", [
    (1024, 2**31 - 1, r"unsupported: 1024 channels \(at most 64\)"),
    (255, 192000, "unsupported: 255 channels"),
    (2, 2**31 - 1, "unsupported sample rate: 2147483647 Hz"),
    (1, 300, "unsupported sample rate: 300 Hz"),
])
def test_an_absurd_header_is_refused_before_decoding_and_says_why(tmp_path, channels, rate,
                                                                   says):
    path = tmp_path / "bomb.wav"
    forged_wav(path, channels, rate)
    with pytest.raises(audio.AudioError, match=says) as e:
        audio.load_clip(path)
    assert str(path) in str(e.value)


def test_many_channels_at_a_high_rate_cost_only_their_mono_mix(tmp_path):
    """8 channels at 655 kHz (the highest FLAC rate), 10 s: 210 MB as float32, decoded block by
    block into its 26 MB mono mix, which equals the mean of the channels."""
    import tracemalloc

    rate, seconds = 655350, 10
    x = (0.1 * np.random.default_rng(1).standard_normal((rate * seconds, 8))).astype(np.float32)
    path = tmp_path / "wide.flac"
    sf.write(path, x, rate, subtype="PCM_16")
    want = sf.read(path, dtype="float32")[0][:rate * 2].mean(axis=1)
    del x
    tracemalloc.start()
    got, got_rate = audio.read_audio(path, max_seconds=seconds)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got.shape == (rate * seconds, 1) and got_rate == rate
    np.testing.assert_allclose(got[:rate * 2, 0], want, atol=1e-6)
    assert peak < 3 * rate * seconds * 4, f"{peak / 1e6:.0f} MB for a 26 MB mono mix"


def test_a_file_name_that_is_not_utf8_reads(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"snare_\xe9t\xe9.wav")  # Latin-1, as old kits are
    sf.write(path, 0.5 * sine(200.0, 44100), 44100)
    clip = audio.load_clip(os.fsdecode(path))
    assert clip.shape == (audio.CLIP_SAMPLES,) and np.max(np.abs(clip)) == pytest.approx(1.0)


def test_a_file_without_read_permission_says_so(tmp_path, monkeypatch):
    path = tmp_path / "locked.wav"
    sf.write(path, 0.5 * sine(200.0, 44100), 44100)
    real_open = open

    def deny(file, *args, **kwargs):  # as root the file system itself never denies
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(audio.AudioError, match="cannot read: permission denied"):
        audio.load_clip(path)


def flac_of_unknown_length(path, x, rate, channels=1):
    """A FLAC whose STREAMINFO says total_samples = 0 ("unknown", which the format allows for
    a stream encoded before its end was known): soundfile's FLAC with those 36 bits zeroed."""
    sf.write(path, np.repeat(x[:, None], channels, 1), rate, format="FLAC", subtype="PCM_16")
    b = bytearray(path.read_bytes())
    assert b[:4] == b"fLaC" and b[4] & 0x7F == 0  # the first block is STREAMINFO
    packed = int.from_bytes(b[18:26], "big")  # rate 20 bits, channels 3, bits 5, samples 36
    assert packed & (2**36 - 1) == len(x)
    b[18:26] = (packed & ~(2**36 - 1)).to_bytes(8, "big")
    path.write_bytes(bytes(b))


def test_a_flac_of_unknown_length_decodes_as_a_stream_within_the_bounds(tmp_path):
    rate = 44100
    t = np.arange(int(0.8 * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-5 * t)).astype(np.float32)
    short = tmp_path / "short.flac"
    flac_of_unknown_length(short, x, rate, channels=2)
    assert sf.info(short).frames >= audio.UNKNOWN_FRAMES  # libsndfile: the length is unknown
    got, r = audio.read_audio(short, max_seconds=10.0, max_duration=30.0)
    # libsndfile errs on a read that reaches such a stream's last frame: that one is lost
    assert r == rate and len(x) - 1 <= got.shape[0] <= len(x) and got.shape[1] == 1
    np.testing.assert_allclose(got[:, 0], x[:len(got)], atol=2 / 32768)
    # max_seconds keeps the start; what follows is read and dropped
    part, _ = audio.read_audio(short, max_seconds=0.5)
    assert part.shape == (rate // 2, 1)
    np.testing.assert_array_equal(part, got[: rate // 2])
    # longer than max_duration: refused once the stream passes it, not from its header
    long = tmp_path / "long.flac"
    flac_of_unknown_length(long, np.tile(x, 5), rate)  # 4 s
    with pytest.raises(audio.AudioError, match=r"too long for a one-shot \(more than 3 s"):
        audio.read_audio(long, max_seconds=1.0, max_duration=3.0)
    ok, _ = audio.read_audio(long, max_seconds=1.0, max_duration=5.0)
    assert ok.shape == (rate, 1)
    assert audio.load_clip(short, max_duration=30.0).shape == (audio.ClipSpec().samples,)
