"""Drum loops in; for each, a kit of your own samples that sounds like it, and its groove, out.

    python -m drumlayer.loops --workdir=runs/kit --out=my_loops ~/Loops/break.wav ~/Loops/more/

WORKDIR is a kit job's (configs/kit.py). For each loop (any file the corpus reads: any rate,
mono or multichannel; folders are searched), in OUT/<loop name>/ (names made unique as
`drumlayer.recipes.analyze` makes them):

- `hits.csv`: one row a hit, `onset_s,category,velocity,gm_note,pad`, sorted by onset; a hit of
  a category the kit has no model for has no pad (unassigned, not dropped);
- `groove.mid`: the hits as a Standard MIDI File (GM drum map, channel 10, the loop's tempo and
  the velocities; notes where they were played, not snapped);
- `rebuilt.wav`: the loop played by the new kit, at the loop's rate and length, for A/B;
- `report.json`: the tempo, bars, downbeat and swing, hits per category, the unassigned, how
  each pad's recipe was chosen, and the rebuilt loop's distances to the original;
- `kit/`: the loop's kit as `python -m drumlayer.kit.export` writes it (SFZ, DecentSampler,
  Ableton Live Drum Rack, Hydrogen, recipes, zip).

And OUT/summary.csv over all loops (written last), OUT/rejected.csv for the files that could
not be analysed and why (silence, too long, no drums the models recognise, unreadable); the
rest go on. How each stage works: drumlayer.loops.transcribe and drumlayer.loops.rebuild.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time

import numpy as np

from drumlayer import cli
from drumlayer.data import audio, categories, discovery
from drumlayer.data.dataset import Dataset
from drumlayer.errors import DrumlayerError
from drumlayer.kit import export as export_lib
from drumlayer.kit import midi
from drumlayer.loops import rebuild
from drumlayer.loops import transcribe as tr
from drumlayer.recipes import render
from drumlayer.recipes.analyze import unique_names
from drumlayer.studio import voices
from drumlayer.studio.model import Studio
from drumlayer.workdir import Workdir, output_folder, write_file

log = logging.getLogger(__name__)
MAX_SECONDS = 300.0
HITS_FIELDS = ("onset_s", "category", "velocity", "gm_note", "pad")


class LoopRejected(DrumlayerError):
    """A loop that cannot be analysed; the message says why."""


class LoopKit:
    """A kit opened for loops: a studio per trained category ({category: Studio}) and the
    templates the transcription decomposes onsets over (`rebuild.templates`)."""

    def __init__(self, studios: dict, untrained: dict[str, np.ndarray] | None = None):
        self.studios = studios
        self.templates = rebuild.templates(studios, untrained)

    @classmethod
    def open(cls, workdir: str) -> LoopKit:
        """The kit of a kit job's workdir."""
        summary = export_lib.kit_summary(workdir)
        trained = {c: e["workdir"] for c, e in summary["categories"].items() if "workdir" in e}
        if not trained:
            raise DrumlayerError(f"no category of {workdir} has a trained model")
        return cls({c: Studio(w) for c, w in trained.items()},
                   untrained(Workdir(workdir), trained))


def untrained(wd: Workdir, trained) -> dict[str, np.ndarray]:
    """Corpus clips of the kit categories without a model (to tell their hits apart)."""
    try:
        ds = Dataset(wd.corpus)
    except FileNotFoundError:
        return {}
    out = {}
    for c in categories.KIT_CATEGORIES:
        if c in trained:
            continue
        ids = [i for i, r in enumerate(ds.rows) if r["category"] == c][:rebuild.EXTRA]
        if ids:
            out[c] = ds.audio(ids)
    return out


