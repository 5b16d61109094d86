"""The studio against what a hostile web page or a careless upload sends: other origins and host
names, chunked bodies past the limits, decoding bombs; and it keeps serving meanwhile."""

import io
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from test_audio import forged_wav

from drumlayer.studio import guard
from drumlayer.studio.server import create_app

from conftest import LOCAL, every_core, serve


@pytest.fixture(scope="module")
def app(smoke_run):
    return create_app(str(smoke_run), max_upload_mb=1.0)


def wav_bytes(seconds=0.3, rate=44100):
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(2 * np.pi * 200 * t) * np.exp(-8 * t)).astype(np.float32), rate,
             format="WAV")
    return buf.getvalue()


def test_a_cross_site_post_is_refused_before_any_work(app):
    c = TestClient(app, base_url=LOCAL)
    st = app.state.studio
    before = len(st.originals)
    r = c.post("/api/encode", files={"file": ("s.wav", wav_bytes())},
               headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    assert len(st.originals) == before  # nothing was decoded or kept
    ok = c.post("/api/encode?refine=false", files={"file": ("s.wav", wav_bytes())},
                headers={"Origin": LOCAL})
    assert ok.status_code == 200 and len(st.originals) == before + 1


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example"])
def test_a_rebound_host_name_reads_nothing(app, host):
    c = TestClient(app, base_url=f"http://{host}")
    for path in ("/api/model", "/api/corpus", "/api/sources", "/"):
        r = c.get(path)
        assert r.status_code == 421, (path, r.status_code)
        assert "127.0.0.1" in r.json()["detail"]


def test_the_hosts_it_answers_to_are_configurable(smoke_run):
    c = TestClient(create_app(str(smoke_run), hosts=("studio.lan",)), base_url="http://studio.lan")
    assert c.get("/api/model").status_code == 200
    assert TestClient(c.app, base_url=LOCAL).get("/api/model").status_code == 421
    assert guard.host_name("[::1]:8765") == "::1" and guard.host_name("LocalHost") == "localhost"


PART = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.wav\"\r\n"
        b"Content-Type: audio/wav\r\n\r\n")  # a multipart body's head, its file to follow


def chunks(total: int, size: int = 1 << 16):
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size


