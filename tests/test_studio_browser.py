"""The studio in headless Chromium (Debian's, through Playwright), served by the real CLI."""

import base64
import contextlib
import io
import json
import os
import shutil
import zipfile

import httpx
import numpy as np
import pytest
import soundfile as sf

from drumlayer.data import npy_rows

from conftest import serve

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM) and os.environ.get("CI") == "true":
    # CI must not go green by skipping the page: .ci/run installs Chromium
    raise RuntimeError(f"CI: {CHROMIUM} is missing, so the studio's browser tests cannot run "
                       "(apt-get install chromium)")
pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                 reason=f"{CHROMIUM} missing: apt-get install chromium"),
              pytest.mark.xdist_group("browser")]  # one Chromium, one studio: one worker


@pytest.fixture(scope="module")
def server(smoke_run):
    proc, url = serve(smoke_run)
    yield url, smoke_run
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (Playwright's sync API allows one running instance)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(server, browser):
    pg = browser.new_page(accept_downloads=True, viewport={"width": 1300, "height": 1000})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server[0])
    pg.wait_for_selector("body[data-ready='1']", timeout=30000)
    yield pg
    assert not errors, errors
    pg.close()


def wait_ready(pg, what):
    """Until the status line ends with `what` (a recipe answered while the studio starts says
    "ready (...; refining ...)" until the page has refined it again)."""
    pg.wait_for_function(f"document.getElementById('status').textContent.endsWith('{what}')",
                         timeout=120000)


def weights(pg):
    return np.array(pg.evaluate("Array.from(studio.S.weights)"))


def drag_slider(pg, j, steps=12):
    pg.locator("input.pc").nth(j).scroll_into_view_if_needed()  # a click may have scrolled
    box = pg.locator("input.pc").nth(j).bounding_box()
    y = box["y"] + box["height"] / 2
    pg.mouse.move(box["x"] + box["width"] / 2, y)
    pg.mouse.down()
    for s in range(steps):
        pg.mouse.move(box["x"] + box["width"] * (0.5 + 0.4 * (s + 1) / steps), y)
    pg.mouse.up()


def python_mix(server, pg):
    r = httpx.post(server[0] + "api/render", json=pg.evaluate("studio.recipe()"), timeout=30)
    x, _ = sf.read(io.BytesIO(r.content), dtype="float32")
    return x


