"""The project's benchmarks: drumlayer against a reference measured in the same process.

    python -m drumlayer.bench [corpus] [features] [selection] [train] [evaluate] [studio]
        [--out=bench_results] [--workdir=runs/snare_paper]

Each benchmark prints a table and writes JSON (machine, medians, ratios) to --out. Timings are
medians over repeats after a warm-up; these machines are shared and noisy, so compare ratios
against the reference of the same run rather than absolute numbers across runs.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

BENCHMARKS = {}


def benchmark(fn):
    BENCHMARKS[fn.__name__.removeprefix("bench_")] = fn
    return fn


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MB. For this process, VmHWM: ru_maxrss survives exec, so a
    child spawned by a large parent would report the parent's peak."""
    if who == resource.RUSAGE_SELF:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
    return resource.getrusage(who).ru_maxrss / 1024.0  # kB on Linux


def _in_child(target, *args):
    """Run target(*args, queue) in a fresh process -> (its result, its peak RSS in MB)."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_main, args=(target, args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def _child_main(target, args, q):
    t = time.perf_counter()
    out = target(*args)
    q.put({"result": out, "seconds": time.perf_counter() - t, "peak_rss_mb": _peak_rss_mb(),
           "workers_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN)})


def _build_corpus(roots, out, workers):
    from drumlayer import corpus

    meta = corpus.build(roots, out, corpus.CorpusOptions(category="all", workers=workers),
                        progress=False)
    return {"clips": meta["clips"], "candidates": meta["candidates"]}


def _serial_decode(roots):
    """The reference: the same decoding (kits.load_candidate) in one process, in a plain loop,
    with no deduplication, grouping or writing."""
    from drumlayer import audio, kits

    cands = kits.discover(roots)[0]
    n = 0
    for c in cands:
        try:
            kits.load_candidate(c, max_duration=30.0)
            n += 1
        except audio.AudioError:
            continue
    return {"candidates": len(cands), "clips": n}


def generate_folder(folder: str, n: int, seed: int = 0) -> None:
    """n short drum-like WAV files (44.1 kHz, 16 bit, 0.3-0.8 s) in 100 kit folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = os.path.join(folder, f"kit{i % 100:03d}")
        os.makedirs(d, exist_ok=True)
        rate, secs = 44100, rng.uniform(0.3, 0.8)
        t = np.arange(int(rate * secs)) / rate
        phase = rng.uniform(0, 2 * np.pi)
        x = np.sin(2 * np.pi * rng.uniform(150, 300) * t + phase)
        x *= np.exp(-t / rng.uniform(0.03, 0.2))
        x += rng.uniform(0.2, 1) * rng.standard_normal(t.size) * np.exp(-t / rng.uniform(.02, .2))
        sf.write(os.path.join(d, f"snare_{i:06d}.wav"), 0.9 * x / np.abs(x).max(), rate,
                 subtype="PCM_16")


