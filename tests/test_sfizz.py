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


# sfizz plays a region that starts in the note's first block one sample late from its second
# block on (measured: the correlation with the sample peaks at lag 0 in the first 256-sample
# block, at lag 1 after it); a region that starts in a later block is not shifted. Blocks of
# 2048 samples (43 ms) hold every onset offset tested, so all regions shift alike and the
# comparison is of the layers' mix, not of that quirk.
BLOCK = 2048


def play(sfz, seconds: float = 1.0, sounding: float = 0.9) -> np.ndarray:
    """Middle C at full velocity through sfizz, mono [RATE * seconds]. sfizz streams a sample's
    tail from disk on a thread of its own, in real time: a busy machine makes it miss blocks,
    which come out silent. So the note is played again (up to 20 times) until no 5 ms window
    of its first `sounding` seconds is silent: the verdict does not depend on the load."""
    synth = pysfizz.Synth(sample_rate=RATE, block_size=BLOCK)
    assert synth.load_sfz_file(str(sfz)), f"sfizz could not load {sfz}"
    win = RATE // 200
    for _ in range(20):
        x = synth.render_note(60, 127, seconds, seconds).mean(axis=0)[: int(RATE * seconds)]
        head = x[: int(RATE * sounding) // win * win].reshape(-1, win)
        if np.all(np.any(head != 0, axis=1)):
            return x
        time.sleep(0.05)
    raise AssertionError(f"sfizz played {sfz} with silent gaps 20 times: a streaming problem")


def closest(sfz, ref, good: float, tries: int = 4) -> np.ndarray:
    """sfizz's render of sfz closest to ref (by `lsd`) in up to `tries` renders, stopping at
    one within `good`. On a loaded machine one region of a mix can miss a streamed block
    (seen once in a full CI run: 1.29 dB where the floor was 0.07), which no silent window
    shows while the other layers play; a real difference shows in every render."""
    best = None
    for _ in range(tries):
        x = play(sfz)
        d = lsd(x, ref)
        if best is None or d < best[0]:
            best = (d, x)
        if d < good:
            break
    return best[1]


def rms_db(x) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


# What is compared: the spectrum down to 60 dB below its loudest bin. Below that lie the
# resamplers' residues (soxr's, and sfizz's interpolation of 48 kHz samples made from 22.05 kHz
# ones), which differ by a few dB where nothing is heard.
TOP_DB = 60.0


def lsd(x, ref) -> float:
    """Log-spectral distance (dB) of x against ref, x scaled to ref's RMS first: sfizz plays
    every region ~11.5 dB below its sample, which the levels are compared for separately."""
    x = x * 10 ** ((rms_db(ref) - rms_db(x)) / 20)
    return float(measures.log_spectral_distance(np.float32(x), np.float32(ref), top_db=TOP_DB))


@pytest.fixture(scope="module")
def client(smoke_run):
    return TestClient(create_app(str(smoke_run)), base_url=LOCAL), smoke_run


def _recipe(c, wd):
    clip = npy_rows.read_rows(str(wd / "corpus" / "clips.npy"), 2, 3)[0]
    buf = io.BytesIO()
    sf.write(buf, clip, 22050, format="WAV", subtype="PCM_16")
    r = c.post("/api/encode", files={"file": ("snare.wav", buf.getvalue(), "audio/wav")})
    return r.json()


def _shaped(*shapes, **more):
    """An edit that shapes the loudest layers (shapes[0] the loudest's), and `more`."""
    return lambda top: {"shaping": {str(i): s for i, s in zip(top, shapes, strict=False)}, **more}


ENVELOPE = {"attack": 0.002, "hold": 0.25, "decay": 0.6}
EDITS = {
    "as encoded": {},
    "gain and pruning": {"gain_db": -3.0, "prune": 0.02},
    "envelope": {"envelope": ENVELOPE},
    "onset offset": lambda top: {"offsets_ms": {str(top[0]): 7.5}},
    "pitch up": _shaped({"pitch_cents": 730}),
    "pitch down": _shaped({"pitch_cents": -1200}),
    "low-pass": _shaped({"filter": "lpf", "cutoff_hz": 1500}),
    "high-pass": _shaped({"filter": "hpf", "cutoff_hz": 2500}),
    "layer decay": _shaped({"decay": 0.12}),
    "all shaping, offsets": lambda top: {**_shaped(
        {"pitch_cents": -350, "filter": "lpf", "cutoff_hz": 4000, "decay": 0.3},
        {"pitch_cents": 200, "filter": "hpf", "cutoff_hz": 300},
        {"decay": 0.08})(top), "offsets_ms": {str(top[1]): 6.0, str(top[2]): 11.0}},
    "all shaping, envelope": _shaped(
        {"pitch_cents": -350, "filter": "lpf", "cutoff_hz": 4000, "decay": 0.3},
        {"decay": 0.08}, envelope=ENVELOPE),
}


@pytest.mark.parametrize("edit", EDITS)
def test_sfizz_plays_the_layered_sfz_as_close_as_the_wav_itself(client, tmp_path, edit):
    """Every edit and every shaping, alone and together (with the mix's own envelope, where the
    export renders a layer's shaping into its sample)."""
    c, wd = client
    r = _recipe(c, wd)
    change = EDITS[edit]
    if callable(change):
        w = np.asarray(c.post("/api/weights", json=r).json()["weights"])
        change = change([int(i) for i in np.argsort(-w)])
    r = {**r, **change}
    wav_bytes = c.post(f"/api/render?export=true&sample_rate={RATE}", json=r).content
    wav, sr = sf.read(io.BytesIO(wav_bytes), dtype="float32")
    assert sr == RATE
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "mix.wav").write_bytes(wav_bytes)
    (tmp_path / "plain" / "plain.sfz").write_text("<region> sample=mix.wav\n")
    plain = play(tmp_path / "plain" / "plain.sfz")
    zipfile.ZipFile(io.BytesIO(c.post(f"/api/export/sfz?sample_rate={RATE}",
                                      json=r).content)).extractall(tmp_path / "layered")
    reference = lsd(plain, wav)  # what sfizz itself changes in one plain sample
    assert reference < 0.5
    layered = closest(tmp_path / "layered" / "layered.sfz", wav, reference + 0.25)
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
    plain, decayed = play(tmp_path / "plain.sfz"), play(tmp_path / "decay.sfz", sounding=0.3)
    win = 240
    frames = np.arange(0, int(0.35 * RATE), win)
    gain = np.array([np.sqrt(np.mean(decayed[i:i + win] ** 2) / np.mean(plain[i:i + win] ** 2))
                     for i in frames])
    slope, _ = np.polyfit((frames + win / 2) / RATE, 20 * np.log10(gain), 1)
    assert slope * 0.5 == pytest.approx(-render.SFZ_DECAY_DB, abs=0.5)