def test_upload_slider_lock_and_export(server, page, tmp_path):
    pg, wd = page, server[1]
    clip = npy_rows.read_rows(str(wd / "corpus" / "clips.npy"), 4, 5)[0]
    path = tmp_path / "my_snare.wav"
    sf.write(path, clip, 44100)
    pg.set_input_files("#file", str(path))
    wait_ready(pg, "encoding and refining my_snare.wav: ready")
    assert "upload: my_snare.wav" in pg.text_content("#sound-name")
    before = weights(pg)
    assert before.sum() == pytest.approx(1.0, abs=1e-5)
    # refined: the residual is mixed, and the match panel says how close the sound is
    assert pg.evaluate("studio.S.residual !== null") and pg.text_content("#refined-which") == "on"
    pg.wait_for_function("!document.getElementById('match').hidden", timeout=10000)
    assert "LSD" in pg.text_content("#match-text")
    pg.click("#refined")  # the encoder's recipe: its decoded weights, 0 dB
    assert pg.evaluate("studio.S.residual") is None and pg.evaluate("studio.S.gain") == 0
    np.testing.assert_allclose(weights(pg), pg.evaluate("Array.from(studio.S.decoded)"))
    np.testing.assert_allclose(pg.evaluate("Array.from(studio.S.mix)"), python_mix(server, pg),
                               atol=1e-4)
    pg.click("#refined")  # and back
    np.testing.assert_array_equal(weights(pg), before)
    pg.click("#play-original")  # fetched from the server, decoded and played by the page
    pg.wait_for_function("studio.S.played >= 1", timeout=10000)
    assert "error" not in (pg.get_attribute("#status", "class") or "")

    # on the refined recipe a slider moves the decoded part; the residual stays (clipped to
    # [0, 1]): the page's weights and mix are the server's for the same recipe
    drag_slider(pg, 0)
    r = httpx.post(server[0] + "api/weights", json=pg.evaluate("studio.recipe()"), timeout=30)
    np.testing.assert_allclose(weights(pg), r.json()["weights"], atol=1e-6)
    np.testing.assert_allclose(pg.evaluate("Array.from(studio.S.mix)"),
                               python_mix(server, pg), atol=1e-4)

    pg.click("#refined")  # the encoder's recipe: u_1 moves its weights, on screen too
    before = weights(pg)
    drag_slider(pg, 1)
    after = weights(pg)
    assert np.abs(after - before).max() > 1e-4
    top = int(after.argmax())
    cell = pg.locator(f"#layer-table tr[data-i='{top}'] td.w").text_content()
    assert float(cell) == pytest.approx(after[top], abs=1e-3)
    assert len(pg.evaluate("studio.S.latencies")) >= 10
    np.testing.assert_allclose(pg.evaluate("Array.from(studio.S.mix)"),
                               python_mix(server, pg), atol=1e-4)

    pg.click(f"#layer-table tr[data-i='{top}']")  # lock the strongest layer
    pg.click("#layer-lock")
    locked = weights(pg)[top]
    drag_slider(pg, 2)
    moved = weights(pg)
    assert moved[top] == pytest.approx(locked, abs=1e-7)  # it stays
    assert np.abs(np.delete(moved, top) - np.delete(after, top)).max() > 1e-4  # others move
    assert pg.evaluate("studio.recipe().locks")[str(top)] == pytest.approx(locked)

    pg.select_option("#rate", "48000")
    with pg.expect_download() as dl:
        pg.click("#export-wav")
    out = tmp_path / "export.wav"
    dl.value.save_as(out)
    info = sf.info(out)
    assert (info.samplerate, info.subtype, info.frames) == (48000, "PCM_24", 48000)
    x, _ = sf.read(out)
    assert 20 * np.log10(np.abs(x).max()) < -1.0

    with pg.expect_download() as dl:
        pg.click("#export-stems")
    dl.value.save_as(tmp_path / "stems.zip")
    names = zipfile.ZipFile(tmp_path / "stems.zip").namelist()
    assert "recipe.json" in names and sum(n.startswith("stems/") for n in names) >= 1


def test_mute_solo_prune_envelope_undo(server, page):
    pg = page
    pg.select_option("#corpus", index=2)
    wait_ready(pg, "encoding and refining the clip: ready")
    w = weights(pg)
    top = int(w.argmax())
    pg.click(f"#layer-table tr[data-i='{top}']")
    pg.click("#layer-mute")
    assert weights(pg)[top] == 0
    pg.click("#undo")
    assert weights(pg)[top] == pytest.approx(w[top])
    pg.click("#redo")
    assert weights(pg)[top] == 0
    pg.click("#undo")
    pg.click("#layer-solo")
    solo = weights(pg)
    assert np.count_nonzero(solo) == 1 and solo[top] == pytest.approx(w[top])
    pg.click("#layer-solo")
    pg.fill("#layer-weight", "0.25")  # set by hand = locked at that weight
    pg.press("#layer-weight", "Enter")
    assert weights(pg)[top] == pytest.approx(0.25)
    pg.fill("#layer-offset", "12")
    pg.press("#layer-offset", "Enter")
    # a hold shorter than the clip, so that the decay sounds (the page's envelope against the
    # server's render below)
    for sel, value in (("#prune", "0.05"), ("#attack", "0.02"), ("#hold", "0.1"),
                       ("#decay", "0.4"), ("#gain", "-6")):
        pg.fill(sel, value)
    r = pg.evaluate("studio.recipe()")
    assert r["prune"] == 0.05 and r["envelope"]["attack"] == 0.02 and r["gain_db"] == -6
    assert r["envelope"]["hold"] == 0.1 and r["envelope"]["decay"] == 0.4
    assert r["offsets_ms"][str(top)] == 12
    assert all(v == 0 or v >= 0.05 for v in weights(pg))
    np.testing.assert_allclose(pg.evaluate("Array.from(studio.S.mix)"),
                               python_mix(server, pg), atol=1e-4)


