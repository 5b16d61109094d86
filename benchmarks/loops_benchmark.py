"""Loops measured against ground truth (`python -m benchmarks loops --kit_workdir=runs/kit`).

Loops are rendered here with known hits (drumlayer.loops.groundtruth): the built-in and extra
patterns at several tempi, with swing and human timing, played by one-shots of the kit
corpus's test split (kits the training never saw); and every pattern of Hydrogen's demo songs
at its song's tempo, played by one-shots held out of the run (the out-of-library set). Scored:
onset F1 within 10 and 25 ms (librosa's onset detector on the same loops as the reference),
F1 per category within 25 ms (kick, snare, hat = closed + open, the others together),
velocity correlation, tempo within 1% and 0.2% (librosa's tempo as the reference), the
rebuilt loop's log-spectral and per-hit MFCC distances against drum replacement by the nearest
single source with the true transcription and against the pads' centres, and the time to
analyse a 10 s loop once the models are loaded. Real loops (lmms-common's beats/) give the
rebuilt distances alone.
"""

from __future__ import annotations

import glob
import os
import time
import xml.etree.ElementTree as ET

import numpy as np

from benchmarks import harness

HAT = ("closed-hat", "open-hat")


def group(c: str) -> str:
    return "hat" if c in HAT else c if c in ("kick", "snare") else "others"


def demo_patterns() -> list[tuple[str, dict, float, int]]:
    """[(name, {category: [(step of 48 a bar... as seconds fraction, velocity)]}, tempo,
    ticks a bar)] of the Hydrogen demo songs' patterns (their instruments named by category)."""
    from drumlayer.data import categories, corpus

    roots = [os.path.join(corpus.FETCH_DIR, "usr/share/hydrogen/data/demo_songs"),
             "/usr/share/hydrogen/data/demo_songs"]
    out = []
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "*.h2song"))):
            song = ET.parse(path).getroot()
            tempo = float(song.findtext("bpm") or 120)
            names = {i.findtext("id"): i.findtext("name") or ""
                     for i in song.findall(".//instrumentList/instrument")}
            for p in song.findall(".//patternList/pattern"):
                size = int(p.findtext("size") or 192)
                notes: dict = {}
                for n in p.findall(".//note"):
                    c = categories.classify(names.get(n.findtext("instrument"), ""))
                    if c == "other":
                        continue
                    vel = int(round(127 * float(n.findtext("velocity") or 0.8)))
                    notes.setdefault(c, []).append((int(n.findtext("position")), max(vel, 1)))
                if sum(len(v) for v in notes.values()) >= 4:
                    out.append((f"{os.path.basename(path)}:{p.findtext('name')}", notes,
                                tempo, size))
        if out:
            break
    return out


def demo_hits(notes: dict, tempo: float, size: int, bars: int) -> list:
    """[(onset s, category, velocity)] of a Hydrogen pattern (48 ticks a beat), repeated."""
    tick = 60.0 / tempo / 48
    length = size * tick
    return sorted((b * length + pos * tick, c, v) for b in range(bars)
                  for c, ns in notes.items() for pos, v in ns)


def one_shots(pool: dict, cats, rng, rate: int, each: int = 2) -> dict:
    """{category: [`each` one-shots at rate]} drawn from pool {category: clips [N, S]}."""
    from drumlayer.data import audio

    out = {}
    for c in sorted(cats):  # (a set: its order changes from process to process)
        clips = pool.get(c)
        if clips is None or not len(clips):
            continue
        pick = rng.choice(len(clips), size=min(each, len(clips)), replace=False)
        out[c] = [audio.resample(np.asarray(clips[i], np.float64), audio.SAMPLE_RATE, rate)
                  for i in pick]
    return out


def score(found, truth, onsets_s, loop_s) -> dict:
    """Onset F1s, per-group F1, matched velocity pairs of one loop."""
    from drumlayer.loops import groundtruth as gt

    true_on = gt.onsets(truth)
    out = {"f1_10": gt.f1(sorted(set(onsets_s)), true_on, 0.010),
           "f1_25": gt.f1(sorted(set(onsets_s)), true_on, 0.025), "groups": {}, "pairs": []}
    for g in ("kick", "snare", "hat", "others"):
        f = [h.onset_s for h in found if group(h.category) == g]
        t = [t for t, c, _ in truth if group(c) == g]
        if t or f:
            out["groups"][g] = gt.f1(f, t, 0.025)
    for t, c, v in truth:
        near = [h for h in found if h.category == c and abs(h.onset_s - t) <= 0.025]
        if near:
            out["pairs"].append((v, min(near, key=lambda h: abs(h.onset_s - t)).velocity))
    return out


