"""The studio: decode + mix on the server and in the page, and slider latency in Chromium."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys

import numpy as np

from benchmarks import harness


@contextlib.contextmanager
def _studio(workdir: str, bench: str, *flags: str, env: dict | None = None):
    """`python -m drumlayer.studio` on workdir (any free port), stopped after: its address."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "drumlayer.studio", f"--workdir={workdir}",
                             "--port=0", *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = None
        for line in proc.stdout:
            if "open http" in line:
                url = line.split("open ")[1].split()[0]
                break
        if url is None:
            raise SystemExit(f"bench {bench}: the studio did not start on {workdir}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _browser_latency(url: str, moves: int) -> dict:
    """Drive the studio page in headless Chromium: `moves` slider input events, and the page's
    own decode + edit + mix timed in a loop."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=harness.chromium(), headless=True)
        pg = browser.new_page(viewport={"width": 1300, "height": 1000})
        pg.goto(url)
        pg.wait_for_selector("body[data-ready='1']", timeout=60000)
        pg.select_option("#corpus", index=1)
        pg.wait_for_function("document.getElementById('status').textContent.includes("
                             "'ready')")
        pg.mouse.click(5, 5)  # a user gesture: the page creates its AudioContext
        pg.evaluate("studio.S.latencies.length = 0")
        sliders = pg.locator("input.pc")
        per = max(1, moves // 3)
        for j in range(3):  # three sliders, each dragged back and forth
            box = sliders.nth(j).bounding_box()
            y = box["y"] + box["height"] / 2
            pg.mouse.move(box["x"] + box["width"] / 2, y)
            pg.mouse.down()
            for s in range(per):
                frac = 0.5 + 0.45 * np.sin(2 * np.pi * s / per)
                pg.mouse.move(box["x"] + box["width"] * frac, y)
            pg.mouse.up()
        pg.wait_for_timeout(300)
        lat = pg.evaluate("studio.S.latencies")
        mix_ms = pg.evaluate("""() => {
            const t = [];
            for (let i = 0; i < 200; i++) {
                studio.S.sliders[0] = (i % 20) * 0.1;
                const t0 = performance.now();
                studio.mixOf(studio.editWeights(studio.decode(studio.latent())));
                t.push(performance.now() - t0);
            }
            return t; }""")
        browser.close()
    return {"latencies_ms": lat, "page_decode_mix_ms": mix_ms}


@harness.benchmark
def bench_studio(args) -> dict:
    """The studio on a trained workdir: decode + mix of one recipe on the server (numpy, the
    /api/render arithmetic) against the jit-compiled JAX model in the same process; and in
    headless Chromium the latency from a slider's input event to the frame after the weights,
    chart and playable mix are updated, with the page's own decode + mix."""

    import jax
    import jax.numpy as jnp

    from drumlayer.model import vae as model_lib
    from drumlayer.studio.server import Recipe, Studio

    st = Studio(args.workdir)
    rng = np.random.default_rng(0)
    zs = st.bundle.pca["center"] + rng.normal(size=(64, st.bundle.latent)).astype(np.float32)
    recipes = [Recipe(latent=z.tolist()) for z in zs]
    it = itertools.count()

    def server_mix():
        st.render(recipes[next(it) % len(recipes)])

    src = jnp.asarray(st.bundle.sources)
    jax_fn = jax.jit(lambda z: model_lib.mix(st.bundle.model.apply(
        {"params": st.bundle.params}, z, method=model_lib.LayeringVAE.decode), src))

    def jax_mix():
        jax_fn(zs[next(it) % len(zs)][None]).block_until_ready()

    t_np = harness.median_time(server_mix, repeats=200, warmup=5)
    t_jax = harness.median_time(jax_mix, repeats=200, warmup=5)
    with _studio(args.workdir, "studio") as url:
        b = _browser_latency(url, args.moves)
    lat = np.array(b["latencies_ms"])
    pm = np.array(b["page_decode_mix_ms"])
    rows = [{"what": f"server: decode + edit + mix + envelope ({st.bundle.k} sources, numpy)",
             "median_ms": round(t_np * 1e3, 3), "p95_ms": "-"},
            {"what": "reference: jit-compiled JAX decode + mix, same process",
             "median_ms": round(t_jax * 1e3, 3), "p95_ms": "-"},
            {"what": "page: decode + edit + mix (JavaScript, 200 runs)",
             "median_ms": round(float(np.median(pm)), 2),
             "p95_ms": round(float(np.percentile(pm, 95)), 2)},
            {"what": f"page: slider input -> next frame ({len(lat)} events)",
             "median_ms": round(float(np.median(lat)), 2),
             "p95_ms": round(float(np.percentile(lat, 95)), 2)}]
    harness.print_table(("what", "median_ms", "p95_ms"), rows)
    ok_server = t_np * 1e3 < 5 and np.median(pm) < 5
    ok_page = np.percentile(lat, 95) < 50
    print(f"targets: decode + mix < 5 ms: {'met' if ok_server else 'NOT met'}; slider p95 < "
          f"50 ms: {'met' if ok_page else 'NOT met'}")
    return {"rows": rows, "workdir": os.path.abspath(args.workdir), "sources": st.bundle.k,
            "slider_latency_ms": {"median": float(np.median(lat)),
                                  "p95": float(np.percentile(lat, 95)), "n": len(lat)},
            "server_decode_mix_ms": t_np * 1e3, "jax_decode_mix_ms": t_jax * 1e3}



def _row(what: str, ms: list[float]) -> dict:
    """A table row: what, the median and the 95th percentile of ms."""
    return {"what": what, "median_ms": round(float(np.median(ms)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _pad_latency(url: str, switches: int) -> dict:
    """In headless Chromium: each pad's first visit (its model fetched), then `switches` pad
    changes by number key, and as many presses of the current pad's own key (no switch)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=harness.chromium(), headless=True)
        pg = browser.new_page(viewport={"width": 1300, "height": 1000})
        pg.goto(url)
        pg.wait_for_selector("body[data-ready='1']", timeout=60000)
        pg.mouse.click(5, 5)  # a user gesture: the page creates its AudioContext
        n = pg.locator("button.pad").count()

        def press(key, count):
            pg.keyboard.press(key)
            pg.wait_for_function(f"studio.S.padLatencies.length >= {count}", timeout=60000)

        for i in range(n):  # first visits
            press(str(i + 1), i + 1)
        first = pg.evaluate("studio.S.padLatencies.slice()")
        done = len(first)
        for s in range(switches):
            done += 1
            press(str(s % n + 1) if n > 1 else "1", done)
        switch = pg.evaluate(f"studio.S.padLatencies.slice({len(first)})")
        for _ in range(switches):
            done += 1
            press(str((switches - 1) % n + 1), done)
        same = pg.evaluate(f"studio.S.padLatencies.slice({len(first) + switches})")
        browser.close()
    return {"pads": n, "first_ms": first, "switch_ms": switch, "same_pad_ms": same}


@harness.benchmark
def bench_kit_studio(args) -> dict:
    """The studio of a kit workdir in headless Chromium: the time from a pad's key to its sound
    starting (the recipe restored, its mix made and played), switching pads, against pressing
    the current pad again (the same playing, no switch); and each pad's first visit, which
    fetches its model and sources."""
    with _studio(args.kit_workdir, "kit_studio") as url:
        r = _pad_latency(url, 100)
    rows = [_row(f"switch pad and play ({len(r['switch_ms'])} switches, {r['pads']} pads)",
                 r["switch_ms"]),
            _row("reference: play the current pad again", r["same_pad_ms"]),
            _row("first visit of a pad (fetches its model and sources)", r["first_ms"])]
    harness.print_table(("what", "median_ms", "p95_ms"), rows)
    ok = np.percentile(r["switch_ms"], 95) < 50
    print(f"target: switching pads and playing p95 < 50 ms: {'met' if ok else 'NOT met'}")
    return {"rows": rows, **r, "workdir": os.path.abspath(args.kit_workdir)}


def _midi_latency(url: str, notes: int) -> dict:
    """In headless Chromium: `notes` synthetic note-ons, 25 ms apart, through the page's MIDI
    handler (the kit's GM notes, velocities 1-127): each hit's latency from the message's time
    stamp to the scheduled start of its sound, and to the start() call alone."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=harness.chromium(), headless=True)
        pg = browser.new_page(viewport={"width": 1300, "height": 1000})
        pg.goto(url)
        pg.wait_for_selector("body[data-instrument='1']", timeout=120000)
        pg.mouse.click(5, 5)  # a user gesture: the audio context runs
        pg.evaluate("""(n) => new Promise((done) => {
            const notes = [...instrument.I.notes.keys()];
            let i = 0;
            const next = () => {
              if (i === n) return done();
              instrument.onMidi([0x99, notes[i % notes.length], 1 + (i * 37) % 127],
                                performance.now());
              i += 1; setTimeout(next, 25);
            };
            next();
        })""", notes)
        hits = pg.evaluate("instrument.I.hits.map(h => [h.latency, h.handler])")
        device = pg.evaluate("[audioCtx.baseLatency, audioCtx.outputLatency, audioCtx.sampleRate]")
        browser.close()
    lat = np.array(hits)
    return {"latency_ms": lat[:, 0].tolist(), "handler_ms": lat[:, 1].tolist(),
            "base_latency_s": device[0], "output_latency_s": device[1], "rate": device[2]}


@harness.benchmark
def bench_midi(args) -> dict:
    """The kit studio played from MIDI in headless Chromium: note-on to the scheduled start of
    the sound (the pad's buffers already held), against the handler's own time to start()."""
    with _studio(args.kit_workdir, "midi") as url:
        r = _midi_latency(url, 200)
    rows = [_row(f"MIDI note-on to scheduled start ({len(r['latency_ms'])} notes)",
                 r["latency_ms"]),
            _row("reference: note-on to the start() call", r["handler_ms"])]
    harness.print_table(("what", "median_ms", "p95_ms"), rows)
    print(f"the audio device's own latency after that (not counted): output "
          f"{1e3 * r['output_latency_s']:.1f} ms, base {1e3 * r['base_latency_s']:.1f} ms")
    ok = np.percentile(r["latency_ms"], 95) < 10
    print(f"target: MIDI to sound p95 < 10 ms: {'met' if ok else 'NOT met'}")
    return {"rows": rows, **r, "workdir": os.path.abspath(args.kit_workdir)}


@harness.benchmark
def bench_first_upload(args) -> dict:
    """The first upload of a session: `python -m drumlayer.studio` started with an empty JAX
    compilation cache, the page given a second to load, then one snare posted to /api/encode
    (refined): the time to its recipe (the layers on screen), with the encoder and refinements
    compiled from the start (--warm_up, the default) and, as the reference, at the first upload
    (--nowarm_up); and, as the page does when the answer came before the default refinement
    was ready, the time until /api/shape has refined it again (to the shaped recipe)."""
    import io
    import tempfile
    import time

    import httpx
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, harness.snares(1, seed=3)[0], 22050, format="WAV")
    files = {"file": ("snare.wav", buf.getvalue(), "audio/wav")}
    kinds = {"warm_up": "first upload, compiled from the start (--warm_up), empty JAX cache",
             "nowarm_up": "reference: compiled at the first upload (--nowarm_up), empty cache",
             "cached": "first upload, --warm_up, the JAX cache of an earlier start"}

    def first_upload(flag: str, cache: str) -> tuple[float, float, str]:
        """Start a studio, let the page load for a second, time one upload: (s to its recipe,
        s to the shaped recipe, the refinement that answered first)."""
        with _studio(args.workdir, "first_upload", flag,
                     env={**os.environ, "DRUMLAYER_JAX_CACHE": cache}) as url:
            time.sleep(1.0)
            headers = {"Origin": url.rstrip("/")}
            t = time.perf_counter()
            r = httpx.post(url + "api/encode", files=files, timeout=120, headers=headers)
            first, used = time.perf_counter() - t, r.raise_for_status().headers[
                "X-Drumlayer-Refinement"]
            if used != "shape":
                httpx.post(url + "api/shape", json=r.json(), timeout=120,
                           headers=headers).raise_for_status()
            return first, time.perf_counter() - t, used

    times: dict[str, list] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as kept:
        first_upload("--warm_up", kept)  # an earlier start fills the kept cache
        for _ in range(args.repeats):
            for kind in kinds:
                with tempfile.TemporaryDirectory() as empty:
                    times[kind].append(first_upload(
                        "--nowarm_up" if kind == "nowarm_up" else "--warm_up",
                        kept if kind == "cached" else empty))
    med = {k: float(np.median([t[0] for t in v])) for k, v in times.items()}
    shaped = {k: float(np.median([t[1] for t in v])) for k, v in times.items()}
    rows = [{"what": kinds[k], "median_s": round(med[k], 3),
             "to_shaped_s": round(shaped[k], 3), "answered_by": "/".join(
                 sorted({t[2] for t in times[k]})), "runs": len(times[k])} for k in kinds]
    harness.print_table(("what", "median_s", "to_shaped_s", "answered_by", "runs"), rows)
    print(f"target: first upload < 1 s: with an empty cache "
          f"{'met' if med['warm_up'] < 1 else 'NOT met'}, with the cache of an earlier start "
          f"{'met' if med['cached'] < 1 else 'NOT met'}; compiling from the start is "
          f"{med['nowarm_up'] / med['warm_up']:.1f}x faster than at the upload")
    return {"rows": rows, "workdir": os.path.abspath(args.workdir), "seconds": times,
            "ratio": med["nowarm_up"] / med["warm_up"]}


LOAD = """
import sys, threading, time, httpx
base, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
recipe = httpx.get(base + "api/sources/0/recipe?refine=false", timeout=60).json()
until = time.perf_counter() + seconds
def client(i):
    with httpx.Client(base_url=base, timeout=300) as h:
        while time.perf_counter() < until:
            (h.post("api/voices?layers=4&round_robin=4", json=recipe) if i % 3 == 0 else
             h.post("api/render", json=recipe) if i % 3 == 1 else
             h.get(f"api/sources/{i % 5}/recipe")).raise_for_status()
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


@harness.benchmark
def bench_studio_load(args) -> dict:
    """The page's light request (/api/model) while 64 clients keep the heavy routes busy
    (renders, a pad's voices, a source's refined recipe), from another process: its latency
    against the same request on the idle studio, measured in the same run. Target: < 1 s."""
    import subprocess
    import threading
    import time

    import httpx

    def poll(url: str, seconds: float) -> list[float]:
        out, until = [], time.perf_counter() + seconds
        while time.perf_counter() < until:
            t = time.perf_counter()
            httpx.get(url + "api/model", timeout=60).raise_for_status()
            out.append(time.perf_counter() - t)
            time.sleep(0.05)
        return out

    with _studio(args.workdir, "studio_load") as url:
        idle = poll(url, 3.0)
        load = threading.Thread(target=subprocess.run, args=(
            [sys.executable, "-c", LOAD, url, "64", "10"],), kwargs={"check": True})
        load.start()
        time.sleep(1.0)  # the clients connected and queued
        busy = poll(url, 8.0)
        load.join()
    rows = [{"what": what, "median_ms": round(1e3 * float(np.median(x)), 1),
             "p95_ms": round(1e3 * float(np.percentile(x, 95)), 1),
             "max_ms": round(1e3 * max(x), 1), "requests": len(x)}
            for what, x in (("/api/model, idle studio (reference)", idle),
                            ("/api/model, 64 clients on the heavy routes", busy))]
    harness.print_table(("what", "median_ms", "p95_ms", "max_ms", "requests"), rows)
    print(f"target: the light request < 1 s under load: "
          f"{'met' if max(busy) < 1 else 'NOT met'} (max {max(busy):.2f} s, "
          f"{np.median(busy) / np.median(idle):.1f}x the idle median)")
    return {"rows": rows, "workdir": os.path.abspath(args.workdir)}