def test_what_the_page_shows_is_rounded_named_and_inside_its_panels(server, browser):
    """Numbers to their control's precision, sources by kit and instrument (not a package's
    path), the Start panel's selects inside it, and no request that fails on a load (a page of
    its own: the module's shared page keeps its state)."""
    pg = browser.new_page(viewport={"width": 1300, "height": 1000})
    failed = []
    pg.on("response", lambda r: r.status >= 400 and failed.append((r.status, r.url)))
    pg.on("console", lambda m: m.type == "error" and failed.append(m.text))
    pg.goto(server[0])
    pg.wait_for_selector("body[data-ready='1']", timeout=30000)
    try:
        pg.evaluate("studio.loadRecipe({...studio.recipe(), gain_db: 9.322706298654658})")
        assert pg.locator("#gain + output").text_content() == "9.3"
        pg.fill("#attack", "0.0123456")
        assert pg.locator("#attack + output").text_content() in ("0.012", "0.013")
        start = pg.locator("#start").bounding_box()
        for sel in ("#corpus", "#source"):
            box = pg.locator(sel).bounding_box()
            assert box["x"] + box["width"] <= start["x"] + start["width"] + 0.5, sel
        names = pg.evaluate("studio.S.model.names")
        assert names and not any("/usr/share/" in n for n in names)
    finally:
        pg.close()
    assert not failed, failed


def test_shaping_a_layer_in_the_panel_mixes_what_the_server_renders(server, page):
    """Pitch, filter and decay set in the layer panel: the page's own mix (its JavaScript twin of
    recipes/shaping.py) equals the server's render sample for sample, to float rounding; the
    recipe carries the shaping and going back to a plain layer removes it."""
    pg = page
    pg.select_option("#corpus", index=3)
    wait_ready(pg, "encoding and refining the clip: ready")
    if pg.evaluate("studio.recipe()")["shaping"]:  # the refinement shaped it: from plain layers
        pg.click("#shaping")
    assert pg.evaluate("studio.recipe()")["shaping"] == {}
    w = weights(pg)
    first, second = (int(i) for i in np.argsort(-w)[:2])
    plain = np.array(pg.evaluate("Array.from(studio.S.mix)"))
    for layer, fields in ((first, (("#layer-pitch", "-700"), ("#layer-decay", "0.15"))),
                          (second, (("#layer-pitch", "350"), ("#layer-cutoff", "2500")))):
        pg.click(f"#layer-table tr[data-i='{layer}']")
        for sel, value in fields:
            pg.fill(sel, value)
            pg.press(sel, "Enter")
    pg.select_option("#layer-filter", "hpf")
    r = pg.evaluate("studio.recipe()")
    assert r["version"] == 2
    assert r["shaping"][str(first)] == {"pitch_cents": -700, "filter": None, "cutoff_hz": 1000,
                                        "decay": 0.15}
    assert r["shaping"][str(second)]["filter"] == "hpf"
    assert r["shaping"][str(second)]["pitch_cents"] == 350
    mix = np.array(pg.evaluate("Array.from(studio.S.mix)"))
    assert np.max(np.abs(mix - plain)) > 0.01  # it changed the sound
    np.testing.assert_allclose(mix, python_mix(server, pg), atol=2e-6 * np.max(np.abs(mix)))
    for sel, value in (("#layer-pitch", "0"), ("#layer-cutoff", "1000")):
        pg.fill(sel, value)
        pg.press(sel, "Enter")
    pg.select_option("#layer-filter", "")
    assert str(second) not in pg.evaluate("studio.recipe()")["shaping"]