def transcribe_loop(kit: LoopKit, recording: np.ndarray, rate: int) -> dict:
    """A loop [S] at rate -> {'x22': it at 22.05 kHz, peak 1, 'hits', 'grid', 'unassigned'};
    LoopRejected when it has no hits the kit can play."""
    x = np.asarray(recording, np.float64)
    if not np.any(np.abs(x) > 1e-6):
        raise LoopRejected("silence: no hits")
    x22 = audio.resample(x, rate, tr.RATE) if rate != tr.RATE else x
    x22 = x22 / float(np.max(np.abs(x22)))
    hits, grid, unknown = tr.transcribe(x22, kit.templates)
    if not any(h.category in kit.studios for h in hits):
        found = {c: sum(h.category == c for h in hits) for c in sorted({h.category
                                                                          for h in hits})}
        raise LoopRejected(
            f"no drums the kit's models recognise: {len(tr.onsets(x22))} onsets, "
            + (f"hits of {found} (no model in this kit)" if found else "none like a drum")
            + f"; the kit plays {', '.join(kit.studios)}")
    return {"x22": x22, "hits": hits, "grid": grid, "unassigned": unknown}


def loop_recipes(kit: LoopKit, x22: np.ndarray, hits: list[tr.Hit], refine: bool = True
                 ) -> tuple[dict, dict]:
    """({category: Recipe}, {category: how it was chosen}) of the pads of the loop's playable
    categories (`rebuild.pad_recipe`)."""
    onsets_all = [h.onset_s for h in hits]
    recipes, choices = {}, {}
    for c in sorted({h.category for h in hits if h.category in kit.studios}):
        mine = [h for h in hits if h.category == c]
        recipes[c], choices[c] = rebuild.pad_recipe(kit.studios[c], x22, mine, onsets_all,
                                                    refine)
    return recipes, choices


def loop_pads(kit: LoopKit, recipes: dict, variations: int = 4, layers: int = 4,
              seed: int = 0) -> dict:
    """{category: `kit.export.pad`} of the recipes: velocity layers and round robins."""
    return {c: voices.pad(kit.studios[c], r, layers, variations, export_lib.JITTER, seed + n)
            for n, (c, r) in enumerate(sorted(recipes.items()))}


def rebuilt_loop(recording: np.ndarray, rate: int, hits: list[tr.Hit], pads: dict
                 ) -> np.ndarray:
    """The loop played on the pads, at its rate and length, each pad at its level there."""
    playable = [h for h in hits if h.category in pads]
    return rebuild.rebuild(playable, pads, rebuild.levels(recording, rate, playable),
                           len(recording), rate)


def analyse(kit: LoopKit, recording: np.ndarray, rate: int, name: str, variations: int = 4,
            layers: int = 4, refine: bool = True, seed: int = 0) -> dict:
    """One loop [S] at rate -> {'hits', 'grid', 'unassigned', 'pads', 'choices', 'rebuilt' [S]
    at rate, 'distances', 'seconds', 'name'}; LoopRejected when it has no hits the kit can
    play."""
    t0 = time.perf_counter()
    t = transcribe_loop(kit, recording, rate)
    recipes, choices = loop_recipes(kit, t["x22"], t["hits"], refine)
    pads = loop_pads(kit, recipes, variations, layers, seed)
    rebuilt = rebuilt_loop(np.asarray(recording, np.float64), rate, t["hits"], pads)
    r22 = audio.resample(rebuilt, rate, tr.RATE) if rate != tr.RATE else rebuilt
    dist = rebuild.distances(r22 / max(float(np.max(np.abs(r22))), 1e-9), t["x22"],
                             [h.onset_s for h in t["hits"] if h.category in pads])
    return {**t, "pads": pads, "choices": choices, "rebuilt": rebuilt, "distances": dist,
            "seconds": time.perf_counter() - t0, "name": name}