@benchmark
def bench_corpus(args) -> dict:
    """Corpus build: files/s and peak memory, open kits and a generated folder, vs naive decode."""
    from drumlayer import corpus

    rows = []
    tmp = tempfile.mkdtemp(prefix="drumlayer-bench-")
    try:
        sets = []
        roots = corpus.default_roots()
        if roots:
            sets.append(("open kits", roots))
        else:
            print("(open kits not found: run launch/fetch_open_kits.sh to include them)")
        for n in (1000, args.files):
            folder = os.path.join(tmp, f"gen{n}")
            t = time.perf_counter()
            generate_folder(folder, n)
            print(f"generated {n} files in {time.perf_counter() - t:.1f} s")
            sets.append((f"generated {n}", [folder]))
        for name, roots in sets:
            out = os.path.join(tmp, "out")
            shutil.rmtree(out, ignore_errors=True)
            r = _in_child(_build_corpus, roots, out, 0)
            ref = _in_child(_serial_decode, roots)
            rows.append({
                "set": name, "candidates": r["result"]["candidates"],
                "clips": r["result"]["clips"], "seconds": round(r["seconds"], 2),
                "files_per_s": round(r["result"]["candidates"] / r["seconds"], 1),
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
                "workers_peak_rss_mb": round(r["workers_peak_rss_mb"], 1),
                "reference_files_per_s": round(ref["result"]["candidates"] / ref["seconds"], 1),
            })
            rows[-1]["speedup_vs_reference"] = round(
                rows[-1]["files_per_s"] / rows[-1]["reference_files_per_s"], 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    header = ("set", "candidates", "clips", "seconds", "files_per_s", "peak_rss_mb",
              "workers_peak_rss_mb", "reference_files_per_s", "speedup_vs_reference")
    _print_table(header, rows)
    return {"rows": rows, "note": "reference: the same decoding in one process, in a loop, "
                                  "without dedup, grouping or writing"}


def _clips(n: int, seed: int = 0) -> np.ndarray:
    from drumlayer import synth

    return synth.procedural_snares(n, 22050, seed=seed)


@benchmark
def bench_features(args) -> dict:
    """features (JAX) vs librosa computing the same RMS-weighted spectrum, and vs scipy.fft's
    rfft over the same windowed frames with all cores (the FFT bound), batches of 2,048 clips."""
    import jax
    import librosa
    import scipy.fft

    from drumlayer import spectral

    n = args.batch
    clips = _clips(n)
    x = jax.device_put(clips)

    def ours():
        spectral.features(x).block_until_ready()

    # Both references run in chunks of 16 clips: their fastest (whole-batch frames are 1.5 GB).
    def lib():
        out = []
        for i in range(0, n, 16):
            y = clips[i : i + 16]
            mag = np.abs(librosa.stft(y, n_fft=4096, hop_length=512, center=True,
                                      pad_mode="constant"))[:, :-1]
            rms = librosa.feature.rms(y=y, frame_length=4096, hop_length=512, center=True,
                                      pad_mode="constant")
            out.append((mag * rms).sum(-1) / rms.sum(-1))
        return np.concatenate(out)

    idx = np.arange(44)[:, None] * 512 + np.arange(4096)[None]
    window = spectral.hann(4096)

    def fft_bound():
        for i in range(0, n, 16):
            xp = np.pad(clips[i : i + 16], ((0, 0), (2048, 2048)))
            scipy.fft.rfft(xp[:, idx] * window, axis=-1, workers=-1)

    t_ours = median_time(ours, repeats=5)
    t_lib = median_time(lib, repeats=3)
    t_fft = median_time(fft_bound, repeats=3)
    got, ref = np.asarray(spectral.weighted_spectrum(x)), lib()
    err = float(np.max(np.abs(got - ref) / np.abs(ref).max(axis=1, keepdims=True)))
    rows = [{"what": "drumlayer spectral.features (spectrum + log-attack)", "clips_per_s":
             round(n / t_ours)},
            {"what": "librosa stft + rms, same weighted spectrum", "clips_per_s": round(n / t_lib)},
            {"what": "scipy.fft rfft of the same frames, all cores", "clips_per_s":
             round(n / t_fft)}]
    for r in rows:
        r["vs_librosa"] = round(r["clips_per_s"] / rows[1]["clips_per_s"], 2)
    _print_table(("what", "clips_per_s", "vs_librosa"), rows)
    print(f"max relative difference to librosa: {err:.1e}; backend {jax.default_backend()}")
    return {"rows": rows, "batch": n, "backend": jax.default_backend(),
            "max_rel_diff_vs_librosa": err}


def _clustered_rows(n: int, d: int, seed: int) -> np.ndarray:
    """[n, d] float32 unit rows around 400 spectra-like centres, built in place."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((400, d))).astype(np.float32)
    X = np.empty((n, d), np.float32)
    for j in range(0, n, 10000):
        m = min(10000, n - j)
        X[j : j + m] = centres[rng.integers(0, 400, m)]
        X[j : j + m] *= rng.uniform(0.5, 1.5, (m, d)).astype(np.float32)
        X[j : j + m] /= np.linalg.norm(X[j : j + m], axis=1, keepdims=True)
    return X


def _select(n: int, d: int, k: int, beta: float, seed: int):
    """Frank-Wolfe on clustered synthetic spectra-like points; median of 3 runs for small n
    (after a warm-up that compiles), one run for large n."""
    from drumlayer import selection

    X = _clustered_rows(n, d, seed)
    repeats = 3 if n <= 20000 else 1
    times = []
    for _ in range(repeats + (1 if repeats > 1 else 0)):
        t = time.perf_counter()
        res = selection.frank_wolfe(X.T, k, beta=beta)
        times.append(time.perf_counter() - t)
    times = times[1:] if repeats > 1 else times
    return {"seconds": statistics.median(times), "picked": len(res.indices),
            "iterations": res.iterations, "indices": res.indices.tolist()}


def _select_reference(n: int, d: int, k: int, beta: float, seed: int):
    """The reference: dense numpy Frank-Wolfe keeping K Z (n x n) by rank-one updates."""
    X = _clustered_rows(n, d, seed).astype(np.float64)
    t = time.perf_counter()
    K = X @ X.T
    KZ = np.zeros((n, n))
    chosen: list[int] = []
    it = 0
    tkz = tzkz = 0.0
    while len(chosen) < k and it < 20 * k:
        R = K - KZ
        i = int(np.argmax(np.einsum("ij,ij->i", R, R)))
        s = beta * R[i] / np.linalg.norm(R[i])
        ks = K @ s
        tr_zks = float(s @ KZ[i])  # tr(Z^T K S) = s . (K Z)_i  (K symmetric)
        tr_sks = K[i, i] * float(s @ s)
        num = ks[i] - tkz - tr_zks + tzkz
        den = tr_sks - 2 * tr_zks + tzkz
        g = float(np.clip(num / den, 0, 1))
        KZ = (1 - g) * KZ + g * np.outer(K[:, i], s)
        tkz = (1 - g) * tkz + g * ks[i]
        tzkz = (1 - g) ** 2 * tzkz + 2 * (1 - g) * g * tr_zks + g**2 * tr_sks
        if i not in chosen:
            chosen.append(i)
        it += 1
    return {"seconds": time.perf_counter() - t, "picked": len(chosen), "iterations": it,
            "indices": chosen}


@benchmark
def bench_selection(args) -> dict:
    """Frank-Wolfe, k=200: seconds and peak memory for n=2,500 and n=100,000 (d=2,049), vs a
    dense numpy implementation that keeps K Z by rank-one updates (n=2,500)."""
    rows = []
    for n in (2500, args.select_n):
        r = _in_child(_select, n, 2049, 200, 1000.0, 0)
        rows.append({"n": n, "impl": "drumlayer (jit, row norms)",
                     "seconds": round(r["result"]["seconds"], 2),
                     "iterations": r["result"]["iterations"], "picked": r["result"]["picked"],
                     "peak_rss_mb": round(r["peak_rss_mb"])})
        if n == 2500:
            ref = _in_child(_select_reference, n, 2049, 200, 1000.0, 0)
            same = ref["result"]["indices"] == r["result"]["indices"]
            rows.append({"n": n, "impl": "numpy dense K Z (reference)",
                         "seconds": round(ref["result"]["seconds"], 2),
                         "iterations": ref["result"]["iterations"],
                         "picked": ref["result"]["picked"], "peak_rss_mb": round(
                             ref["peak_rss_mb"])})
            rows[-2]["same_picks_as_reference"] = same
            rows[-1]["same_picks_as_reference"] = same
    for r in rows:
        r.setdefault("same_picks_as_reference", "")
    _print_table(("n", "impl", "seconds", "iterations", "picked", "peak_rss_mb",
                  "same_picks_as_reference"), rows)
    return {"rows": rows, "k": 200, "beta": 1000.0, "d": 2049}


@benchmark
def bench_train(args) -> dict:
    """Training step throughput at the paper's scale (200 sources, batch 64, D = 2,049) on the
    devices here, and the paper-scale recipe's estimated wall time; reference: the forward
    features of the same batch alone."""
    import jax

    from drumlayer import model as model_lib
    from drumlayer import spectral, train

    k, batch = 200, 64
    sources = _clips(k, seed=1)
    src_f = np.asarray(spectral.features(sources))
    rng = np.random.default_rng(0)
    targets = np.asarray(spectral.features(rng.dirichlet(np.ones(k) * 0.1, 256).astype(
        np.float32) @ sources))
    mean, std = train.standardisation(targets)
    tc = train.TrainConfig(batch=batch)
    mesh = train.make_mesh()
    m = model_lib.LayeringVAE(sources=k)
    consts = tuple(train.put(mesh, a, train.P()) for a in (sources, mean, std))
    rows = []
    for phase, feats in (("train", targets), ("pretrain", src_f)):
        step, _ = train.make_steps(m, mesh, phase, tc.loss)
        idx = np.arange(batch) % len(feats)
        b = train.global_batch(mesh, feats, idx, tc.latent, (0,))
        holder = {"state": train.create_state(m, targets.shape[1],
                                              train.make_optimizer(1e-3, 1.0), 0)}

        def run(step=step, b=b, holder=holder):
            holder["state"], met = step(holder["state"], *b, consts)
            jax.block_until_ready(met)

        t = median_time(run, repeats=10, warmup=2)
        rows.append({"what": f"{phase} step (batch {batch})", "seconds": round(t, 4),
                     "examples_per_s": round(batch / t, 1)})
    x = jax.device_put(targets[:batch])
    t_feat = median_time(lambda: spectral.features(x).block_until_ready(), repeats=10)
    rows.append({"what": f"reference: forward features of {batch} clips",
                 "seconds": round(t_feat, 4), "examples_per_s": round(batch / t_feat, 1)})
    n_targets, epochs, pre_epochs = 2000, 150, 50
    steps = epochs * -(-n_targets // batch)
    estimate = steps * rows[0]["seconds"] + pre_epochs * -(-k // batch) * rows[1]["seconds"]
    _print_table(("what", "seconds", "examples_per_s"), rows)
    print(f"paper-scale recipe ({k} sources, {n_targets} targets, {pre_epochs} + {epochs} "
          f"epochs): about {estimate / 60:.1f} min of steps on {jax.device_count()} "
          f"{jax.default_backend()} device(s)")
    return {"rows": rows, "devices": jax.device_count(), "backend": jax.default_backend(),
            "paper_recipe_minutes_estimate": round(estimate / 60, 1)}


def _evaluate_cold(workdir, out):
    """The whole evaluation, as the main job runs it (compilation included), into out/."""
    from drumlayer import evaluate

    res = evaluate.run(workdir)
    evaluate.write(res, out)
    return {"seconds": res["seconds"], "pairs": len(res["interpolation"]["pairs"]),
            "points": len(res["interpolation"]["alpha"]), "sources": res["bundle"].k}


def _interpolation_per_pair(workdir, pairs):
    """Reference: the interpolation one pair at a time (decode, mix, describe per pair), warm."""
    import jax.numpy as jnp

    from drumlayer import evaluate, metrics
    from drumlayer import model as model_lib

    b = evaluate.Bundle.load(workdir)
    ec = evaluate.EvalConfig.from_config(b.config)
    z = evaluate.encode(b, evaluate.load_test(workdir).features)
    pp = evaluate.choose_pairs(len(z), ec.pairs, ec.seed)
    alpha = np.linspace(0, 1, ec.points, dtype=np.float32)[:, None]
    src = jnp.asarray(b.sources)

    def one(a, c):
        w = b.decode((1 - alpha) * z[a] + alpha * z[c])
        return [np.asarray(x) for x in metrics.descriptors(model_lib.mix(w, src))]

    one(*pp[0])  # compile
    t = time.perf_counter()
    for a, c in pp[:pairs]:
        one(a, c)
    per_pair = (time.perf_counter() - t) / pairs
    evaluate.interpolation(b, z, ec)  # compile
    t = time.perf_counter()
    evaluate.interpolation(b, z, ec)
    batched = time.perf_counter() - t
    return {"per_pair_seconds": per_pair, "pairs": len(pp), "batched_warm": batched}


@benchmark
def bench_evaluate(args) -> dict:
    """The batch evaluation on a trained (paper-scale) workdir: wall time of the whole stage in a
    fresh process (compilation, figures and WAVs included); reference: the interpolation done
    one pair at a time in a Python loop, against the batched version, both warm."""
    from drumlayer.bundle import Bundle

    wd = args.workdir
    try:
        Bundle.load(wd)
    except FileNotFoundError as e:
        raise SystemExit(f"bench evaluate: {e}\n(train it first: python -m drumlayer.main "
                         f"--config=configs/snare_paper.py --workdir={wd})") from e
    with tempfile.TemporaryDirectory() as tmp:
        cold = _in_child(_evaluate_cold, wd, tmp)
    ref = _in_child(_interpolation_per_pair, wd, 20)["result"]
    loop_total = ref["per_pair_seconds"] * ref["pairs"]
    r = cold["result"]
    rows = [{"what": f"whole evaluation, cold process ({r['sources']} sources, {r['pairs']} "
                     f"pairs x {r['points']} points)", "seconds": round(cold["seconds"], 1)},
            *({"what": f"  of which {k}", "seconds": v} for k, v in r["seconds"].items()),
            {"what": "interpolation, batched (warm)", "seconds": round(ref["batched_warm"], 2)},
            {"what": "reference: interpolation pair by pair (warm, extrapolated from 20)",
             "seconds": round(loop_total, 2)}]
    _print_table(("what", "seconds"), rows)
    print(f"batched / per-pair speed-up: {loop_total / ref['batched_warm']:.1f}x; target: whole "
          f"evaluation < 180 s: {'met' if cold['seconds'] < 180 else 'NOT met'}; peak memory "
          f"{cold['peak_rss_mb']:.0f} MB")
    return {"rows": rows, "workdir": os.path.abspath(wd), "seconds": cold["seconds"],
            "peak_rss_mb": cold["peak_rss_mb"],
            "speedup_vs_per_pair": loop_total / ref["batched_warm"]}


def _browser_latency(url: str, moves: int) -> dict:
    """Drive the studio page in headless Chromium: `moves` slider input events, and the page's
    own decode + edit + mix timed in a loop."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
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


@benchmark
def bench_studio(args) -> dict:
    """The studio on a trained workdir: decode + mix of one recipe on the server (numpy, the
    /api/render arithmetic) against the jit-compiled JAX model in the same process; and in
    headless Chromium the latency from a slider's input event to the frame after the weights,
    chart and playable mix are updated, with the page's own decode + mix."""
    import subprocess

    import jax
    import jax.numpy as jnp

    from drumlayer import model as model_lib
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

    t_np = median_time(server_mix, repeats=200, warmup=5)
    t_jax = median_time(jax_mix, repeats=200, warmup=5)
    proc = subprocess.Popen([sys.executable, "-m", "drumlayer.studio",
                             f"--workdir={args.workdir}", "--port=0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in proc.stdout:
            if "open http" in line:
                url = line.split("open ")[1].split()[0]
                break
        if url is None:
            raise SystemExit("bench studio: the studio did not start")
        b = _browser_latency(url, args.moves)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
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
    _print_table(("what", "median_ms", "p95_ms"), rows)
    ok_server = t_np * 1e3 < 5 and np.median(pm) < 5
    ok_page = np.percentile(lat, 95) < 50
    print(f"targets: decode + mix < 5 ms: {'met' if ok_server else 'NOT met'}; slider p95 < "
          f"50 ms: {'met' if ok_page else 'NOT met'}")
    return {"rows": rows, "workdir": os.path.abspath(args.workdir), "sources": st.bundle.k,
            "slider_latency_ms": {"median": float(np.median(lat)),
                                  "p95": float(np.percentile(lat, 95)), "n": len(lat)},
            "server_decode_mix_ms": t_np * 1e3, "jax_decode_mix_ms": t_jax * 1e3}


def _print_table(header, rows) -> None:
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[h]).ljust(w) for h, w in zip(header, widths, strict=True)))


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m drumlayer.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", default=[], help=f"any of {sorted(BENCHMARKS)}")
    p.add_argument("--files", type=int, default=20000, help="generated folder size (corpus)")
    p.add_argument("--batch", type=int, default=2048, help="clips per batch (features)")
    p.add_argument("--select-n", type=int, default=100000, help="large n (selection)")
    p.add_argument("--out", default="bench_results", help="folder for the JSON results")
    p.add_argument("--workdir", default="runs/snare_paper",
                   help="a trained workdir (evaluate; studio)")
    p.add_argument("--moves", type=int, default=300, help="slider input events (studio)")
    args = p.parse_args(argv)
    names = args.names or sorted(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        print(f"== {name}")
        result = {"benchmark": name, "machine": machine(), **BENCHMARKS[name](args)}
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