def test_variations_jitter_the_shaped_layers_and_leave_the_plain_ones(server, page):
    pg = page
    r = pg.evaluate("studio.recipe()")
    w = weights(pg)
    a, b = (int(i) for i in np.argsort(-w)[:2])
    shaped = {"pitch_cents": 300, "filter": "lpf", "cutoff_hz": 3000, "decay": 0.2}
    plain = {"pitch_cents": 0, "filter": None, "cutoff_hz": 1000, "decay": None}
    pg.evaluate("r => studio.loadRecipe(r)", {**r, "shaping": {str(a): shaped, str(b): plain}})
    pg.evaluate("document.getElementById('jitter').value = '1'")
    seen = []
    for _ in range(3):
        pg.click("#variations")
        got = pg.evaluate("studio.recipe()")
        s = got["shaping"][str(a)]
        assert got["shaping"][str(b)] == plain  # a plain layer stays plain
        assert s["filter"] == "lpf" and -1200 <= s["pitch_cents"] <= 1200
        assert 20 <= s["cutoff_hz"] <= 20000 and 0.01 <= s["decay"] <= 10
        seen.append((s["pitch_cents"], s["cutoff_hz"], s["decay"]))
        mix = np.array(pg.evaluate("Array.from(studio.S.mix)"))
        np.testing.assert_allclose(mix, python_mix(server, pg), atol=2e-6 * np.abs(mix).max())
    assert len(set(seen)) == 3 and all(v != (300, 3000, 0.2) for v in seen)  # they move
    for _ in range(3):
        pg.click("#undo")
    assert pg.evaluate("studio.recipe()")["shaping"][str(a)] == shaped


def test_upload_is_shaped_ab_against_the_same_layers_unshaped_and_refine_again(server, page):
    pg = page
    pg.select_option("#corpus", index=4)
    wait_ready(pg, "encoding and refining the clip: ready")
    shaped = pg.evaluate("studio.recipe()")
    assert shaped["shaping"], "the smoke model's clip 4 is shaped: its J falls with shaping"
    assert not pg.is_disabled("#shaping")
    mix = np.array(pg.evaluate("Array.from(studio.S.mix)"))
    np.testing.assert_allclose(mix, python_mix(server, pg), atol=2e-6 * np.abs(mix).max())
    pg.click("#shaping")
    assert pg.text_content("#shaping-which") == "off"
    assert pg.evaluate("studio.recipe()")["shaping"] == {}
    plain = np.array(pg.evaluate("Array.from(studio.S.mix)"))
    np.testing.assert_allclose(plain, python_mix(server, pg), atol=1e-4)
    assert np.abs(plain - mix).max() > 1e-3
    pg.click("#shaping")
    assert pg.evaluate("studio.recipe()")["shaping"] == shaped["shaping"]
    pg.click("#shaping")  # off again, then "refine again": the refinement's shaping is back
    pg.click("#shape")
    wait_ready(pg, "refining again: ready")
    again = pg.evaluate("studio.recipe()")
    assert again["shaping"] == shaped["shaping"]
    np.testing.assert_allclose(again["residual"], shaped["residual"], atol=1e-5)
    assert again["gain_db"] == pytest.approx(shaped["gain_db"], abs=1e-4)
    pg.click("#undo")  # before "refine again": the layers unshaped
    assert pg.evaluate("studio.recipe()")["shaping"] == {}


def test_an_answer_from_the_starting_studio_is_refined_again_by_the_page(server, page):
    """While the studio starts, an upload is answered by the encoder's recipe as it is (the
    response says 'none'); the page shows it, asks /api/shape, and loads the refined and shaped
    recipe, which undo takes back to the encoder's. Here the page's request is sent with
    refine=false, as the starting studio would answer it."""
    pg, url = page, server[0]
    asked = []

    def as_if_starting(route):
        route.fulfill(response=route.fetch(url=route.request.url.replace("refine=true",
                                                                         "refine=false")))

    pg.on("request", lambda q: asked.append(q.url) if "/api/shape" in q.url else None)
    pg.route("**/api/corpus/*/recipe*", as_if_starting)
    try:
        pg.select_option("#corpus", index=4)
        wait_ready(pg, "encoding and refining the clip: ready")
    finally:
        pg.unroute("**/api/corpus/*/recipe*")
    assert asked, "the page did not refine the encoder's recipe again"
    clip = pg.eval_on_selector("#corpus", "e => e.value")
    want = httpx.get(url + f"api/corpus/{clip}/recipe?refine=true", timeout=120).json()
    got = pg.evaluate("studio.recipe()")
    assert got["shaping"] == want["shaping"] and got["residual"] is not None
    np.testing.assert_allclose(got["residual"], want["residual"], atol=1e-5)
    pg.click("#undo")  # the encoder's recipe, as the studio answered it first
    assert pg.evaluate("studio.recipe()")["residual"] is None