def hits_csv(hits: list[tr.Hit], pads) -> str:
    """hits.csv: a row a hit, sorted by onset; no GM note and no pad where the kit lacks one."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(HITS_FIELDS)
    for h in sorted(hits, key=lambda h: (h.onset_s, h.category)):
        has = h.category in pads
        w.writerow([f"{h.onset_s:.6f}", h.category, h.velocity,
                    categories.gm_note(h.category) if has else "",
                    categories.PAD_NAMES[h.category] if has else ""])
    return buf.getvalue()


def groove_mid(hits: list[tr.Hit], pads, grid: tr.Grid, length_s: float, name: str) -> bytes:
    """The playable hits as a MIDI file at the loop's tempo, from its start, as played."""
    length = max(1, midi.ticks(length_s, grid.tempo_bpm))
    notes = [(min(midi.ticks(h.onset_s, grid.tempo_bpm), length - 1), h.category, h.velocity)
             for h in hits if h.category in pads]
    return midi.pattern_midi(notes, grid.tempo_bpm, length, name)


def report(res: dict, path: str, rate: int, length: int) -> dict:
    hits, grid = res["hits"], res["grid"]
    per = {c: sum(h.category == c for h in hits) for c in sorted({h.category for h in hits})}
    return {"file": path, "sample_rate": rate, "seconds": round(length / rate, 4),
            "tempo_bpm": round(grid.tempo_bpm, 4), "bars": grid.bars,
            "downbeat_s": round(grid.downbeat_s, 4), "swing_sixteenths": grid.swing,
            "hits": len(hits), "hits_per_category": per,
            "unassigned": [{"onset_s": round(h.onset_s, 6), "category": h.category}
                           for h in hits if h.category not in res["pads"]]
            + [{"onset_s": round(t, 6), "category": None,
                "shares": {c: round(v, 3) for c, v in s.items()}}
               for t, s in res["unassigned"]],
            "pads": res["choices"],
            "distances": {k: round(v, 4) for k, v in res["distances"].items()},
            "analysis_seconds": round(res["seconds"], 2)}


def write_loop(res: dict, folder: str, path: str, rate: int, export_rate: int) -> dict:
    """Everything of one analysed loop into folder; returns its report."""
    os.makedirs(folder, exist_ok=True)
    rebuilt = res["rebuilt"]
    peak = float(np.max(np.abs(rebuilt)))
    safe = rebuilt / peak * 0.999 if peak > 0.999 else rebuilt
    length = len(rebuilt)
    write_file(os.path.join(folder, "hits.csv"), hits_csv(res["hits"], res["pads"]))
    write_file(os.path.join(folder, "groove.mid"), groove_mid(
        res["hits"], res["pads"], res["grid"], length / rate, f"drumlayer {res['name']}"))
    write_file(os.path.join(folder, "rebuilt.wav"), render.wav_bytes(safe, rate, "PCM_24"))
    export_lib.write(res["pads"], os.path.join(folder, "kit"), name=res["name"],
                     rate=export_rate)
    rep = report(res, path, rate, length)
    write_file(os.path.join(folder, "report.json"), json.dumps(rep, indent=1))
    return rep


