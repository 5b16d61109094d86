"""Full band: the sources re-read at their recordings' rate, and every render mixed from them."""

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from drumlayer.data import audio, augment, candidates, fullband, kit_formats
from drumlayer.data.dataset import read_manifest
from drumlayer.features import measures
from drumlayer.kit import export
from drumlayer.recipes import analyze as analyze_lib
from drumlayer.recipes.bundle import Bundle
from drumlayer.studio.server import create_app
from drumlayer.workdir import Workdir

from conftest import LOCAL
from kitgen import hit, write_hydrogen_kit


def high_band(x, rate: int, above: float = 11500.0) -> float:
    """The fraction of x's energy above `above` Hz (the model hears up to 11,025 Hz)."""
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64), axis=-1)) ** 2
    f = np.fft.rfftfreq(np.shape(x)[-1], 1.0 / rate)
    return float(spec[..., f > above].sum() / spec.sum())


def row_of(path, source_format="folder"):
    return {"file": str(path), "kit": "k", "instrument": "i", "category": "snare",
            "source_format": source_format, "key": "", "layer": ""}


@pytest.mark.parametrize("rates, want", [((), 22050), ((22050.0, 16000.0), 22050),
                                         ((44100.0, 32000.0), 44100), ((44100.0, 48000.0), 48000),
                                         ((96000.0,), 48000), ((46721.3,), 48000)])
def test_the_render_rate_is_the_standard_rate_that_holds_the_fastest_recording(rates, want):
    assert fullband.render_rate(rates) == want


def test_a_recording_at_full_band_is_the_corpus_clip_plus_the_band_above(tmp_path):
    write_hydrogen_kit(str(tmp_path / "kit"))
    for name, rate in (("sn_soft.wav", 44100), ("sn_hard.flac", 48000)):
        path = tmp_path / "kit" / name
        clip22 = audio.load_clip(path)
        full = fullband.clip(row_of(path), 48000)
        assert full.shape == (48000,) and np.abs(full).max() == pytest.approx(1.0)
        matched, err = fullband.match(full, 48000, clip22)
        assert err < 2e-3, name  # resampled to 22.05 kHz, it is the clip the model hears
        assert high_band(matched, 48000) > 0.02  # and it has the band the model does not hear
        assert high_band(fullband.band_limited(clip22, 48000, 48000), 48000) < 1e-4
        # the recording's own band, and nothing above it
        assert high_band(full, 48000, above=rate / 2 + 200) < 1e-4


def test_an_augmented_variant_is_made_again_at_full_band(tmp_path):
    path = tmp_path / "snare.wav"
    sf.write(path, hit(48000, freq=190, noise=0.6, seed=4), 48000)
    clip22, full = audio.load_clip(path), fullband.clip(row_of(path), 48000)
    errs = []
    for j in range(12):
        v22 = augment.variant(clip22, seed=3, parent=7, j=j)
        v48, err = fullband.match(augment.variant(full, 3, 7, j, rate=48000), 48000, v22)
        errs.append(err)
        assert high_band(v48, 48000) > 1e-3
        # another variant is another sound: the check would notice a wrong one
        _, wrong = fullband.match(augment.variant(full, 3, 7, j + 1, rate=48000), 48000, v22)
        assert wrong > fullband.MATCH_TOLERANCE
    # the error is saturation's (its harmonics alias at 22.05 kHz, not at 48 kHz): < 1.2%
    # without it
    assert max(errs) < fullband.MATCH_TOLERANCE and min(errs) < 0.012


@pytest.mark.parametrize("edit, tolerance", [
    (lambda x, r: augment.pitch(x, 2.0, r), 0.005),
    (lambda x, r: augment.decay(x, 0.1, r), 0.001),
    (lambda x, r: augment.tilt(x, 6.0, r), 0.015),  # the bilinear transform warps near 11 kHz
    (lambda x, r: augment.transient(x, 1.0, rate=r), 0.005),
    (lambda x, r: augment.room(x, np.random.default_rng(1), 0.3, 0.3, r), 0.01),
    (lambda x, r: augment.saturate(x, 3.0), 0.15),  # its harmonics alias at 22.05 kHz only
], ids=["pitch", "decay", "tilt", "transient", "room", "saturate"])
def test_each_edit_at_48khz_is_the_same_edit_at_22khz(tmp_path, edit, tolerance):
    path = tmp_path / "snare.wav"
    sf.write(path, hit(48000, freq=190, noise=0.6, seed=4), 48000)
    clip22, full = audio.load_clip(path), fullband.clip(row_of(path), 48000)
    want = edit(clip22.astype(np.float64), 22050).astype(np.float32)
    got = edit(full.astype(np.float64), 48000).astype(np.float32)
    assert fullband.match(got, 48000, want)[1] < tolerance