def test_recipe_download_reloads_exactly(server, page, tmp_path):
    pg = page
    pg.click("#random")
    pg.click("#variations")
    mix = np.array(pg.evaluate("Array.from(studio.S.mix)"))
    with pg.expect_download() as dl:
        pg.click("#export-recipe")
    dl.value.save_as(tmp_path / "recipe.json")
    pg.select_option("#source", index=1)  # somewhere else
    wait_ready(pg, "encoding and refining the source: ready")
    pg.set_input_files("#load-recipe", str(tmp_path / "recipe.json"))
    wait_ready(pg, "recipe loaded")
    np.testing.assert_array_equal(np.array(pg.evaluate("Array.from(studio.S.mix)")), mix)
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    np.testing.assert_allclose(mix, python_mix(server, pg), atol=1e-4)
    assert len(recipe["latent"]) == pg.evaluate("studio.S.model.latent")


def test_drag_and_drop_morph_and_ab(server, page):
    pg, wd = page, server[1]
    clip = npy_rows.read_rows(str(wd / "corpus" / "clips.npy"), 7, 8)[0]
    buf = io.BytesIO()
    sf.write(buf, clip, 22050, format="WAV", subtype="PCM_16")
    pg.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.wav", {type: "audio/wav"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", base64.b64encode(buf.getvalue()).decode())
    wait_ready(pg, "encoding and refining dropped.wav: ready")
    pg.click("#save-a")
    za = np.array(pg.evaluate("Array.from(studio.latent())"))
    pg.select_option("#corpus", index=5)
    wait_ready(pg, "encoding and refining the clip: ready")
    pg.click("#save-b")
    zb = np.array(pg.evaluate("Array.from(studio.latent())"))
    pg.fill("#morph", "0.5")
    np.testing.assert_allclose(pg.evaluate("Array.from(studio.latent())"), (za + zb) / 2,
                               atol=1e-5)
    pg.click("#ab")  # to A: the saved sound comes back
    assert pg.text_content("#ab-which") == "A"
    np.testing.assert_allclose(pg.evaluate("Array.from(studio.latent())"), za, atol=1e-6)


def test_first_click_after_loading_selects_a_layer(server, page):
    pg = page.context.browser.new_page()  # a fresh page: no gesture yet, no AudioContext
    pg.goto(server[0])
    pg.wait_for_selector("body[data-ready='1']", timeout=30000)
    pg.select_option("#corpus", index=3)
    wait_ready(pg, "encoding and refining the clip: ready")
    pg.click("#layer-table tbody tr:nth-child(2)")
    assert pg.is_visible("#layer-panel")
    i = pg.evaluate("studio.S.selected")
    assert i >= 0 and pg.text_content("#layer-name").startswith(f"{i}: ")
    pg.close()