def loop_files(paths: list[str], out: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The audio files under paths (not under out), and the paths that could not be listed."""
    files, problems = discovery.walk_files(paths, exclude=(out,))
    keep = [f for f in files if os.path.splitext(f)[1].lower() in discovery.AUDIO_EXTENSIONS]
    return sorted(keep), problems


def run(workdir: str, paths: list[str], out: str, max_seconds: float = MAX_SECONDS,
        variations: int = 4, layers: int = 4, refine: bool = True,
        export_rate: int = 48000) -> dict:
    """Analyse every loop under paths into out (see the module's doc) -> {'written',
    'rejected', 'summary'}."""
    out = output_folder(out)
    summary_path = os.path.join(out, "summary.csv")
    if os.path.exists(summary_path):
        os.remove(summary_path)  # written last: a summary is there only when the run finished
    files, rejected = loop_files(paths, out)
    if not files and not rejected:
        raise DrumlayerError(f"no audio files under {', '.join(paths)}")
    kit = LoopKit.open(workdir)
    names = unique_names([render.safe_name(os.path.splitext(os.path.basename(f))[0]) or "loop"
                          for f in files])
    rows = []
    for path, name in zip(files, names, strict=True):
        try:
            rec, rate = audio.read_audio(path, max_seconds=max_seconds + 1.0,
                                         max_duration=max_seconds)
            res = analyse(kit, rec[:, 0], rate, name, variations, layers, refine)
        except audio.AudioError as e:
            rejected.append((path, e.reason + (f" ({e.hint})" if e.hint else "")))
            continue
        except LoopRejected as e:
            rejected.append((path, str(e)))
            continue
        rep = write_loop(res, os.path.join(out, name), path, rate, export_rate)
        log.info("loops: %s: %d hits at %.2f BPM, rebuilt LSD %.2f dB (%.1f s)", name,
                 rep["hits"], rep["tempo_bpm"], rep["distances"]["lsd_db"],
                 rep["analysis_seconds"])
        rows.append([name, path, rep["tempo_bpm"], rep["bars"], rep["hits"],
                     " ".join(f"{c}:{n}" for c, n in rep["hits_per_category"].items()),
                     len(rep["unassigned"]), rep["distances"]["lsd_db"],
                     rep["distances"]["mfcc"], rep["analysis_seconds"]])
    write_file(os.path.join(out, "rejected.csv"), _csv([("file", "reason"), *rejected]))
    write_file(summary_path, _csv([("name", "file", "tempo_bpm", "bars", "hits", "categories",
                                    "unassigned", "rebuilt_lsd_db", "rebuilt_mfcc",
                                    "seconds"), *rows]))
    return {"written": len(rows), "rejected": len(rejected), "summary": summary_path}


def _csv(rows) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "a kit job's workdir (configs/kit.py)", flag_values=fv)
    flags.DEFINE_string("out", None, "output folder: a folder per loop, summary.csv, "
                        "rejected.csv", flag_values=fv)
    flags.DEFINE_float("max_seconds", MAX_SECONDS, "longer files are refused (a loop, not a "
                       "song)", lower_bound=1.0, upper_bound=3600.0, flag_values=fv)
    flags.DEFINE_integer("variations", 4, "round robins per pad", lower_bound=1,
                         upper_bound=export_lib.MAX_VARIATIONS, flag_values=fv)
    flags.DEFINE_integer("velocity_layers", 4, "velocity layers per pad", lower_bound=1,
                         upper_bound=export_lib.MAX_VARIATIONS, flag_values=fv)
    flags.DEFINE_bool("refine", True, "refine each pad's recipe against the loop's hits "
                      "(else: each pad is its model's centre)", flag_values=fv)
    flags.DEFINE_integer("sample_rate", 48000, "the kit's samples' rate (44100 or 48000)",
                         flag_values=fv)


def _command(f, paths: list[str]) -> int:
    if not f.workdir or not f.out or not paths:
        raise DrumlayerError("give --workdir=W (a kit job's) --out=DIR and at least one loop "
                             "file or folder")
    if f.sample_rate not in render.EXPORT_RATES:
        raise DrumlayerError(f"--sample_rate must be one of {render.EXPORT_RATES}, got "
                             f"{f.sample_rate}")
    output_folder(f.out)
    cli.compilation_cache()
    res = run(f.workdir, paths, f.out, f.max_seconds, f.variations, f.velocity_layers,
              f.refine, f.sample_rate)
    print(f"analysed {res['written']} loops into {f.out} ({res['rejected']} skipped: "
          f"{os.path.join(f.out, 'rejected.csv')}); summary: {res['summary']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.loops; argv without the program name (None: sys.argv)."""
    return cli.run(_command, argv, "python -m drumlayer.loops", __doc__, _define_flags,
                   positional=True)


if __name__ == "__main__":
    sys.exit(main())
