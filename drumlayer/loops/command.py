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
rest go on.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys

from drumlayer import cli
from drumlayer.data import audio, discovery
from drumlayer.errors import DrumlayerError
from drumlayer.kit import export as export_lib
from drumlayer.loops.analyze import LoopKit, LoopRejected, analyse, write_loop
from drumlayer.recipes import render
from drumlayer.recipes.analyze import unique_names
from drumlayer.workdir import LoopsDir, output_folder, write_file

log = logging.getLogger(__name__)
MAX_SECONDS = 300.0


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
    folder = LoopsDir(out)
    summary_path = folder.summary
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
        rep = write_loop(res, folder.loop(name), path, rate, export_rate)
        log.info("loops: %s: %d hits at %.2f BPM, rebuilt LSD %.2f dB (%.1f s)", name,
                 rep["hits"], rep["tempo_bpm"], rep["distances"]["lsd_db"],
                 rep["analysis_seconds"])
        rows.append([name, path, rep["tempo_bpm"], rep["bars"], rep["hits"],
                     " ".join(f"{c}:{n}" for c, n in rep["hits_per_category"].items()),
                     len(rep["unassigned"]), rep["distances"]["lsd_db"],
                     rep["distances"]["mfcc"], rep["analysis_seconds"]])
    write_file(folder.rejected, _csv([("file", "reason"), *rejected]))
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
    flags.DEFINE_string("out", None, "output folder: a folder per loop, the summary "
                        "and the files it skipped", flag_values=fv)
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
          f"{LoopsDir(f.out).rejected}); summary: {res['summary']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.loops; argv without the program name (None: sys.argv)."""
    return cli.run(_command, argv, "python -m drumlayer.loops", __doc__, _define_flags,
                   positional=True)


if __name__ == "__main__":
    sys.exit(main())