@contextlib.contextmanager
def kit_page(kit_run, browser, ready="ready"):
    """The studio of the smoke kit in a page of its own, once body[data-<ready>] is set: (page,
    its address, the page's errors)."""
    wd = kit_run[1].root
    proc, url = serve(wd)
    try:
        pg = browser.new_page(accept_downloads=True, viewport={"width": 1300, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url)
        pg.wait_for_selector(f"body[data-{ready}='1']", timeout=60000)
        yield pg, url, errors
        pg.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_kit_has_pads_that_switch_play_keep_their_recipes_and_export(kit_run, browser,
                                                                       tmp_path):
    wd = kit_run[1].root
    with kit_page(kit_run, browser) as (pg, url, errors):
        assert pg.is_visible("#kit") and pg.locator("button.pad").count() == 2
        assert "clap" in pg.text_content("#kit-note")  # the skipped categories, and why
        assert pg.evaluate("studio.S.prefix") == "/c/kick"
        drag_slider(pg, 0)  # the kick pad's recipe, edited
        kick_mix = pg.evaluate("Array.from(studio.S.mix)")
        pg.click("button.pad[data-c='snare']")
        pg.wait_for_function("studio.S.kit.current === 'snare' && studio.S.played >= 1")
        assert "snare" in pg.evaluate("studio.S.model.workdir")
        snare_mix = pg.evaluate("Array.from(studio.S.mix)")
        np.testing.assert_allclose(snare_mix, python_mix((url + "c/snare/", wd), pg),
                                   atol=1e-4)  # the page mixes the snare model's sources
        pg.keyboard.press("1")  # back to the kick: its edited recipe, played
        pg.wait_for_function("studio.S.kit.current === 'kick' && studio.S.played >= 2")
        np.testing.assert_array_equal(pg.evaluate("Array.from(studio.S.mix)"), kick_mix)
        assert len(pg.evaluate("studio.S.padLatencies")) == 2
        pg.fill("#round-robin", "2")
        with pg.expect_download() as dl:
            pg.click("#export-kit")
        dl.value.save_as(tmp_path / "kit.zip")
        names = zipfile.ZipFile(tmp_path / "kit.zip").namelist()
        for f in ("kit.sfz", "kit.dspreset", "samples/kick_v4_2.wav", "samples/snare_v1_2.wav",
                  "recipes.json"):
            assert f in names, names
        pg.wait_for_function("document.getElementById('status').textContent"
                             ".includes('exported the kit')")
        assert not errors, errors


def _voices(url, recipe, layers=4, round_robin=3):
    """The server's voices of a recipe: [layers, round robins, samples]."""
    r = httpx.post(f"{url}api/voices?layers={layers}&round_robin={round_robin}", json=recipe,
                   timeout=60)
    meta = json.loads(r.headers["X-Voices"])
    return np.frombuffer(r.content, "<f4").reshape(len(meta["layers"]), meta["round_robin"], -1)


def test_the_single_sound_studio_plays_any_midi_note_at_its_velocity_layer(page, server):
    from drumlayer.kit import velocity

    pg = page
    pg.wait_for_selector("body[data-instrument='1']", timeout=60000)
    assert "keys and the mouse" in pg.text_content("#midi-note")  # no MIDI here, and said so
    pg.click("#play-hit")  # a gesture: the audio context runs
    # the voices of the recipe as it is now (an earlier test's last edit may still have its
    # fetch waiting for a slot among the studio's heavy requests)
    pg.evaluate("instrument.refreshVoices('')")
    h = pg.evaluate("instrument.onMidi([0x90, 60, 70], performance.now())")
    assert (h["pad"], h["layer"], h["velocity"]) == ("", 2, 70)  # any note; 64-95 is layer 2
    assert h["gain"] == pytest.approx(velocity.velocity_gain(70, 64, 95), rel=1e-6)
    played = np.array(pg.evaluate(
        f"Array.from(instrument.I.voices.get('').buffers[2][{h['rr']}].getChannelData(0))"))
    want = _voices(server[0], pg.evaluate("instrument.recipeOf('')"))[2, h["rr"]]
    np.testing.assert_allclose(played, want, atol=1e-7)
    assert pg.evaluate("instrument.onMidi([0x80, 60, 70], 0)") is None  # note-off
    assert pg.evaluate("instrument.onMidi([0x90, 60, 0], 0)") is None  # note-on at 0: off


def dragged(pg, selector: str) -> dict:
    """What dragging the element out gives a drop target: Chromium's DownloadURL ("mime:name:
    url") split, and the bytes at its URL (base64)."""
    return pg.evaluate("""async (selector) => {
        const dt = new DataTransfer();
        document.querySelector(selector).dispatchEvent(
          new DragEvent("dragstart", { dataTransfer: dt, bubbles: true }));
        const [mime, name, ...rest] = dt.getData("DownloadURL").split(":");
        const bytes = new Uint8Array(await (await fetch(rest.join(":"))).arrayBuffer());
        let s = ""; for (const b of bytes) s += String.fromCharCode(b);
        return { mime, name, b64: btoa(s) };
    }""", selector)


def test_a_kit_plays_from_midi_in_a_groove_and_drags_out_its_wavs(kit_run, browser, tmp_path):
    from drumlayer.kit import velocity

    with kit_page(kit_run, browser, ready="instrument") as (pg, url, errors):
        pg.click("#play-hit")  # the current pad (kick) at the velocity slider's 100
        assert pg.evaluate("instrument.I.hits.map(h => [h.pad, h.velocity, h.layer])") == [
            ["kick", 100, 3]]
        # a note-on through the page's MIDI handler: the GM map's pad, its layer and level
        h = pg.evaluate("instrument.onMidi([0x99, 38, 100], performance.now())")
        assert (h["pad"], h["note"], h["layer"]) == ("snare", 38, 3)
        assert h["gain"] == pytest.approx(velocity.velocity_gain(100, 96, 127), rel=1e-6)
        played = np.array(pg.evaluate(
            f"Array.from(instrument.I.voices.get('snare').buffers[3][{h['rr']}]"
            ".getChannelData(0))"))
        want = _voices(url + "c/snare/", pg.evaluate("instrument.recipeOf('snare')"))
        np.testing.assert_allclose(played, want[3, h["rr"]], atol=1e-7)
        soft = pg.evaluate("instrument.onMidi([0x99, 40, 10], performance.now())")
        assert (soft["pad"], soft["layer"]) == ("snare", 0)  # 40: the GM map's other snare
        assert (h["rr"], soft["rr"]) == (0, 1)  # each hit takes the pad's next round robin
        assert pg.evaluate("instrument.onMidi([0x99, 60, 100], 0)") is None  # not a pad
        pg.select_option("#midi-channel", "2")
        assert pg.evaluate("instrument.onMidi([0x99, 36, 100], 0)") is None  # channel 10
        assert pg.evaluate("instrument.onMidi([0x91, 36, 100], 0)")["pad"] == "kick"
        pg.keyboard.press("w")  # the second pad's key
        assert pg.evaluate("instrument.I.hits.at(-1).pad") == "snare"
        pg.click("button.vel[data-v='63']")  # the current pad's second layer, shown and played
        assert pg.evaluate("[instrument.I.hits.at(-1).pad, instrument.I.hits.at(-1).layer]") == [
            "kick", 1]
        assert pg.locator("button.vel").count() == 4
        # the groove: every hit scheduled on its sixteenth, on this kit's pads only
        pg.select_option("#groove", "rock")
        pg.fill("#tempo", "120")
        pg.click("#groove-play")
        pg.wait_for_function("instrument.I.grooveLog.length >= 10", timeout=20000)
        pg.click("#groove-play")
        log = pg.evaluate("instrument.I.grooveLog")
        assert {e["pad"] for e in log} == {"kick", "snare"}
        for e in log:
            grid = (e["bar"] * 16 + e["step"]) * 60 / 120 / 4
            assert abs(e["when"] - e["t0"] - grid) < 0.001
        with pg.expect_download() as dl:
            pg.click("#export-groove")
        dl.value.save_as(tmp_path / "groove.wav")
        x, rate = sf.read(tmp_path / "groove.wav")
        assert rate == 48000 and len(x) == 96000  # a bar at 120 BPM
        # the groove as MIDI: exported, and dragged out, the bytes of the CLI's file
        from drumlayer.kit import midi

        with pg.expect_download() as dl:
            pg.click("#export-groove-midi")
        assert dl.value.suggested_filename == "groove_rock_120bpm.mid"
        want = midi.groove_midi("rock", 120, ["kick", "snare"])
        assert open(dl.value.path(), "rb").read() == want
        got = dragged(pg, "#drag-groove")
        assert (got["mime"], got["name"]) == ("audio/midi", "groove_rock_120bpm.mid")
        assert base64.b64decode(got["b64"]) == want
        # drag a pad out: Chromium's DownloadURL, whose WAV is the pad's export, byte for byte
        pg.wait_for_function("instrument.I.wavs.has('kick') && instrument.I.wavs.has('snare')")
        got = dragged(pg, "button.pad[data-c='snare']")
        assert (got["mime"], got["name"]) == ("audio/wav", "snare_48000.wav")
        export = httpx.post(url + "c/snare/api/render?export=true&sample_rate=48000",
                            json=pg.evaluate("instrument.recipeOf('snare')"), timeout=60)
        assert base64.b64decode(got["b64"]) == export.content
        assert not errors, errors


def test_a_loop_dropped_on_the_kit_is_shown_rebuilt_played_ab_and_exported(kit_run, browser,
                                                                            tmp_path):
    """A loop of a real kit's one-shots: the grid shows the hits the command writes to
    hits.csv; the rebuilt loop plays each hit on its onset in sync with the original, A/B; the
    pads are fitted; the MIDI file and the rebuilt loop export."""
    import csv

    import mido

    from drumlayer.data import audio, discovery
    from drumlayer.loops import analyze
    from drumlayer.loops import groundtruth as gt

    from conftest import real_kits

    found, _ = discovery.discover([real_kits()])
    shots = {}
    for c in found:
        if c.kit == "GMRockKit" and c.category in ("kick", "snare") and "-Hard." in c.file:
            x, rate = audio.read_audio(c.file, max_seconds=1.0)
            shots.setdefault(c.category, []).append(audio.resample(x[:, 0], rate, 44100))
    pattern = {c: n for c, n in gt.PATTERNS["breakbeat"].items() if c in shots}
    y = gt.render(gt.hits(pattern, 100.0, 1), gt.voices(shots), 2.4, 44100)
    path = tmp_path / "my break.wav"
    sf.write(path, y, 44100)
    wd = kit_run[1].root
    kit = analyze.LoopKit.open(str(wd))
    t = analyze.transcribe_loop(kit, y, 44100)
    rows = list(csv.DictReader(io.StringIO(analyze.hits_csv(t["hits"], kit.studios))))
    with kit_page(kit_run, browser, ready="instrument") as (pg, url, errors):
        assert pg.is_visible("#loop")
        pg.set_input_files("#loop-file", str(path))
        pg.wait_for_function("loops.L.loop && loops.L.playing", timeout=60000)
        assert pg.evaluate("loops.L.heardMs") < 5000  # the first rebuilt loop, heard
        grid = pg.evaluate("""Array.from(document.querySelectorAll('#loop-grid .hit')).map(
            e => [Number(e.dataset.onset), e.dataset.category, Number(e.dataset.velocity)])""")
        assert sorted(grid) == sorted([float(r["onset_s"]), r["category"], int(r["velocity"])]
                                      for r in rows)
        # A/B in sync: every rebuilt hit on its onset of the original's cycle
        seconds = pg.evaluate("loops.L.loop.seconds")
        assert seconds == pytest.approx(2.4, abs=1e-3)
        log = pg.evaluate("loops.L.log")
        assert log and {e["category"] for e in log} <= {"kick", "snare"}
        for e in log:
            assert abs(e["when"] - e["t0"] - e["cycle"] * seconds - e["onset_s"]) < 0.001
        assert pg.evaluate("[loops.L.gains.a.gain.value, loops.L.gains.b.gain.value]") == [0, 1]
        pg.check("input[name='loop-ab'][value='a']")
        assert pg.evaluate("[loops.L.gains.a.gain.value, loops.L.gains.b.gain.value]") == [1, 0]
        pg.wait_for_selector("body[data-loop-pads='1']", timeout=180000)
        fitted = pg.evaluate("loops.L.fitted")
        assert set(fitted["pads"]) == {r["category"] for r in rows if r["pad"]}
        for c, rec in fitted["pads"].items():  # each pad plays its fitted recipe now
            assert pg.evaluate(f"instrument.recipeOf('{c}').latent") == pytest.approx(
                rec["latent"], abs=1e-6)
            assert pg.evaluate(f"instrument.I.voices.get('{c}').key.endsWith("
                               f"JSON.stringify(instrument.recipeOf('{c}')))")
        token = pg.evaluate("loops.L.loop.token")
        with pg.expect_download() as dl:
            pg.click("#loop-export-midi")
        data = open(dl.value.path(), "rb").read()
        assert data == httpx.get(f"{url}api/kit/loop/{token}/groove.mid").content
        notes = [m for m in mido.MidiFile(file=io.BytesIO(data)) if m.type == "note_on"]
        assert len(notes) == sum(1 for r in rows if r["pad"])
        with pg.expect_download() as dl:
            pg.click("#loop-export-rebuilt")
        z, rate = sf.read(dl.value.path())
        assert rate == 44100 and len(z) == len(y)
        # the groove player plays the loop's own pattern
        assert pg.evaluate("document.querySelector('#groove option[value=loop]') !== null")
        assert not errors, errors