def librosa_reference(x: np.ndarray, rate: int, truth, length_s: float) -> dict:
    import librosa

    from drumlayer.loops import groundtruth as gt

    on = librosa.onset.onset_detect(y=x.astype(np.float32), sr=rate, units="time")
    bpm = float(np.atleast_1d(librosa.feature.tempo(y=x.astype(np.float32), sr=rate))[0])
    true_on = gt.onsets(truth)
    return {"f1_10": gt.f1(list(on), true_on, 0.010), "f1_25": gt.f1(list(on), true_on, 0.025),
            "tempo": bpm}


def nearest_source_pads(kit, x22, truth) -> dict:
    """Baseline (a): each category's single source nearest its true hits (mean windowed
    log-mel distance), as a pad of one layer."""
    from drumlayer.loops import rebuild

    onsets_all = [t for t, _, _ in truth]
    wins = dict(zip(onsets_all, rebuild.windows(onsets_all, len(x22) / 22050), strict=True))
    pads = {}
    for c in {c for _, c, _ in truth if c in kit.studios}:
        st = kit.studios[c]
        own = [wins[t] for t, cc, _ in truth if cc == c]
        targets = [(rebuild.cut(x22, a, b), b - a) for a, b in own]
        d = [np.mean([rebuild.window_distance(s, t, n) for t, n in targets])
             for s in st.bundle.sources]
        j = int(np.argmin(d))
        pads[c] = {"layers": [(1, 127)], "audio": st.bundle.full_sources[j][None, None],
                   "sample_rate": st.bundle.full_rate}
    return pads