def test_a_clip_that_cannot_be_heard_again_is_band_limited_and_counted(tmp_path, caplog):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"hit{i}.wav")
        sf.write(paths[-1], hit(44100, freq=180 + 40 * i, noise=0.6, seed=i), 44100)
    clips22 = np.stack([audio.load_clip(p) for p in paths])
    sf.write(paths[1], hit(44100, freq=900, noise=0.2, seed=99), 44100)  # changed since
    paths[2].unlink()  # deleted since
    rows = [row_of(p) for p in paths[:3]] + [row_of("procedural:0:3", "procedural")]
    with caplog.at_level("INFO", logger="drumlayer.data.fullband"):
        fb = fullband.clips(rows, clips22, [None] * 4, seed=0)
    assert fb.rate == 44100 and fb.audio.shape == (4, 44100)
    assert np.isfinite(fb.errors[0]) and not np.isfinite(fb.errors[1:]).any()
    assert set(fb.band_limited) == {"differs from the corpus clip", "cannot open: No such file "
                                    "or directory", "procedural: synthesised at 22.05 kHz, no "
                                    "recording"}
    assert fb.summary()["full_band"] == 1
    for i in (1, 2, 3):
        np.testing.assert_allclose(fb.audio[i], fullband.band_limited(clips22[i], 44100, 44100))
    assert "1 of 4 clips at 44100 Hz" in caplog.text and "band-limited" in caplog.text


def test_an_sf2_zone_is_found_again_in_its_font(tmp_path):
    from kitgen import write_sf2

    path = str(tmp_path / "font.sf2")
    snare = (hit(44100, freq=200, noise=0.6, seed=1) * 32000).astype(np.int16)
    write_sf2(path, [("Snare 1", snare, 44100, 38)], [(38, 38, 0)], melodic=False)
    c = kit_formats.parse_sf2(path)[0]
    assert c.spans[0].rate == 44100
    row = {"file": path, "kit": c.kit, "instrument": c.instrument, "category": c.category,
           "source_format": "sf2", "key": "" if c.key is None else str(c.key),
           "layer": c.layer}
    clip22 = candidates.load_candidate(c)
    _, err = fullband.match(fullband.clip(row, 44100), 44100, clip22)
    assert err < 2e-3
    with pytest.raises(audio.AudioError, match="no longer has this zone"):
        fullband.candidate({**row, "instrument": "gone"})


@pytest.fixture(scope="module")
def snare(kit_run):
    """The kit job's snare model, whose corpus files are 44.1 kHz."""
    return Workdir(kit_run[1].category("snare").root)


def test_the_bundle_keeps_every_source_at_full_band(snare):
    b = Bundle.load(snare.root)
    meta = json.load(open(snare.bundle.meta))
    assert b.full_rate == 44100 and b.full_sources.shape == (b.k, 44100)
    assert meta["full_band"] == {"rate": 44100, "full_band": b.k, "band_limited": {}}
    # the sources the model was trained on, plus their top band
    down = audio.resample(np.asarray(b.full_sources), 44100, 22050)[:, :22050]
    err = np.linalg.norm(down - b.sources, axis=1) / np.linalg.norm(b.sources, axis=1)
    assert min(high_band(x, 44100) for x in b.full_sources) > 1e-3
    # sources that are augmented variants are made again by the same edits (saturation
    # aliases differently at 22.05 kHz): looser
    variant = np.array(json.load(open(snare.selection.sources))["ids"]) >= len(
        read_manifest(snare.corpus))
    assert variant.any() and not variant.all()
    assert err[~variant].max() < 1e-2 and err[variant].max() < fullband.MATCH_TOLERANCE