def test_chunked_bodies_stop_at_the_limit(app):
    c = TestClient(app, base_url=LOCAL)
    # a JSON body with no Content-Length (chunked): counted as it arrives
    t = time.perf_counter()
    r = c.post("/api/render", content=chunks(64 << 20), headers={"Content-Type":
                                                                 "application/json"})
    assert r.status_code == 413 and "8 MB" in r.json()["detail"]
    # a multipart upload, chunked: the 1 MB limit of this app
    r = c.post("/api/encode", content=iter([PART, *chunks(8 << 20)]),
               headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "--max_upload_mb" in r.json()["detail"]
    assert time.perf_counter() - t < 10


def test_a_huge_locks_dict_is_refused_by_its_size(app):
    c = TestClient(app, base_url=LOCAL)
    z = [0.0] * app.state.studio.bundle.latent
    locks = ", ".join(f'"{i}": 0.5' for i in range(10**6))
    body = f'{{"latent": {z}, "locks": {{{locks}}}}}'
    t = time.perf_counter()
    r = c.post("/api/render", content=body.encode(), headers={"Content-Type":
                                                              "application/json"})
    assert r.status_code == 413
    assert time.perf_counter() - t < 1.0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024


LOAD = """
import sys, threading, time, httpx
base, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
recipe = httpx.get(base + "/api/sources/0/recipe?refine=false", timeout=60).json()
until, done = time.perf_counter() + seconds, []
def client(i):
    with httpx.Client(base_url=base, timeout=300) as h:
        while time.perf_counter() < until:
            r = (h.post("/api/voices?layers=4&round_robin=4", json=recipe) if i % 3 == 0 else
                 h.post("/api/render", json=recipe) if i % 3 == 1 else
                 h.get(f"/api/sources/{i % 5}/recipe"))
            r.raise_for_status()
            done.append(i)
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(done))
"""


def test_the_real_server_refuses_bombs_and_floods_and_keeps_answering(smoke_run, tmp_path):
    proc, url = serve(smoke_run)
    try:
        base = url.rstrip("/")
        httpx.get(f"{base}/api/model", timeout=60).raise_for_status()
        rss = rss_mb(proc.pid)
        slowest, stop = [], threading.Event()

        def poll():
            while not stop.is_set():
                t = time.perf_counter()
                httpx.get(f"{base}/api/model", timeout=30).raise_for_status()
                slowest.append(time.perf_counter() - t)
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            bomb = tmp_path / "bomb.wav"  # a header claiming 255 channels at 192 kHz
            forged_wav(bomb, 255, 192000, frames=200)
            r = httpx.post(f"{base}/api/encode", files={"file": ("bomb.wav", bomb.read_bytes())},
                           timeout=60)
            assert r.status_code == 422 and "255 channels" in r.json()["detail"]
            # a legitimate but heavy upload: 8 channels at 192 kHz, decoded and refined on a
            # worker thread while /api/model is served
            heavy = io.BytesIO()
            sf.write(heavy, (0.1 * np.random.default_rng(0).standard_normal((192000 * 3, 8)))
                     .astype(np.float32), 192000, format="FLAC", subtype="PCM_16")
            r = httpx.post(f"{base}/api/encode", files={"file": ("wide.flac", heavy.getvalue())},
                           timeout=120)
            assert r.status_code == 200, r.text
            # 1 GiB, chunked: refused at the upload limit (50 MB), never spooled whole
            sent = 0

            def flood():
                nonlocal sent
                yield PART
                for block in chunks(1 << 30, 1 << 20):
                    sent += len(block)
                    yield block

            try:
                r = httpx.post(f"{base}/api/encode", content=flood(), timeout=60, headers={
                    "Content-Type": "multipart/form-data; boundary=b"})
                assert r.status_code == 413
            except httpx.HTTPError:  # the server may close the connection as it answers
                pass
            assert sent < 300 << 20, f"{sent >> 20} MB were taken before the refusal"
            assert rss_mb(proc.pid) - rss < 400, "the server's memory grew with the attack"
            # 64 clients on the heavy routes at once (renders, voices, a source's recipe),
            # from another process: they wait for a slot, the page's light requests do not
            load = subprocess.run([sys.executable, "-c", LOAD, base, "64", "4"], timeout=300,
                                  capture_output=True, text=True, preexec_fn=every_core)
            assert load.returncode == 0, load.stderr[-2000:]
            assert int(load.stdout) >= 64, load.stdout  # every client was answered
        finally:
            stop.set()
            poller.join()
        # the page's light requests are served meanwhile (starved, they took up to 14 s: the
        # heavy routes filled the thread pool); the 1 s target itself is timed by the studio
        # benchmark, on a machine not running another test worker beside
        assert max(slowest) < 3.0, f"/api/model took {max(slowest):.2f} s"
        assert httpx.get(f"{base}/api/model", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_request_from_another_site_without_origin_is_refused(app, site):
    """An <img src=".../api/sources/0/recipe"> on another page sends no Origin, only
    Sec-Fetch-Site: refused before any work; the page itself may be opened from a link."""
    c = TestClient(app, base_url=LOCAL)
    for path in ("/api/sources/0/recipe", "/api/corpus/0/recipe", "/api/model"):
        r = c.get(path, headers={"Sec-Fetch-Site": site})
        assert r.status_code == 403 and site in r.json()["detail"], (path, r.status_code)
    assert c.get("/", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"}
                 ).status_code == 200
    for own in ("same-origin", "none"):
        assert c.get("/api/model", headers={"Sec-Fetch-Site": own}).status_code == 200


def test_gets_of_corpus_and_source_recipes_never_evict_an_upload(smoke_run):
    """The uploads are kept in a few slots; recipes of corpus clips and sources (GETs, which
    any page can make a browser send) keep nothing, so a flood of them evicts no upload, and
    their own originals are still there for match and play."""
    app = create_app(str(smoke_run))
    st = app.state.studio
    st.keep_uploads = 2
    c = TestClient(app, base_url=LOCAL)
    up = c.post("/api/encode?refine=false", files={"file": ("s.wav", wav_bytes())}).json()
    for i in range(3 * st.keep_uploads):
        src = c.get(f"/api/sources/{i % st.bundle.k}/recipe?refine=false")
        clip = c.get(f"/api/corpus/{i}/recipe?refine=false")
        assert src.status_code == clip.status_code == 200
    assert len(st.originals) == 1
    for r in (up, src.json(), clip.json()):
        assert c.get(f"/api/original/{r['original']}").status_code == 200, r["original"]
        assert c.post("/api/match", json=r).status_code == 200
    x, _ = sf.read(io.BytesIO(c.get(f"/api/original/{clip.json()['original']}").content))
    assert x.shape[0] == st.samples
    for bad in ("corpus-999999", "source-999", "source-x", "corpus--1"):
        assert c.get(f"/api/original/{bad}").status_code == 404


def test_heavy_requests_wait_before_their_bodies_are_read_and_light_ones_do_not():
    """Twenty heavy requests at once against a limit of 2: at most 2 bodies are read (an
    upload waiting takes no memory), and a light request meanwhile is answered at once."""
    import asyncio

    reading, most, gate = 0, 0, None

    async def app(scope, receive, send):
        nonlocal reading, most
        if scope["path"].endswith("/api/encode"):
            await receive()  # the body
            reading += 1
            most = max(most, reading)
            await gate.wait()
            reading -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    g = guard.Guard(app, hosts=("127.0.0.1",), heavy=2)

    async def request(path):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"x" * 10, "more_body": False}

        async def send(m):
            sent.append(m)

        scope = {"type": "http", "path": path, "method": "POST",
                 "headers": [(b"host", b"127.0.0.1:8765")]}
        await g(scope, receive, send)
        return sent[0]["status"]

    async def main():
        nonlocal gate
        gate = asyncio.Event()
        heavy = [asyncio.create_task(request("/c/kick/api/encode")) for _ in range(20)]
        await asyncio.sleep(0.05)
        light = await asyncio.wait_for(request("/api/model"), 1.0)
        assert reading == 2
        gate.set()
        return light, await asyncio.gather(*heavy)

    light, heavy = asyncio.run(main())
    assert light == 200 and heavy == [200] * 20 and most == 2
    for path in ("/api/encode", "/c/snare/api/render", "/api/export/sfz", "/api/voices",
                 "/api/kit/export", "/api/kit/groove", "/api/sources/3/recipe",
                 "/c/kick/api/corpus/12/recipe", "/api/shape", "/api/match"):
        assert guard.HEAVY_ROUTES.search(path), path
    for path in ("/api/model", "/api/sources", "/api/corpus", "/api/kit", "/api/original/ab",
                 "/api/weights", "/api/describe", "/", "/static/app.js"):
        assert not guard.HEAVY_ROUTES.search(path), path