@harness.benchmark
def bench_loops(args) -> dict:
    from drumlayer.data import audio
    from drumlayer.data.dataset import OUTSIDE, Dataset
    from drumlayer.loops import analyze, rebuild
    from drumlayer.loops import groundtruth as gt
    from drumlayer.loops import transcribe as tr
    from drumlayer.workdir import Workdir

    kit = analyze.LoopKit.open(args.kit_workdir)
    ds = Dataset(Workdir(args.kit_workdir).corpus)
    split = np.array([r["split"] for r in ds.rows])
    cat = np.array([r["category"] for r in ds.rows])
    pools = {s: {c: ds.audio(np.flatnonzero((split == s) & (cat == c)))
                 for c in set(cat) if np.any((split == s) & (cat == c))}
             for s in ("test", OUTSIDE)}
    rng = np.random.default_rng(0)
    rate = 44100
    loops = []
    tempi = (84.0, 97.0, 112.0, 126.0, 140.0, 91.0)
    for i, (name, pattern) in enumerate(gt.PATTERNS.items()):
        for j, tempo in enumerate(tempi):
            swing = 0.2 if (i + j) % 3 == 0 else 0.0
            hits = gt.hits(pattern, tempo, 2, swing, 0.003, seed=i * 10 + j)
            loops.append((f"{name} {tempo:g}", "test", hits, 2 * 240.0 / tempo, tempo))
    for name, notes, tempo, size in demo_patterns():
        bars = 2
        hits = demo_hits(notes, tempo, size, bars)
        loops.append((name, OUTSIDE, hits, bars * size * 60.0 / tempo / 48, tempo * size / 192))
    rows, pairs, pairs_decomposition = [], [], []
    for name, pool, truth, length_s, tempo in loops:
        shots = one_shots(pools[pool], {c for _, c, _ in truth}, rng, rate)
        truth = [h for h in truth if h[1] in shots]
        if len(truth) < 2:
            continue
        x = gt.render(truth, gt.voices(shots), length_s, rate)
        x22 = audio.resample(x, rate, tr.RATE)
        x22 = rebuild.peak_one(x22)
        t0 = time.perf_counter()
        found, grid, _ = tr.transcribe(x22, kit.templates, categoriser=kit.categoriser)
        seconds = time.perf_counter() - t0
        s = score(found, truth, [h.onset_s for h in found], length_s)
        pairs += s.pop("pairs")
        alone = score(tr.transcribe(x22, kit.templates)[0], truth, [], length_s)
        pairs_decomposition += alone["pairs"]
        s["groups_decomposition"] = alone["groups"]
        ref = librosa_reference(x22, tr.RATE, truth, length_s)
        rows.append({"loop": name, "set": pool, "tempo": tempo, "found_tempo": grid.tempo_bpm,
                     "librosa_tempo": ref["tempo"], "seconds": seconds, **s,
                     "librosa_f1_10": ref["f1_10"], "librosa_f1_25": ref["f1_25"],
                     "hits": len(truth)})
        print(f"{name:40s} F1@10 {s['f1_10']:.3f} (librosa {ref['f1_10']:.3f}) tempo "
              f"{grid.tempo_bpm:.2f}/{tempo:.2f} {s['groups']}", flush=True)
    out = {"loops": len(rows), "rows": rows}

    def tempo_ok(key, tol):
        return float(np.mean([abs(r[key] / r["tempo"] - 1) <= tol for r in rows]))

    out["summary"] = {
        "onset_f1_10": float(np.mean([r["f1_10"] for r in rows])),
        "onset_f1_25": float(np.mean([r["f1_25"] for r in rows])),
        "librosa_onset_f1_10": float(np.mean([r["librosa_f1_10"] for r in rows])),
        "librosa_onset_f1_25": float(np.mean([r["librosa_f1_25"] for r in rows])),
        "tempo_within_1pct": tempo_ok("found_tempo", 0.01),
        "tempo_within_0.2pct": tempo_ok("found_tempo", 0.002),
        "librosa_tempo_within_1pct": tempo_ok("librosa_tempo", 0.01),
        "librosa_tempo_within_0.2pct": tempo_ok("librosa_tempo", 0.002),
        "velocity_correlation": float(np.corrcoef(np.array(pairs).T)[0, 1]) if pairs else None,
        "category_f1": {g: float(np.mean([r["groups"][g] for r in rows if g in r["groups"]]))
                        for g in ("kick", "snare", "hat", "others")},
        # the alternative: the decomposition over the templates alone says which drums
        "category_f1_decomposition": {
            g: float(np.mean([r["groups_decomposition"][g] for r in rows
                              if g in r["groups_decomposition"]]))
            for g in ("kick", "snare", "hat", "others")},
        "velocity_correlation_decomposition": float(np.corrcoef(
            np.array(pairs_decomposition).T)[0, 1]) if pairs_decomposition else None,
        "transcribe_seconds_median": float(np.median([r["seconds"] for r in rows]))}
    # the rebuilt loop, against the baselines, on the first loops of each set
    rebuilt = []
    for name, pool, truth, length_s, _ in [lp for lp in loops if lp[1] == "test"][
            ::max(1, len(loops) // 12)][:args.rebuild_loops]:
        shots = one_shots(pools[pool], {c for _, c, _ in truth}, np.random.default_rng(1), rate)
        truth = [h for h in truth if h[1] in shots and h[1] in kit.studios]
        x = gt.render(truth, gt.voices(shots), length_s, rate)
        x22 = audio.resample(x, rate, tr.RATE)
        x22 = rebuild.peak_one(x22)
        res = analyze.analyse(kit, x, rate, "bench")
        centre = analyze.analyse(kit, x, rate, "bench", refine=False)
        true_hits = [tr.Hit(t, c, v, 1.0) for t, c, v in truth]
        pads = nearest_source_pads(kit, x22, truth)
        near = rebuild.rebuild(true_hits, pads, rebuild.levels(x, rate, true_hits), len(x), rate)
        near22 = audio.resample(near, rate, tr.RATE)
        d_near = rebuild.distances(rebuild.peak_one(near22), x22,
                                   [t for t, _, _ in truth])
        rebuilt.append({"loop": name, "rebuilt": res["distances"],
                        "centre": centre["distances"], "nearest_source_true_hits": d_near,
                        "seconds": res["seconds"]})
        print(f"rebuilt {name:30s} {res['distances']} centre {centre['distances']} nearest "
              f"{d_near} ({res['seconds']:.1f} s)", flush=True)
    out["rebuilt"] = rebuilt
    if rebuilt:
        med = {k: {m: float(np.median([r[k][m] for r in rebuilt])) for m in ("lsd_db", "mfcc")}
               for k in ("rebuilt", "centre", "nearest_source_true_hits")}
        out["summary"]["rebuilt_median"] = med
    # a 10 s loop (4 bars at 96 BPM), the models loaded and compiled
    truth = gt.hits(gt.PATTERNS["funk"], 96.0, 4, 0.1, 0.003, seed=7)
    shots = one_shots(pools["test"], {c for _, c, _ in truth}, np.random.default_rng(2), rate)
    x = gt.render([h for h in truth if h[1] in shots], gt.voices(shots), 10.0, rate)
    t0 = time.perf_counter()
    analyze.analyse(kit, x, rate, "ten")
    out["summary"]["ten_second_loop_seconds"] = time.perf_counter() - t0
    # real loops: the rebuilt distances alone
    real = []
    from drumlayer.data import corpus

    for path in sorted(glob.glob(os.path.join(corpus.FETCH_DIR,
                                              "usr/share/lmms/samples/beats/*.ogg"))):
        rec, r = audio.read_audio(path, max_seconds=30.0)
        try:
            res = analyze.analyse(kit, rec[:, 0], r, os.path.basename(path))
            centre = analyze.analyse(kit, rec[:, 0], r, "c", refine=False)
        except analyze.LoopRejected as e:
            real.append({"loop": os.path.basename(path), "rejected": str(e)})
            continue
        real.append({"loop": os.path.basename(path), "tempo": res["grid"].tempo_bpm,
                     "hits": len(res["hits"]), "rebuilt": res["distances"],
                     "centre": centre["distances"]})
        print(f"real {os.path.basename(path)}: {real[-1]}", flush=True)
    out["real"] = real
    return out