def test_every_render_a_person_hears_is_full_band(snare, kit_run, tmp_path):
    b = Bundle.load(snare.root)
    # the evaluation's WAVs
    for name in ("recon0_refined.wav", "interp0.wav"):
        x, rate = sf.read(str(Workdir(snare.root).eval.audio) + "/" + name)
        assert rate == 44100 and high_band(x, rate) > 1e-3, name
    x, rate = sf.read(str(Workdir(snare.root).eval.audio) + "/recon0_original.wav")
    assert rate == 44100 and high_band(x, rate) > 1e-3  # the test clip's recording
    # the kit's export
    pads = export.pads(kit_run[1].root, variations=2)
    assert pads["snare"]["sample_rate"] == 44100
    paths = export.write(pads, str(tmp_path / "kit"))
    assert paths["sfz"].startswith(str(tmp_path / "kit"))
    x, rate = sf.read(tmp_path / "kit" / "samples" / "snare_v4_1.wav")  # the top layer
    assert rate == 48000 and high_band(x, rate) > 1e-3
    # the analyze command
    folder = tmp_path / "mine"
    folder.mkdir()
    sf.write(folder / "a.wav", hit(44100, freq=230, noise=0.5, seed=8), 44100)
    assert analyze_lib.main([f"--workdir={snare.root}", f"--out={tmp_path / 'out'}",
                         str(folder)]) == 0
    x, rate = sf.read(tmp_path / "out" / "a.wav")
    assert rate == 44100 and x.shape == (44100,) and high_band(x, rate) > 1e-3
    assert b.full_rate == 44100


def test_the_studio_plays_and_exports_full_band_and_matches_at_the_models_rate(snare, tmp_path):
    c = TestClient(create_app(snare.root), base_url=LOCAL)
    m = c.get("/api/model").json()
    assert (m["sample_rate"], m["samples"]) == (44100, 44100)
    src = np.frombuffer(c.get("/api/sources").content, "<f4").reshape(m["k"], 44100)
    np.testing.assert_array_equal(src, Bundle.load(snare.root).full_sources)
    buf = io.BytesIO()
    sf.write(buf, hit(48000, freq=220, noise=0.6, seed=5), 48000, format="WAV")
    r = c.post("/api/encode", files={"file": ("up.wav", buf.getvalue(), "audio/wav")}).json()
    x, rate = sf.read(io.BytesIO(c.post("/api/render", json=r).content))
    assert rate == 44100 and high_band(x, rate) > 1e-3
    orig, rate = sf.read(io.BytesIO(c.get(f"/api/original/{r['original']}").content))
    assert rate == 44100 and high_band(orig, rate) > 1e-3  # the upload as it was, not 22.05 kHz
    match = c.post("/api/match", json=r).json()
    assert 0 < match["log_spectral_distance_db"] < 30 and max(match["hz"]) < 11025
    for path in ("/api/export/stems?sample_rate=48000", "/api/export/sfz?sample_rate=48000"):
        z = zipfile.ZipFile(io.BytesIO(c.post(path, json=r).content))
        wavs = [n for n in z.namelist() if n.endswith(".wav")]
        stems = [sf.read(io.BytesIO(z.read(n))) for n in wavs]
        assert {rate for _, rate in stems} == {48000}
        assert high_band(sum(x for x, _ in stems), 48000) > 1e-3, path
    clip = c.get("/api/corpus/0/recipe?refine=false").json()
    orig, rate = sf.read(io.BytesIO(c.get(f"/api/original/{clip['original']}").content))
    assert rate == 44100 and high_band(orig, rate) > 1e-3


def test_match_delays_a_layer_at_the_rate_of_the_sources_it_compares(snare, tmp_path):
    """/api/match measures the 22.05 kHz mix of a full-band (44.1 kHz) studio: a 50 ms offset
    is 1,102 samples there, not the 2,205 of the full band. The mix is built here by hand."""
    c = TestClient(create_app(snare.root), base_url=LOCAL)
    b = Bundle.load(snare.root)
    path = tmp_path / "up.wav"
    sf.write(path, hit(48000, freq=220, noise=0.6, seed=5), 48000)
    r = c.post("/api/encode", files={"file": ("up.wav", path.read_bytes(), "audio/wav")}).json()
    w = np.asarray(c.post("/api/weights", json=r).json()["weights"], np.float64)
    j = int(np.argmax(w))
    got = c.post("/api/match", json={**r, "offsets_ms": {str(j): 50.0}}).json()
    n = round(0.050 * 22050)
    src = np.asarray(b.sources, np.float64)
    mix = (w @ src - w[j] * src[j] + w[j] * np.concatenate([np.zeros(n), src[j][:-n]])) * 10 ** (
        r["gain_db"] / 20)  # the default envelope holds the whole second
    want = measures.batch_distances(mix[None].astype(np.float32),
                                    audio.load_clip(path)[None])
    for k, v in want.items():
        assert got[k] == pytest.approx(float(v[0]), rel=1e-3, abs=1e-3), k

