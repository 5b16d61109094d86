"""Write docs/results.md, docs/benchmarks.md and the other measured pages from the runs' own
output, so that every number there comes with the date, machine and command that made it.

    python docs/regenerate.py results runs/snare [runs/snare_paper ...]
    python docs/regenerate.py benchmarks [bench_results]
    python docs/regenerate.py seeds base=runs/s0,runs/s1,runs/s2 [other=...]
    python docs/regenerate.py shaping runs/s0 runs/s1 runs/s2
    python docs/regenerate.py loops [bench_results/loops.json]
    python docs/regenerate.py generation runs/s0 runs/s1 runs/s2 [bench_results/generation.json]

`shaping` refines both test sets of each trained workdir with the weights alone ('weights') and
with per-layer shaping ('shape', the default, and variants of it), and writes docs/shaping.md
(and docs/shaping.json).

`results` reads each workdir's run.json, eval/metrics.json, eval/report.md, train_summary.json
and metrics.jsonl, and draws docs/images/layering.png (the README's picture: a test clip of the
first workdir, refined) and one training curve per workdir. `benchmarks` reads the JSON that
`python -m benchmarks` writes. `loops` writes docs/loops.md from what `python -m benchmarks
loops` measured. `generation` writes docs/generation.md from the generated sounds' measures in
each workdir's eval/metrics.json (one workdir a seed), and the categories a kit's generated
sounds are heard as from `python -m benchmarks generation`'s JSON when given.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from drumlayer.data.dataset import OUTSIDE  # noqa: E402
from drumlayer.evaluation import report  # noqa: E402
from drumlayer.recipes.refine import FITS  # noqa: E402

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
METHODS = (("model", "VAE (the encoder's recipe)"),
           ("refined", "VAE + refined and shaped (the default)"),
           ("refined_latent", "VAE + refined latent"),
           ("matching_pursuit", "matching pursuit (<= 15 layers)"),
           ("nearest", "nearest single source"), ("nnls", "NNLS"))
MEASURES = (("log_spectral_distance_db", "LSD (dB)", "{:.2f}"),
            ("mfcc_distance", "MFCC distance", "{:.1f}"),
            ("centroid_error_hz", "centroid error (Hz)", "{:.0f}"),
            ("feature_mse", "feature MSE", "{:.2f}"),
            ("active_layers", "active layers", "{:.0f}"))


def _read(path: str, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def provenance(run: dict | None, fallback: str) -> str:
    """One line: date, machine, devices, command and wall time of a run (run.json)."""
    if not run:
        return f"(no run.json: {fallback})"
    devices = ", ".join(run.get("devices", []))
    return (f"{run['finished']}; {run.get('processor', '?')}, {run.get('cpus', '?')} CPUs, "
            f"{run.get('platform', '?')}; JAX {run.get('jax', '?')} on {devices}; "
            f"`{run['command']}`; {run['seconds'] / 60:.1f} min")


def reconstruction_table(metrics: dict) -> str:
    """Markdown: one row per method, the median of each measure over the test clips."""
    rec = metrics["reconstruction"]
    ms = metrics.get("reconstruction_ms_per_sound", {})
    head = ["method", *(label for _, label, _ in MEASURES), "ms a sound"]
    rows = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for key, label in METHODS:
        if key not in rec:
            continue
        cells = [fmt.format(rec[key][m]["median"]) for m, _, fmt in MEASURES]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {ms.get(key, float('nan')):.1f} |")
    return "\n".join(rows)


def claims_section(report: str) -> str:
    """The paper's claims table of eval/report.md, as the evaluation wrote it."""
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| claim")), None)
    if start is None:
        return ""
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def layering_figure(workdir: str, out: str) -> str:
    """A test clip of workdir (the one with the median LSD of four), its refined recipe's mix
    and the layers of that recipe (each as heard: shaped where the recipe shapes it) -> a PNG."""
    from drumlayer.evaluation.evaluate import load_test, recipe_mixes
    from drumlayer.features import measures, spectral
    from drumlayer.recipes import refine
    from drumlayer.recipes.bundle import Bundle

    b, test = Bundle.load(workdir), load_test(workdir)
    clips = np.asarray(test.audio[:4], np.float32)
    an = refine.Analyzer.from_bundle(b, refine.AnalyzeConfig())
    r = refine.refine_all(an, clips)
    weights = np.asarray(r.weights) * np.asarray(r.gain)[:, None]
    mixes = recipe_mixes(b, an, r)[0]
    lsd = measures.batch_distances(mixes, clips)["log_spectral_distance_db"]
    i = int(np.argsort(lsd)[len(lsd) // 2])
    shaped = {int(j) for j in refine.recipe_fields(r, i, an.variants)["shaping"]}
    spec = np.asarray(spectral.weighted_spectrum(np.stack([clips[i], mixes[i]])))
    hz = np.fft.rfftfreq(spectral.N_FFT, 1 / spectral.SAMPLE_RATE)[:spec.shape[1]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.2), height_ratios=(3, 2))
    for s, label, style in ((spec[0], f"target: {test.names[i]}", dict(color="0.6", lw=2.5)),
                            (spec[1], f"layered mix (LSD {lsd[i]:.1f} dB)", dict(color="k"))):
        top.semilogx(hz[1:], 20 * np.log10(np.maximum(s[1:], 1e-6)), label=label, **style)
    top.set(xlabel="Hz", ylabel="RMS-weighted spectrum (dB)", xlim=(40, 11025))
    top.legend(fontsize=8)
    order = np.argsort(weights[i])[::-1]
    order = order[weights[i][order] > 0.01 * weights[i].sum()]
    shares = weights[i][order] / weights[i].sum()
    bottom.barh(range(len(order)), shares, color="0.3")
    bottom.set_yticks(range(len(order)), [b.names[j][:40] + (" (shaped)" if j in shaped else "")
                                          for j in order], fontsize=7)
    bottom.invert_yaxis()
    bottom.set(xlabel="share of the mix", title=f"{len(order)} layers of {b.k} sources")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _how(run: dict | None) -> dict | None:
    """run.json's record without where the run wrote (its --workdir is not how it was made)."""
    if run and "command" in run:
        return {**run, "command": re.sub(r" --workdir=\S+", "", run["command"])}
    return run


def results(workdirs: list[str]) -> None:
    images = os.path.join(DOCS, "images")
    os.makedirs(images, exist_ok=True)
    parts = ["# Results", "",
             "Written by `python docs/regenerate.py results` from each run's own output "
             "(`run.json`, `eval/metrics.json`, `eval/report.md`, `train_summary.json`, "
             "`metrics.jsonl`); rerun it after a run to bring this page up to date. Medians over "
             "each run's test clips (kits never seen in training or selection); lower is better "
             "but for active layers. Every number of a run is in its `eval/metrics.json`, and "
             "the figures of the paper's Section 4 in its `eval/report.md`.", ""]
    for n, wd in enumerate(workdirs):
        metrics = _read(os.path.join(wd, "eval", "metrics.json"))
        if metrics is None:
            raise SystemExit(f"error: {wd}/eval/metrics.json is missing: run the main job there")
        name = os.path.basename(os.path.normpath(wd))
        run = _how(_read(os.path.join(wd, "run.json")))
        mtime = os.path.getmtime(os.path.join(wd, "eval", "metrics.json"))
        summary = _read(os.path.join(wd, "train_summary.json"), {})
        table = reconstruction_table(metrics)
        when = "evaluated " + str(np.datetime64(int(mtime), "s"))
        parts += [f"## `{name}`", "",
                  f"- **Run:** {provenance(run, when)}.",
                  f"- **Data:** {metrics['test_clips']} test clips, {metrics['sources']} sources.",
                  f"- **Training:** validation loss {summary.get('val_loss', float('nan')):.4g}, "
                  f"KL {summary.get('val_kl_bits', float('nan')):.0f} bits a sound, "
                  f"{summary.get('val_active_layers', float('nan')):.1f} active layers "
                  f"(the best by validation after epoch {summary.get('best_step')}, "
                  "pretraining's included).", "",
                  "### Reconstruction", "", table, ""]
        if OUTSIDE in metrics:
            o = metrics[OUTSIDE]
            parts += [f"### Out of library: {o['clips']} clips of {', '.join(o['holdout'])}",
                      "", "Never trained on, never sources, never augmented (`data.holdout`).",
                      "", reconstruction_table(o), ""]
        claims = claims_section(open(os.path.join(wd, "eval", "report.md")).read()) \
            if os.path.exists(os.path.join(wd, "eval", "report.md")) else ""
        if claims:
            parts += ["### The paper's claims, as this run's report states them", "", claims, ""]
        curve = report.fig_training(os.path.join(wd, "metrics.jsonl"),
                                   os.path.join(images, f"{name}_training.png"))
        if curve:
            parts += ["### Training", "", f"![training and validation loss of {name}]"
                      f"(images/{os.path.basename(curve)})", ""]
        if n == 0:
            layering_figure(wd, os.path.join(images, "layering.png"))
    with open(os.path.join(DOCS, "results.md"), "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {os.path.join(DOCS, 'results.md')}")


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif not isinstance(v, list):
            out.append((f"{prefix}{k}", v))
    return out


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


WORKDIR_FLAG = r" --(\w*workdir|out)=[^ `]+"  # where it ran: not written into the docs


def benchmarks(folder: str) -> None:
    files = sorted(glob.glob(os.path.join(folder, "*.json")))
    if not files:
        raise SystemExit(f"error: no benchmark JSON in {folder}: run python -m benchmarks first")
    parts = ["# Benchmarks", "",
             "Written by `python docs/regenerate.py benchmarks` from the JSON that "
             "`python -m benchmarks` writes (a benchmark not in that folder keeps its section, "
             "with its own date). Timings are medians after a warm-up; the machines "
             "are shared and noisy, so compare each ratio against the reference measured in the "
             "same run rather than absolute times across runs.", ""]
    out = os.path.join(DOCS, "benchmarks.md")
    fresh = {_read(path)["benchmark"]: path for path in files}
    kept = _sections(open(out).read()) if os.path.exists(out) else {}
    for name in dict.fromkeys([*kept, *fresh]):
        if name not in fresh:
            parts += [re.sub(WORKDIR_FLAG, "", line) for line in kept[name]
                      if not line.startswith("| workdir |")]
            if parts[-1] != "":
                parts.append("")
            continue
        r = _read(fresh[name])
        m = r.get("machine", {})
        skip = {"benchmark", "machine", "date", "command", "workdir"}  # not where it ran
        rows = [(k, v) for k, v in _flat(r) if k.split(".")[0] not in skip]
        parts += [f"## {r['benchmark']}", "",
                  f"{r.get('date', '?')}; {m.get('processor', '?')}, {m.get('cpus', '?')} CPUs, "
                  f"{m.get('platform', '?')}; JAX {m.get('jax', '?')} on "
                  f"{', '.join(m.get('devices', [])) or '?'}; "
                  f"`{re.sub(WORKDIR_FLAG, '', r.get('command', '?'))}`", "",
                  "| measure | value |", "|---|---:|"]
        parts += [f"| {k} | {_cell(v)} |" for k, v in rows]
        parts.append("")
        for table in r.values():
            if isinstance(table, list) and table and isinstance(table[0], dict):
                head = list(dict.fromkeys(k for row in table for k in row))
                parts += [f"| {' | '.join(head)} |", "|---" * len(head) + "|"]
                parts += [f"| {' | '.join(_cell(row.get(h, '')) for h in head)} |"
                          for row in table]
                parts.append("")
    with open(out, "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {out}: {', '.join(fresh)} from {folder}")


def _sections(text: str) -> dict[str, list[str]]:
    """A markdown file's sections by name: the lines from its '## name' to the next."""
    out: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            out[name] = []
        if name is not None:
            out[name].append(line)
    return out


def training_seconds(workdir: str) -> float:
    """Seconds of both training phases: the sum of metrics.jsonl's epoch times."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if '"kind": "epoch"' in line]
    return float(sum(r.get("seconds", 0.0) for r in rows))


def seed_table(runs: list[dict], split: str | None) -> list[str]:
    """Markdown: per method, the median over seeds of each run's median, and the range over
    seeds, on the test split (split None) or OUTSIDE."""
    recs = [(m if split is None else m[split])["reconstruction"] for m in runs]
    head = ["method", *(label for _, label, _ in MEASURES[:4])]
    rows = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for key, label in METHODS:
        if not all(key in r for r in recs):
            continue
        cells = []
        for m, _, f in MEASURES[:4]:
            v = np.array([r[key][m]["median"] for r in recs])
            cells.append(f"{f.format(np.median(v))} ({f.format(v.min())}-{f.format(v.max())})")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def seeds(groups: list[str]) -> None:
    """docs/generalization.md: configs run over several seeds (NAME=W1,W2,W3 each), on the test
    split and the out-of-library set, with training times. The groups given come first; the
    file's other sections (configs measured before, whose runs are not given) are kept after
    them as they were."""
    out = os.path.join(DOCS, "generalization.md")
    before = _sections(open(out).read()) if os.path.exists(out) else {}
    parts = ["# Generalization: configs over seeds", "",
             "Written by `python docs/regenerate.py seeds NAME=W1,W2,... ...` from the runs' own "
             "output. Each cell: the median over seeds of the run's median over its clips, and "
             "(in brackets) the lowest and highest of the seeds. Lower is better. The test split "
             "is kits of the corpus that training never saw (it changes with the seed); the out-"
             "of-library set is a library held out of every run (`data.holdout`).", ""]
    for group in groups:
        name, _, dirs = group.partition("=")
        wds = [d for d in dirs.split(",") if d]
        runs = [_read(os.path.join(w, "eval", "metrics.json")) for w in wds]
        if any(m is None for m in runs):
            raise SystemExit(f"error: {name}: a workdir has no eval/metrics.json")
        info = [_read(os.path.join(w, "run.json"), {}) for w in wds]
        info[0] = _how(info[0])
        secs = [training_seconds(w) for w in wds]
        wins = sum(not report.refined_losses(m["reconstruction"]) for m in runs)
        parts += [f"## {name[0].upper()}{name[1:]}", "",
                  f"- **Runs:** {len(wds)} seed{'s' if len(wds) > 1 else ''}; "
                  f"{provenance(info[0], 'unknown')}"
                  f" (the first); training {np.mean(secs) / 60:.1f} min on average "
                  f"({', '.join(f'{s / 60:.1f}' for s in secs)}).",
                  f"- **Refined recipes ahead of matching pursuit on all four medians** (test "
                  f"split): {wins} of {len(wds)} seeds.", "",
                  f"### Test split ({', '.join(str(m['test_clips']) for m in runs)} clips)", "",
                  *seed_table(runs, None), ""]
        if all(OUTSIDE in m for m in runs):
            o = runs[0][OUTSIDE]
            parts += [f"### Out of library ({o['clips']} clips of {', '.join(o['holdout'])})",
                      "", *seed_table(runs, OUTSIDE), ""]
    written = {line[3:].strip() for line in parts if line.startswith("## ")}
    for name, lines in before.items():
        if name not in written:
            parts += [*lines]
    with open(out, "w") as f:
        f.write("\n".join(parts).rstrip("\n") + "\n")
    print(f"wrote {out}")


SHAPING_ROWS = (  # key, label, mode and AnalyzeConfig overrides (None: measured otherwise)
    ("phase_randomised", "reference: the target's own STFT magnitudes with random phases", None,
     None),
    ("matching_pursuit", "matching pursuit (<= 15 layers)", None, None),
    ("weights", "refined weights (`--mode=weights`)", "weights", {}),
    ("shape_before", "shaping without the MFCC term and the gradient, two sweeps "
                     "(`mfcc_weight=0, tune_steps=0, shape_rounds=2`)", "shape",
     {"mfcc_weight": 0.0, "tune_steps": 0, "shape_rounds": 2}),
    ("shape_grid", "shaping from the grid only, one sweep (`tune_steps=0, shape_rounds=1`)",
     "shape", {"tune_steps": 0, "shape_rounds": 1}),
    ("shape", "refined weights and shaping, one sweep (`--mode=shape`, `shape_rounds=1`)", "shape",
     {"shape_rounds": 1}),
    ("shape_two_sweeps", "the same, two sweeps of swaps (`--mode=shape`, the default)",
     "shape", {"shape_rounds": 2}),
    ("shape_spectrogram", "the same, fitted to the spectrogram first (`--fit=spectrogram`: `"
     + ", ".join(f"{k}={v:g}" for k, v in FITS["spectrogram"].items()) + "`)", "shape",
     FITS["spectrogram"]))


def shaping_table(runs: list[dict], split: str) -> list[str]:
    """Markdown: per method, the mean over seeds of each run's median (each seed's in
    brackets), and the layers and time of the refinements."""
    rows = ["| method | LSD (dB) | MFCC distance | centroid error (Hz) | feature MSE | active / "
            "shaped layers (median) | ms a sound |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, label, mode, _ in SHAPING_ROWS:
        cells = []
        for m, _, f in MEASURES[:4]:
            v = [r[split][key][m] for r in runs]
            cells.append(f"{f.format(np.mean(v))} ({', '.join(f.format(x) for x in v)})")
        if mode is None:
            cells += ["", ""]
        else:
            one = [r[split][key] for r in runs]
            cells += [f"{np.mean([o['active_layers'] for o in one]):.0f} / "
                      f"{np.mean([o['shaped_layers'] for o in one]):.0f} (most "
                      f"{max(o['most_active'] for o in one)})",
                      f"{np.mean([o['ms_per_sound'] for o in one]):.0f}"]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def shaping(workdirs: list[str]) -> None:
    """docs/shaping.md: the refinement with and without per-layer shaping, on both test sets
    of each workdir (a seed each)."""
    import datetime
    import platform

    from drumlayer.evaluation import refinements

    runs = []
    for w in workdirs:
        print(f"shaping: {w}", flush=True)
        run: dict = {}
        for key, _, mode, overrides in SHAPING_ROWS:
            if mode is None:
                continue
            for split, row in refinements.compare(w, (mode,), overrides).items():
                run.setdefault(split, {k: v for k, v in row.items() if k != mode})[key] = row[mode]
        runs.append(run)
    with open(os.path.join(DOCS, "shaping.json"), "w") as f:
        json.dump(runs, f, indent=1)
    cpus = os.cpu_count()
    parts = ["# Per-layer shaping, measured", "",
             f"Written by `python docs/regenerate.py shaping` on {datetime.date.today()} "
             f"({platform.machine()}, {cpus} CPU cores) from {len(runs)} trained run(s) of "
             "`configs/snare.py` (one a seed). Each cell: the mean over the runs of each run's "
             "median over its clips, and each run's in brackets; lower is better. Every recipe "
             "is rendered as the studio plays it, its shaping and start delays included; "
             "matching pursuit's medians are the runs' own evaluation's, over the same 40 "
             "sources. The first row is no method: each target resynthesised from its own "
             "STFT magnitudes with random phases, what a sound with exactly the target's "
             "time-frequency envelope and another fine structure scores (a mix of other "
             "recordings has another fine structure too). Times: each set's clips in one batch "
             "(padded to a power of two), compiled before, on this machine; `python -m "
             "benchmarks analyze` times batches of 64 and one sound.", ""]
    for split, title in ((OUTSIDE, "Out of library"), ("test", "Test split")):
        if all(split in r for r in runs):
            n = ", ".join(str(r[split]["clips"]) for r in runs)
            parts += [f"## {title} ({n} clips)", "", *shaping_table(runs, split), ""]
    out = os.path.join(DOCS, "shaping.md")
    with open(out, "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {out}")


LOOP_TARGETS = (("onset_f1_10", "onset F1 within 10 ms", ">= 0.98", "librosa_onset_f1_10"),
                ("onset_f1_25", "onset F1 within 25 ms", "", "librosa_onset_f1_25"),
                ("tempo_within_1pct", "tempo within 1% (share of loops)", "",
                 "librosa_tempo_within_1pct"),
                ("tempo_within_0.2pct", "tempo within 0.2% (share of loops)", ">= 0.90",
                 "librosa_tempo_within_0.2pct"),
                ("velocity_correlation", "velocity correlation", "", None))


def loops(path: str) -> None:
    """docs/loops.md from the loops benchmark's JSON."""
    b = _read(path)
    if b is None:
        raise SystemExit(f"error: no {path}: run python -m benchmarks loops first")
    s = b["summary"]
    m = b["machine"]
    parts = ["# Loops, measured", "",
             f"Written by `python docs/regenerate.py loops` from "
             f"`{re.sub(WORKDIR_FLAG, '', b['command'])} --kit_workdir=runs/kit` run on "
             f"{b['date']} ({m['processor']}, {m['cpus']} CPU cores, {', '.join(m['devices'])})."
             f" {b['loops']} loops with known hits: the patterns of "
             "`drumlayer/loops/groundtruth.py` at 6 tempi (84-140 BPM, some swung, 3 ms of "
             "human timing), played by one-shots of the kit corpus's test split (kits the "
             "training never saw), and the patterns of Hydrogen's demo songs at their songs' "
             "tempi, played by one-shots held out of the run. What the targets of the loops' "
             "issue ask is beside each measure; librosa's detectors on the same loops are the "
             "reference.", "",
             "The drums at each onset are said by the categoriser (`drumlayer/loops/"
             "categorise.py`); the column \"decomposition\" is the alternative it replaced, "
             "the decomposition over the templates alone, on the same loops.", "",
             "| measure | drumlayer | decomposition | librosa | target |",
             "|---|---:|---:|---:|---|"]
    for key, label, target, ref in LOOP_TARGETS:
        v = s.get(key)
        r = s.get(ref) if ref else None
        alt = s.get(f"{key}_decomposition")
        parts.append(f"| {label} | {_cell(v)} | {_cell(alt) if alt is not None else ''} | "
                     f"{_cell(r) if r is not None else ''} | {target} |")
    alt = s.get("category_f1_decomposition", {})
    for g, target in (("kick", ">= 0.95"), ("snare", ">= 0.95"), ("hat", ">= 0.90"),
                      ("others", "")):
        parts.append(f"| F1 within 25 ms: {g} | {_cell(s['category_f1'].get(g))} | "
                     f"{_cell(alt[g]) if g in alt else ''} | | {target} |")
    parts.append(f"| transcription of a loop (median s) | "
                 f"{_cell(s['transcribe_seconds_median'])} | | | |")
    parts.append(f"| a 10 s loop analysed, models loaded (s) | "
                 f"{_cell(s.get('ten_second_loop_seconds'))} | | | <= 20 on 2 cores |")
    med = s.get("rebuilt_median")
    if med:
        parts += ["", "## The rebuilt loop", "",
                  f"On {len(b['rebuilt'])} of the test-split loops: the median over loops of "
                  "the whole loop's log-spectral distance and the mean per-hit MFCC distance "
                  "to the original (lower is better). The targets: at least 1 dB LSD and 20% "
                  "MFCC closer than the nearest single source with the true transcription.", "",
                  "| rebuilt by | LSD (dB) | MFCC distance |", "|---|---:|---:|"]
        for k, label in (("rebuilt", "the loop's kit (refined pads, the transcription)"),
                         ("centre", "the pads' centres (the transcription)"),
                         ("nearest_source_true_hits",
                          "nearest single source, the true transcription")):
            parts.append(f"| {label} | {med[k]['lsd_db']:.2f} | {med[k]['mfcc']:.1f} |")
    real = b.get("real") or []
    if real:
        parts += ["", "## Real loops (lmms-common's beats/)", "",
                  "| loop | tempo (BPM) | hits | rebuilt LSD / MFCC | centres LSD / MFCC |",
                  "|---|---:|---:|---:|---:|"]
        for r in real:
            if "rejected" in r:
                parts.append(f"| {r['loop']} | rejected: {r['rejected']} | | | |")
                continue
            parts.append(f"| {r['loop']} | {r['tempo']:.2f} | {r['hits']} | "
                         f"{r['rebuilt']['lsd_db']:.2f} / {r['rebuilt']['mfcc']:.1f} | "
                         f"{r['centre']['lsd_db']:.2f} / {r['centre']['mfcc']:.1f} |")
    parts += ["", "## How it works", "",
              "Onsets: a spectral flux's peaks, each moved to the sample where the energy of "
              "the next 2 ms most exceeds the 5 ms before it (full band or above 4 kHz). Drums:"
              " a network (one hidden layer) over the onset's log-mel patch (two frames before "
              "it to 130 ms after) says which categories sound; it is trained once per kit on "
              "30,000 onsets mixed from the kit corpus's training and validation one-shots (one"
              " to three drums at once, earlier hits ringing on, a next hit), never on the test"
              " split's. Velocity: the onset's energy, decomposed by NNLS over the sounding "
              "categories' sources (mel bands over 0-30, 30-80 and 80-200 ms, less what rang on"
              " from before); a category's part of the mix against its loudest hit's, on the "
              "kit's 24 dB curve. Tempo: the sixteenth grid that fits the onsets, between tempi"
              " a factor of 2 apart the one with the snare on 2 and 4 and the kick on 1, "
              "snapped to the loop's length when that is a whole number of bars within 2%. "
              "Pads: each category's 4 loudest hits, cut at the next onset, refined (weights) "
              "into candidates beside the pad's centre; the pad takes the one nearest all of "
              "its hits. The modules' docstrings (`drumlayer/loops/`) say more.", "",
              "## Short of the targets", ""]
    short = [f"- {label}: {_cell(s.get(key))} (target {target})"
             for key, label, target, _ in LOOP_TARGETS
             if target and s.get(key) is not None and s[key] < float(target.split()[-1])]
    short += [f"- F1 of {g}: {_cell(s['category_f1'][g])} (target {t})"
              for g, t in (("kick", 0.95), ("snare", 0.95), ("hat", 0.90))
              if s["category_f1"].get(g, 0) < t]
    if med and not (med["rebuilt"]["lsd_db"] <= med["nearest_source_true_hits"]["lsd_db"] - 1
                    and med["rebuilt"]["mfcc"] <= 0.8 * med["nearest_source_true_hits"]["mfcc"]):
        short.append("- the rebuilt loop is not 1 dB LSD and 20% MFCC closer than the nearest "
                     "single source with the true transcription (table above)")
    parts += short or ["Every target is met."]
    out = os.path.join(DOCS, "loops.md")
    with open(out, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {out}")


GEN_MEASURES = ("precision", "recall", "density", "coverage")


def _median_range(v: list[float], f: str = "{:.2f}") -> str:
    v = np.asarray(v, np.float64)
    return f"{f.format(np.median(v))} ({f.format(v.min())}-{f.format(v.max())})"


def classified_section(path: str) -> list[str]:
    """The share of a kit's generated sounds its categoriser hears as their category."""
    b = _read(path)
    m = b["machine"]
    cats = b["categories"]
    sets = [k for k in report.GENERATED if all(k in r for r in cats.values())]
    rows = ["| category | held-out clips | real | " + " | ".join(
        report.GENERATED[k] for k in sets) + " |", "|---" + "|---:" * (len(sets) + 2) + "|"]
    for c, r in cats.items():
        rows.append(f"| {c} | {r['held_out']} | {r['real']:.2f} | "
                    + " | ".join(f"{r[k]:.2f}" for k in sets) + " |")
    return ["## Drums of the right kind?", "",
            f"`{re.sub(WORKDIR_FLAG, '', b['command'])} --kit_workdir=runs/kit`, run on "
            f"{b['date']} ({m['processor']}, {m['cpus']} CPU cores): for each category of the "
            "kit trained on the open kits, the share of sounds its categoriser (the network "
            "the loops are transcribed with, trained on the kit corpus's training and "
            "validation one-shots) hears as that category, its most probable. \"real\" is "
            "the category's held-out clips (test split and out of library): kits the "
            "categoriser never heard. The generated sounds are mixes of the category's "
            "sources, which are training clips the categoriser was trained on: their share "
            "is an upper bound, not a fair comparison with the real clips'.", "", *rows, ""]


def generation(workdirs: list[str]) -> None:
    """docs/generation.md: the generated sounds of each workdir (a seed each) against the
    held-out clips, with the baselines and the real-against-real line (medians over seeds);
    a JSON argument is the generation benchmark's (the kit's categories)."""
    bench = [w for w in workdirs if w.endswith(".json")]
    workdirs = [w for w in workdirs if not w.endswith(".json")]
    runs = [_read(os.path.join(w, "eval", "metrics.json")) for w in workdirs]
    if any(m is None or "generation" not in m for m in runs):
        raise SystemExit("error: a workdir has no generation measures in eval/metrics.json: "
                         "evaluate it again")
    gens = [m["generation"] for m in runs]
    info = _how(_read(os.path.join(workdirs[0], "run.json"), {}))
    head = ["sounds", *GEN_MEASURES, "to training clip", "to source"]
    rows = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]

    def row(get):
        return [_median_range([get(g)[m] for g in gens]) for m in GEN_MEASURES]

    rows.append("| training clips (the real-against-real line) | " + " | ".join(
        row(lambda g: g["real_against_real"]) + [
            _median_range([g["held_out_novelty"][k] for g in gens])
            for k in ("to_train", "to_sources")]) + " |")
    for key, label in report.GENERATED.items():
        if not all(key in g for g in gens):
            continue
        rows.append(f"| {label} | " + " | ".join(
            row(lambda g, key=key: g[key]) + [
                _median_range([g[key]["novelty"][k] for g in gens])
                for k in ("to_train", "to_sources")]) + " |")
    med = {key: {m: float(np.median([g[key][m] for g in gens])) for m in GEN_MEASURES}
           for key in ("real_against_real", *report.GENERATED) if all(key in g for g in gens)}
    line, point = med["real_against_real"], med.get("random_point", {})
    checks = []
    if point:
        checks = [
            ("precision no more than 0.05 below the real-against-real line",
             f"{point['precision']:.2f} against {line['precision']:.2f}",
             point["precision"] >= line["precision"] - 0.05),
            ("recall >= 0.5", f"{point['recall']:.2f}", point["recall"] >= 0.5),
            ("ahead of random sparse mixes on precision and recall",
             f"{point['precision']:.2f} / {point['recall']:.2f} against "
             f"{med['random_sparse_mixes']['precision']:.2f} / "
             f"{med['random_sparse_mixes']['recall']:.2f}",
             point["precision"] > med["random_sparse_mixes"]["precision"]
             and point["recall"] > med["random_sparse_mixes"]["recall"])]
    parts = ["# Generated sounds, measured", "",
             f"Written by `python docs/regenerate.py generation` from {len(workdirs)} runs "
             f"(seeds) of the same config; {provenance(info, 'unknown')} (the first). Each "
             "cell: the median over seeds, and (in brackets) the lowest and highest seed.", "",
             "The sounds a person hears from the model without a target (the studio's "
             "\"random point\", the prior, variations of the test clips as the kit's round "
             "robins make them) and two baselines over the same sources, against the held-out "
             "clips (the test split and the out-of-library set) in a standardised descriptor "
             "space: MFCC means and spreads, centroid, attack and decay "
             "(`drumlayer/evaluation/generation.py`). Precision: the share of generated sounds "
             f"among real ones (inside a real clip's ball reaching its k-th nearest real "
             f"neighbour, k = {gens[0]['k']}); recall: the share of real clips among "
             "generated ones; density and coverage (Naeem et al. 2020) likewise, robust to "
             "outliers. The first row is the training clips measured the same way: what real "
             "drums score. The last two columns: the median distance to the nearest training "
             "clip and to the nearest single source (a copy scores 0).", "",
             *rows, "",
             "## The issue's targets, for the studio's random point", "",
             "| target | measured | met |", "|---|---|---|",
             *[f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in checks], "",
             *(classified_section(bench[0]) if bench else []),
             "Not measured yet: the kit export's round robins against real repeated hits, "
             "whether the encoder's recipe helps the refinement, and the DrumSynth kits.", ""]
    out = os.path.join(DOCS, "generation.md")
    with open(out, "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {out}")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "results":
        results(argv[1:])
    elif len(argv) >= 2 and argv[0] == "seeds":
        seeds(argv[1:])
    elif len(argv) >= 2 and argv[0] == "shaping":
        shaping(argv[1:])
    elif len(argv) >= 2 and argv[0] == "generation":
        generation(argv[1:])
    elif argv and argv[0] == "loops":
        loops(argv[1] if len(argv) > 1 else os.path.join(ROOT, "bench_results", "loops.json"))
    elif argv and argv[0] == "benchmarks":
        benchmarks(argv[1] if len(argv) > 1 else os.path.join(ROOT, "bench_results"))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
