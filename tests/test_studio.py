"""The studio's HTTP API on a smoke run: encode, render, edits, exports, bad input, fuzzing."""

import io
import json
import os
import time
import zipfile

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from drumlayer.data import audio, kit_formats, npy_rows
from drumlayer.evaluation import evaluate as evaluate_lib
from drumlayer.recipes import render as render_lib
from drumlayer.recipes.bundle import Bundle
from drumlayer.recipes.recipe import LayerShape
from drumlayer.studio.server import create_app

from conftest import LOCAL, serve, server_errors


@pytest.fixture(scope="module")
def studio(smoke_run):
    wd = smoke_run
    client = TestClient(create_app(str(wd), max_upload_mb=1.0), base_url=LOCAL)
    return wd, Bundle.load(str(wd)), client


def wav_file(x, rate=22050, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def wav_clip(x, tmp_dir):
    """x as the server reads it from a 16-bit WAV upload."""
    path = os.path.join(tmp_dir, "upload.wav")
    with open(path, "wb") as f:
        f.write(wav_file(x))
    return audio.load_clip(path)


def read_wav(data):
    x, sr = sf.read(io.BytesIO(data), dtype="float32")
    return x, sr, sf.info(io.BytesIO(data)).subtype


@pytest.fixture(scope="module")
def recipe(studio):
    wd, _, c = studio
    clip = npy_rows.read_rows(str(wd / "corpus" / "clips.npy"), 2, 3)[0]
    r = c.post("/api/encode?refine=false",
               files={"file": ("my snare.wav", wav_file(clip), "audio/wav")})
    assert r.status_code == 200, r.text
    return r.json(), clip


def test_encode_refines_by_default_and_the_residual_is_mixed(studio, recipe, tmp_path):
    from drumlayer.recipes import refine

    _, b, c = studio
    plain, clip = recipe
    r = c.post("/api/encode", files={"file": ("my snare.wav", wav_file(clip), "audio/wav")})
    assert r.status_code == 200, r.text
    r = r.json()
    assert "residual" not in plain or plain["residual"] is None
    np.testing.assert_allclose(r["latent"], plain["latent"], atol=1e-5)  # z stays the encoder's
    an = refine.Analyzer.from_bundle(b)  # the default: each layer shaped where that pays
    want = an(wav_clip(clip, tmp_path)[None])
    np.testing.assert_allclose(r["residual"], want.residual[0], atol=1e-5)
    np.testing.assert_allclose(r["gain_db"], 20 * np.log10(want.gain[0]), atol=1e-3)
    np.testing.assert_allclose(r["weights"], want.weights[0], atol=1e-5)
    fields = refine.recipe_fields(want, 0, an.variants)
    assert {int(i): LayerShape(**v) for i, v in r["shaping"].items()} == fields["shaping"]
    x, _, _ = read_wav(c.post("/api/render", json=r).content)
    np.testing.assert_allclose(x, evaluate_lib.heard(want.weights[0] * want.gain[0], fields,
                                                     b.sources, 22050), atol=1e-5)
    # the refined recipe is closer to the sample than the encoder's
    m_ref = c.post("/api/match", json=r).json()
    m_enc = c.post("/api/match", json=plain).json()
    assert m_ref["log_spectral_distance_db"] < m_enc["log_spectral_distance_db"]
    assert len(m_ref["hz"]) == len(m_ref["original_db"]) == len(m_ref["mix_db"]) == 256
    assert m_ref["original_db"] == m_enc["original_db"]
    # a residual of the wrong length, and a recipe without its original, are refused
    bad = c.post("/api/weights", json={**r, "residual": r["residual"][:-1]})
    assert bad.status_code == 422 and "residual has" in bad.json()["detail"]
    gone = c.post("/api/match", json={**r, "original": "feedbeef"})
    assert gone.status_code == 404 and "encode the sample again" in gone.json()["detail"]


def test_the_spectrogram_fit_refines_uploads_as_analyze_does(studio, recipe, tmp_path):
    from drumlayer.recipes import refine

    wd, b, _ = studio
    _, clip = recipe
    c = TestClient(create_app(str(wd), fit="spectrogram"), base_url=LOCAL)
    assert c.get("/api/model").json()["fit"] == "spectrogram"
    r = c.post("/api/encode", files={"file": ("my snare.wav", wav_file(clip), "audio/wav")})
    assert r.status_code == 200, r.text
    x = wav_clip(clip, tmp_path)[None]
    want = refine.Analyzer.from_bundle(b, refine.AnalyzeConfig(**refine.FITS["spectrogram"]))(x)
    np.testing.assert_allclose(r.json()["weights"], want.weights[0], atol=1e-5)
    timbre = refine.Analyzer.from_bundle(b)(x)  # the default fits this clip otherwise
    assert np.abs(want.weights[0] - timbre.weights[0]).max() > 1e-3
    with pytest.raises(ValueError, match="fit must be one of"):
        create_app(str(wd), fit="loudest")


def test_the_command_line_passes_the_fit_on(smoke_run):
    proc, url = serve(smoke_run, "--fit=spectrogram", "--warm_up=false")
    try:
        assert httpx.get(f"{url}api/model", timeout=60).json()["fit"] == "spectrogram"
    finally:
        proc.terminate()
        proc.wait(30)


def test_model_and_sources(studio):
    _, b, c = studio
    m = c.get("/api/model").json()
    assert (m["k"], m["latent"], m["samples"]) == (b.k, b.latent, 22050)
    assert m["fit"] == "timbre"
    assert np.asarray(m["pca"]["components"]).shape == (4, b.latent)
    src = np.frombuffer(c.get("/api/sources").content, "<f4").reshape(b.k, -1)
    np.testing.assert_array_equal(src, b.sources)
    assert "/api/encode" in c.get("/openapi.json").json()["paths"]


def test_encode_gives_the_models_latent_and_weights(studio, recipe):
    _, b, _ = studio
    r, clip = recipe
    z = np.asarray(b.encode(b.features(clip[None]))[0])[0]
    np.testing.assert_allclose(r["latent"], z, atol=2e-4)  # 16-bit upload: tiny difference
    np.testing.assert_allclose(r["weights"], np.asarray(b.decode(np.float32(r["latent"])[None]))[0],
                               atol=1e-5)  # the numpy decoder equals the flax one
    p = b.pca
    np.testing.assert_allclose(r["pca"], (np.float32(r["latent"]) - p["center"]) @
                               p["components"].T, atol=1e-4)
    assert r["name"] == "upload: my snare.wav"


def test_render_applies_every_edit(studio, recipe):
    _, b, c = studio
    r, _ = recipe
    w0 = np.asarray(b.decode(np.float32(r["latent"])[None]))[0]
    x, sr, subtype = read_wav(c.post("/api/render", json=r).content)
    assert sr == 22050 and subtype == "FLOAT"
    np.testing.assert_allclose(x, w0 @ b.sources, atol=1e-6)
    edits = {**r, "locks": {"1": 0.5}, "muted": [2], "prune": 0.02, "offsets_ms": {"1": 10.0},
             "envelope": {"attack": 0.01, "hold": 0.1, "decay": 0.3}, "gain_db": -6.0}
    x, _, _ = read_wav(c.post("/api/render", json=edits).content)
    w = w0.copy()
    w[1] = 0.5
    w[w < 0.02] = 0
    w[2] = 0
    t = np.arange(22050) / 22050
    env = np.minimum(t / 0.01, 1) * 10 ** (-3 * np.maximum(t - 0.11, 0) / 0.3)
    mix = sum(w[i] * b.sources[i] for i in range(b.k) if i != 1)
    mix[220:] += w[1] * b.sources[1][:-220]  # 10 ms = 220.5 samples -> 220
    np.testing.assert_allclose(x, mix * env * 10 ** (-6 / 20), atol=1e-5)
    solo = {**r, "solo": [3]}
    x, _, _ = read_wav(c.post("/api/render", json=solo).content)
    np.testing.assert_allclose(x, w0[3] * b.sources[3], atol=1e-6)


def test_a_float_wav_is_the_same_bytes_whenever_it_is_written():
    """libsndfile's PEAK chunk holds the time of writing: left out, a render is reproducible."""
    from scipy.io import wavfile

    x = np.random.default_rng(0).normal(0, 0.1, (1001,)).astype(np.float32)
    first = render_lib.wav_bytes(x, 48000, "FLOAT")
    time.sleep(1.05)  # the next second: a timestamp would differ
    assert render_lib.wav_bytes(x, 48000, "FLOAT") == first
    chunks, pos = [], 12
    while pos < len(first):
        size = int.from_bytes(first[pos + 4:pos + 8], "little")
        chunks.append(first[pos:pos + 4])
        pos += 8 + size + size % 2
    assert first[:4] == b"RIFF" and int.from_bytes(first[4:8], "little") == len(first) - 8
    assert chunks == [b"fmt ", b"fact", b"data"] and pos == len(first)
    rate, y = wavfile.read(io.BytesIO(first))
    assert rate == 48000 and y.dtype == np.float32 and np.array_equal(y, x)
    pcm = render_lib.wav_bytes(x, 44100, "PCM_24")  # no PEAK chunk to leave out: as written
    buf = io.BytesIO()
    sf.write(buf, x, 44100, subtype="PCM_24", format="WAV")
    assert pcm == buf.getvalue()


def test_export_wav_is_24_bit_with_a_peak_under_minus_1_dbfs(studio, recipe):
    _, _, c = studio
    r, _ = recipe
    render, _, _ = read_wav(c.post("/api/render", json=r).content)  # 22.05 kHz float
    for rate in (44100, 48000):
        resp = c.post(f"/api/render?export=true&sample_rate={rate}", json=r)
        x, sr, subtype = read_wav(resp.content)
        assert (sr, subtype, len(x)) == (rate, "PCM_24", rate)
        assert -1.1 < 20 * np.log10(np.abs(x).max()) < -1.0
        assert "attachment" in resp.headers["content-disposition"]
        # the export is the render, resampled and scaled: nothing else
        want = audio.resample(render, 22050, rate)
        want = want * (np.abs(x).max() / np.abs(want).max())
        np.testing.assert_allclose(x, want, atol=2e-4)


def test_stems_sum_to_the_export_and_the_recipe_reloads_exactly(studio, recipe):
    _, _, c = studio
    r, _ = recipe
    r = {**r, "offsets_ms": {"0": 5.0}, "gain_db": -3.0}
    z = zipfile.ZipFile(io.BytesIO(c.post("/api/export/stems?sample_rate=48000", json=r).content))
    stems = [read_wav(z.read(n))[0] for n in z.namelist() if n.startswith("stems/")]
    weights = c.post("/api/weights", json=r).json()["weights"]
    assert len(stems) == np.count_nonzero(weights)
    mix, _, _ = read_wav(c.post("/api/render?export=true&sample_rate=48000", json=r).content)
    np.testing.assert_allclose(np.sum(stems, axis=0), mix, atol=len(stems) * 2e-7 + 1e-6)
    again = json.loads(z.read("recipe.json"))
    a = c.post("/api/render", json=r).content
    assert c.post("/api/render", json=again).content == a


def test_sfz_regions_are_the_layers(studio, recipe, tmp_path):
    _, b, c = studio
    r, _ = recipe
    r = {**r, "prune": 0.05, "offsets_ms": {}, "envelope": {"attack": 0.002, "hold": 0.25,
                                                             "decay": 0.6}}
    w = np.asarray(c.post("/api/weights", json=r).json()["weights"])
    layers = np.flatnonzero(w)
    r["offsets_ms"] = {str(int(layers[0])): 12.5}
    data = c.post("/api/export/sfz?sample_rate=44100", json=r).content
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    text = (tmp_path / "layered.sfz").read_text()
    regions = kit_formats.parse_sfz_text(text)
    assert len(regions) == len(layers)
    # every region at its weight plus one master level (tests/test_sfizz.py plays them)
    master = float(regions[0]["volume"]) - 20 * np.log10(w[layers[0]])
    for reg, i in zip(regions, layers, strict=True):
        assert float(reg["volume"]) == pytest.approx(20 * np.log10(w[i]) + master, abs=2e-3)
        assert float(reg["delay"]) == pytest.approx(0.0125 if i == layers[0] else 0.0, abs=1e-4)
        x, sr, subtype = read_wav((tmp_path / "samples" / reg["sample"]).read_bytes())
        assert (sr, subtype) == (44100, "PCM_24") and len(x) == 44100
        # the region's sample is source i itself (resampled to 44.1 kHz), not another layer
        want = audio.resample(b.sources[i], 22050, 44100)
        assert np.corrcoef(x, want)[0, 1] > 0.999
        # the delayed layer holds 12.5 ms less, so that its decay starts with the mix's
        assert (reg["ampeg_attack"], reg["ampeg_hold"], reg["ampeg_decay"]) == (
            "0.0020", "0.2375" if i == layers[0] else "0.2500",
            f"{0.6 * render_lib.SFZ_DECAY_DB / 60:.4f}")


def test_corpus_source_and_original(studio):
    _, b, c = studio
    clips = c.get("/api/corpus").json()
    assert len(clips) == 48 and {"id", "name", "split"} <= set(clips[0])
    r = c.get("/api/corpus/5/recipe").json()
    x, _, _ = read_wav(c.get(f"/api/original/{r['original']}").content)
    np.testing.assert_allclose(x, npy_rows.read_rows(str(studio[0] / "corpus" / "clips.npy"), 5,
                                                  6)[0], atol=1e-7)
    s = c.get("/api/sources/0/recipe").json()
    assert s["name"].startswith("source: ")


@pytest.mark.parametrize(("upload", "status", "words"), [
    (("notes.txt", b"not audio at all"), 422, "notes.txt: unreadable"),
    (("empty.wav", b""), 422, "empty.wav: empty"),
    (("silent.wav", wav_file(np.zeros(22050, np.float32))), 422, "silent"),
    (("big.wav", wav_file(np.random.default_rng(0).uniform(-1, 1, 400000).astype(np.float32),
                          subtype="FLOAT")), 413, "limit of 1 MB"),
])
def test_bad_uploads_get_a_4xx_that_says_why(studio, upload, status, words):
    r = studio[2].post("/api/encode", files={"file": (*upload, "audio/wav")})
    assert r.status_code == status and words in r.json()["detail"], r.text


def test_bad_recipes_and_ids(studio, recipe):
    _, b, c = studio
    r, _ = recipe
    assert c.post("/api/render", json={**r, "latent": [0.0]}).status_code == 422
    bad = c.post("/api/render", json={**r, "muted": [b.k]})
    assert bad.status_code == 422 and "does not exist" in bad.json()["detail"]
    nan = json.dumps({**r, "gain_db": float("nan")})
    assert c.post("/api/render", content=nan,
                  headers={"content-type": "application/json"}).status_code == 422
    assert c.post("/api/render?sample_rate=12345", json=r).status_code == 422
    all_muted = {**r, "muted": list(range(b.k))}
    for path in ("/api/render?export=true", "/api/export/stems", "/api/export/sfz"):
        resp = c.post(path, json=all_muted)
        assert resp.status_code == 422 and "silent" in resp.json()["detail"]
    assert c.post("/api/render", json=all_muted).status_code == 200  # a preview may be silent
    assert c.get("/api/corpus/999/recipe").status_code == 404
    assert c.get("/api/original/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert c.get("/static/..%2F..%2Fserver.py").status_code == 404


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NaN or overflow inside counts too
def test_fuzzing_the_openapi_schema_finds_no_server_error(studio):
    # schemathesis calls the app as http://testserver: a name this one answers to
    failures = server_errors(create_app(str(studio[0]), max_upload_mb=1.0,
                                        hosts=("testserver",)))
    assert not failures, failures[:5]


def test_engine_decoders_match_the_model_for_each_normaliser():
    from drumlayer.model import vae as model_lib

    rng = np.random.default_rng(0)
    params = {"hidden": {"kernel": rng.normal(size=(4, 16)).astype(np.float32),
                         "bias": rng.normal(size=16).astype(np.float32)},
              "out": {"kernel": rng.normal(size=(16, 10)).astype(np.float32),
                      "bias": rng.normal(size=10).astype(np.float32)}}
    z = rng.normal(size=(5, 4)).astype(np.float32)
    for kind in model_lib.NORMALISERS:
        m = model_lib.Decoder(16, 10)
        want = model_lib.normalise(m.apply({"params": params}, z), kind)
        np.testing.assert_allclose(render_lib.decode(params, z, kind), want, atol=1e-6)


def test_studio_refuses_a_workdir_without_a_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the main job"):
        create_app(str(tmp_path))
    assert os.path.isdir(tmp_path)


def test_shape_refines_the_original_with_each_layers_shaping(studio, recipe, tmp_path):
    """POST /api/shape: the recipe of the sound the recipe was encoded from, refined with
    mode 'shape' (the same as the refinement alone gives, its start delays included), its
    edits afresh; a recipe whose original is unknown is a 404."""
    from drumlayer.recipes import refine

    _, b, c = studio
    plain, clip = recipe
    edited = {**plain, "muted": [0], "offsets_ms": {"1": 5.0}}
    r = c.post("/api/shape", json=edited)
    assert r.status_code == 200, r.text
    r = r.json()
    an = refine.Analyzer.from_bundle(b, refine.AnalyzeConfig(mode="shape"))
    want = refine.recipe_fields(an(wav_clip(clip, tmp_path)[None]), 0, an.variants)
    assert r["muted"] == [] and r["version"] == 2
    assert r["offsets_ms"] == pytest.approx({str(i): ms for i, ms in want["offsets_ms"].items()})
    assert {int(i) for i in r["shaping"]} == set(want["shaping"])
    for i, s in want["shaping"].items():
        assert r["shaping"][str(i)] == s.model_dump()
    np.testing.assert_allclose(r["residual"], want["residual"], atol=1e-5)
    assert c.post("/api/render", json=r).status_code == 200
    assert c.post("/api/shape", json={**plain, "original": "0" * 16}).status_code == 404


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_fuzzing_valid_shaped_recipes_finds_no_server_error(studio):
    """The schema fuzzer rarely makes a latent of the right length; this one always does, and
    pushes every edit to its edges (all layers locked at 0, muted, soloed, huge z...)."""
    from hypothesis import strategies as st

    _, b, c = studio
    idx = st.integers(-2, b.k + 1)
    recipes = st.fixed_dictionaries({
        "latent": st.lists(st.floats(-1e4, 1e4, width=32), min_size=b.latent,
                           max_size=b.latent),
        "locks": st.dictionaries(idx.map(str), st.floats(-0.5, 1.5), max_size=4),
        "muted": st.lists(idx, max_size=4), "solo": st.lists(idx, max_size=3),
        "prune": st.floats(-0.5, 1.5), "offsets_ms": st.dictionaries(idx.map(str),
                                                                       st.floats(-10, 600)),
        "envelope": st.fixed_dictionaries({"attack": st.floats(0, 1), "hold": st.floats(0, 1),
                                           "decay": st.floats(0.005, 10)}),
        "gain_db": st.floats(-80, 40),
        "shaping": st.dictionaries(idx.map(str), st.fixed_dictionaries({
            "pitch_cents": st.floats(-1300, 1300), "filter": st.sampled_from([None, "lpf", "hpf"]),
            "cutoff_hz": st.floats(0, 25000), "decay": st.one_of(st.none(), st.floats(0, 11))}),
            max_size=3)})
    paths = st.sampled_from(["/api/render", "/api/render?export=true&sample_rate=44100",
                             "/api/export/stems?sample_rate=48000",
                             "/api/export/sfz?sample_rate=44100", "/api/weights",
                             "/api/voices?layers=3&round_robin=2"])

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(r=recipes, path=paths)
    def run(r, path):
        resp = c.post(path, json=r)
        assert resp.status_code < 500, (path, r, resp.text[:300])
        if resp.status_code == 200 and "export=true" in path:
            x, _, _ = read_wav(resp.content)
            assert np.isfinite(x).all() and np.abs(x).max() < 10 ** (-1 / 20)
        if resp.status_code == 200 and "voices" in path:
            x = np.frombuffer(resp.content, "<f4")
            assert np.isfinite(x).all() and np.abs(x).max() < 10 ** (-1 / 20)

    run()


def test_envelope_by_hand():
    e = render_lib.envelope(22050, 22050, attack=0.1, hold=0.2, decay=0.5)
    t = np.arange(22050) / 22050
    want = np.minimum(t / 0.1, 1) * 10 ** (-3 * np.maximum(t - 0.3, 0) / 0.5)
    np.testing.assert_allclose(e, want, rtol=1e-6, atol=1e-7)
    assert e[int(0.8 * 22050)] == pytest.approx(1e-3, rel=1e-3)  # -60 dB after the decay
    tiny = render_lib.envelope(100, 22050, attack=1e-300, hold=0.0, decay=1.0)  # < one sample
    assert np.isfinite(tiny).all() and tiny[0] == 1.0



def test_warm_up_compiles_encode_and_refinement_before_the_first_upload(smoke_run, caplog,
                                                                         tmp_path, monkeypatch):
    """The studio as `python -m drumlayer.studio` starts it: the encoder, then the weights
    refinement, then the default one (its bank of shaped sources too) are compiled on a thread
    from the start; an upload meanwhile waits for the encoder and is answered by the best that
    is ready (the response says which), /api/shape then refines it as the default does, and
    once all are ready an upload gets the same recipe as a studio that compiled at its first
    upload. Each refinement's compilation is held until the test lets it go."""
    import logging
    import threading

    from drumlayer.recipes import refine
    from drumlayer.studio import warm as warm_lib

    caplog.set_level(logging.INFO, logger="drumlayer.studio")
    gates, compile_for_one = [threading.Event(), threading.Event()], refine.compile_for_one
    held = iter(gates)

    def gated(bundle, analyzer):
        assert next(held).wait(600)
        compile_for_one(bundle, analyzer)

    monkeypatch.setattr(warm_lib.refine_lib, "compile_for_one", gated)
    cold = TestClient(create_app(str(smoke_run)), base_url=LOCAL)
    assert cold.app.state.studio._analyzer is None  # nothing compiled ahead unless asked
    app = create_app(str(smoke_run), warm_up=True)
    st = app.state.studio
    warm = TestClient(app, base_url=LOCAL)
    clip = np.asarray(st.bundle.sources[3])
    files = {"file": ("hit.wav", wav_file(clip), "audio/wav")}
    x = wav_clip(clip, tmp_path)[None]
    # sent at once: waits for the encoder only, and gets its recipe as it is
    got = warm.post("/api/encode", files=files)
    assert got.status_code == 200 and got.headers["X-Drumlayer-Refinement"] == "none"
    assert got.json()["residual"] is None and not st.quick_ready.is_set()
    np.testing.assert_allclose(got.json()["latent"], st.bundle.encode(
        np.asarray(st.bundle.features(x)))[0][0], atol=1e-5)
    gates[0].set()
    assert st.quick_ready.wait(600) and not st.warm.is_set()
    weights = warm.post("/api/encode", files=files)  # the weights refinement's
    assert weights.headers["X-Drumlayer-Refinement"] == "weights"
    want = refine.Analyzer.from_bundle(st.bundle, refine.AnalyzeConfig(mode="weights"))(x)
    np.testing.assert_allclose(weights.json()["weights"], want.weights[0], atol=1e-5)
    gates[1].set()
    # what the page does next when the first answer was not the default's
    again = warm.post("/api/shape", json=got.json())
    assert again.status_code == 200 and again.headers["X-Drumlayer-Refinement"] == "shape"
    assert st.warm.wait(600) and st._analyzer is not None
    for start in ("studio: encode compiled in ",
                  "studio: encode and the weights refinement compiled in ",
                  "studio: encode and refinement compiled in "):
        assert any(r.getMessage().startswith(start) for r in caplog.records), start
    later, want = warm.post("/api/encode", files=files), cold.post("/api/encode", files=files)
    assert later.status_code == want.status_code == 200
    assert later.headers["X-Drumlayer-Refinement"] == want.headers[
        "X-Drumlayer-Refinement"] == "shape"
    np.testing.assert_allclose(later.json()["weights"], want.json()["weights"], atol=1e-6)
    np.testing.assert_allclose(again.json()["weights"], want.json()["weights"], atol=1e-6)
