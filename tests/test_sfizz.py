"""The studio's SFZ export played by a real SFZ player: sfizz, through its Python binding.

The reference is sfizz's own difference between a plain one-region SFZ of the WAV export and
that WAV: the layered SFZ of the same recipe must sound as close to the WAV as that (spectrum
and level), with every edit that the SFZ carries (weights, master level, gain, envelope, onset
offsets, pruning)."""

import io
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from drumlayer.data import npy_rows
from drumlayer.features import measures
from drumlayer.recipes import render
from drumlayer.studio.server import create_app

from conftest import LOCAL

pysfizz = pytest.importorskip("pysfizz", reason="the dev extra installs pysfizz (sfizz)")
RATE = 48000


def play(sfz, seconds: float = 1.0, sounding: float = 0.3) -> np.ndarray:
    """Middle C at full velocity through sfizz, mono [RATE * seconds]. sfizz streams a sample's
    tail from disk on a thread of its own, in real time: a busy machine makes it miss blocks,
    which come out silent. So the note is played again (up to 20 times) until no 5 ms window
    of its first `sounding` seconds is silent: the verdict does not depend on the load."""
    synth = pysfizz.Synth(sample_rate=RATE, block_size=256)
    assert synth.load_sfz_file(str(sfz)), f"sfizz could not load {sfz}"
    win = RATE // 200
    for _ in range(20):
        x = synth.render_note(60, 127, seconds, seconds).mean(axis=0)[: int(RATE * seconds)]
        head = x[: int(RATE * sounding) // win * win].reshape(-1, win)
        if np.all(np.any(head != 0, axis=1)):
            return x
        time.sleep(0.05)
    raise AssertionError(f"sfizz played {sfz} with silent gaps 20 times: a streaming problem")


def rms_db(x) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


def lsd(x, ref) -> float:
    """Log-spectral distance (dB) of x against ref, x scaled to ref's RMS first: sfizz plays
    every region ~11.5 dB below its sample, which the levels are compared for separately."""
    x = x * 10 ** ((rms_db(ref) - rms_db(x)) / 20)
    return float(measures.log_spectral_distance(np.float32(x), np.float32(ref)))


@pytest.fixture(scope="module")
def client(smoke_run):
    return TestClient(create_app(str(smoke_run)), base_url=LOCAL), smoke_run


def _recipe(c, wd):
    clip = npy_rows.read_rows(str(wd / "corpus" / "clips.npy"), 2, 3)[0]
    buf = io.BytesIO()
    sf.write(buf, clip, 22050, format="WAV", subtype="PCM_16")
    r = c.post("/api/encode", files={"file": ("snare.wav", buf.getvalue(), "audio/wav")})
    return r.json()


EDITS = {
    "as encoded": {},
    "gain and pruning": {"gain_db": -3.0, "prune": 0.02},
    "envelope": {"envelope": {"attack": 0.002, "hold": 0.25, "decay": 0.6}},
    "onset offset": {"offsets_ms": "loudest: 7.5"},
}


@pytest.mark.parametrize("edit", EDITS)
def test_sfizz_plays_the_layered_sfz_as_close_as_the_wav_itself(client, tmp_path, edit):
    c, wd = client
    r = {**_recipe(c, wd), **EDITS[edit]}
    if r.get("offsets_ms") == "loudest: 7.5":
        w = np.asarray(c.post("/api/weights", json={**r, "offsets_ms": {}}).json()["weights"])
        r["offsets_ms"] = {str(int(np.argmax(w))): 7.5}
    wav_bytes = c.post(f"/api/render?export=true&sample_rate={RATE}", json=r).content
    wav, sr = sf.read(io.BytesIO(wav_bytes), dtype="float32")
    assert sr == RATE
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "mix.wav").write_bytes(wav_bytes)
    (tmp_path / "plain" / "plain.sfz").write_text("<region> sample=mix.wav\n")
    plain = play(tmp_path / "plain" / "plain.sfz")
    zipfile.ZipFile(io.BytesIO(c.post(f"/api/export/sfz?sample_rate={RATE}",
                                      json=r).content)).extractall(tmp_path / "layered")
    layered = play(tmp_path / "layered" / "layered.sfz")

    reference = lsd(plain, wav)  # what sfizz itself changes in one plain sample
    assert reference < 0.5
    assert lsd(layered, wav) < reference + 0.5, (lsd(layered, wav), reference)
    assert lsd(layered, plain) < 0.75
    # the same level as the WAV export played the same way (before: the <global> volume was
    # overridden by the regions', which lost the master level and the gain)
    assert abs(rms_db(layered) - rms_db(plain)) < 0.1


def test_sfizz_decay_is_the_curve_the_export_assumes(tmp_path):
    """sfizz's ampeg decay falls render.SFZ_DECAY_DB over ampeg_decay seconds (a straight line
    in dB): the export's conversion from the studio's 60 dB decay rests on it."""
    t = np.arange(RATE) / RATE
    sf.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), RATE, subtype="FLOAT")
    (tmp_path / "plain.sfz").write_text("<region> sample=tone.wav\n")
    (tmp_path / "decay.sfz").write_text("<region> sample=tone.wav ampeg_hold=0 ampeg_decay=0.5 "
                                        "ampeg_sustain=0\n")
    plain, decayed = play(tmp_path / "plain.sfz"), play(tmp_path / "decay.sfz")
    win = 240
    frames = np.arange(0, int(0.35 * RATE), win)
    gain = np.array([np.sqrt(np.mean(decayed[i:i + win] ** 2) / np.mean(plain[i:i + win] ** 2))
                     for i in frames])
    slope, _ = np.polyfit((frames + win / 2) / RATE, 20 * np.log10(gain), 1)
    assert slope * 0.5 == pytest.approx(-render.SFZ_DECAY_DB, abs=0.5)
