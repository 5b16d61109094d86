"""Analysis by synthesis of a person's own sounds, in one batch (the refinement: `refine`).

    python -m drumlayer.recipes.analyze --workdir=runs/snare --out=recipes PATH...

reads every sound under the files and folders given (whatever the corpus reads: audio files,
SFZ, SF2 and Hydrogen kits), and writes for each OUT/<name>.recipe.json (the studio's recipe:
"load recipe" there), OUT/<name>.wav (the mix of the full-band sources at the bundle's rate,
float, at the level the recipe's gain gives it) and one OUT/summary.csv (per sound: active
layers, shaped layers (--mode=shape), largest weight, gain, LSD, MFCC distance and centroid
error against the sound, measured at 22.05 kHz, seconds); files that cannot be read are listed
in OUT/rejected.csv with the reason, and the rest go on. Files under OUT are never read as
input; every file is written whole, and summary.csv last: a folder without it is a run that
did not finish.
"""

from __future__ import annotations

import collections
import csv
import io
import logging
import os
import sys
import threading
import time

import jax
import numpy as np
from tqdm import tqdm

from drumlayer import cli
from drumlayer.data import audio, candidates, discovery
from drumlayer.errors import DrumlayerError
from drumlayer.features import batching, measures
from drumlayer.recipes import render
from drumlayer.recipes.bundle import Bundle
from drumlayer.recipes.recipe import Envelope, Recipe, printable, shorten
from drumlayer.recipes.refine import (
    FITS,
    MODES,
    AnalyzeConfig,
    Analyzer,
    fit_name,
    recipe_fields,
    refine_all,
)
from drumlayer.training import distributed
from drumlayer.workdir import AnalyzeDir, output_folder, write_file

log = logging.getLogger(__name__)


def unique_names(bases: list[str]) -> list[str]:
    """File names made unique without regard to case (a case-insensitive disk holds one of
    Kick and kick): the second of a name becomes name-2, the next free of -2, -3, ..., never a
    name that another base has already (kick, kick, kick-2 -> kick, kick-3, kick-2)."""
    taken = {b.lower() for b in bases}
    used: set[str] = set()
    out = []
    for base in bases:
        name, n = base, 1
        while name.lower() in used or (n > 1 and name.lower() in taken):
            n += 1
            name = f"{base}-{n}"
        used.add(name.lower())
        out.append(name)
    return out


def _unique_names(cands) -> list[str]:
    """A file name (no extension) per candidate: its file's stem (kit and instrument for a
    kit's sounds), made unique (`unique_names`)."""
    return unique_names([render.safe_name(
        os.path.splitext(os.path.basename(c.file))[0] if c.source_format == "folder"
        else f"{c.kit}_{c.instrument}{'_' + c.layer if c.layer else ''}") or "sound"
        for c in cands])


def _read(cands, rejected: list):
    """(clips [N, S], candidates, names, rejected [(path, reason)]) of the candidates that read;
    the others added to rejected."""
    clips, ok = [], []
    for c in tqdm(cands, desc="reading", unit="file", file=sys.stderr, mininterval=1.0,
                  disable=len(cands) < 50):
        where = c.file + (f"#{c.instrument}" if c.spans else "")
        try:
            clips.append(candidates.load_candidate(c, max_duration=30.0))
            ok.append(c)
        except audio.AudioError as e:
            rejected.append((where, e.reason + (f" ({e.hint})" if e.hint else "")))
    x = np.stack(clips) if clips else np.zeros((0, audio.ClipSpec().samples), np.float32)
    return x, ok, _unique_names(ok), rejected


def _compile(an: Analyzer, size: int) -> None:
    try:
        jax.block_until_ready(an(np.zeros((size, audio.ClipSpec().samples), np.float32)))
    except Exception:  # noqa: BLE001 - the first block compiles instead
        log.exception("analyze: compiling ahead failed")


def _csv(rows) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def run(workdir: str, paths: list[str], out: str, config: AnalyzeConfig = AnalyzeConfig(),
        block: int = 64) -> dict:
    """Refine a recipe for every sound under paths (not under out); write OUT/<name>.recipe.json,
    <name>.wav, rejected.csv and, last, summary.csv (a folder without one did not finish: a
    previous run's is removed first). Every file is written whole or not at all. Returns
    {'written': n, 'rejected': n, 'summary': path}."""
    od = AnalyzeDir(output_folder(out))
    b = Bundle.load(workdir)
    cands, rejected = discovery.discover(paths, exclude=(od.dir,))
    an = Analyzer.from_bundle(b, config)
    # the refinement compiles for the first block's shape while the files are read
    size = batching.block_size(max(len(cands), 1), block)
    ahead = threading.Thread(target=_compile, args=(an, size), name="compile", daemon=True)
    ahead.start()
    clips, cands, names, rejected = _read(cands, rejected)
    if os.path.exists(od.summary):
        os.remove(od.summary)  # until this run's is written, the folder is not a finished run
    write_file(od.rejected, _csv([("file", "reason"), *rejected]))
    for reason, n in collections.Counter(r for _, r in rejected).most_common():
        log.warning("analyze: %d file(s) skipped: %s", n, reason)
    if not len(clips):
        raise DrumlayerError(f"no readable sound under {', '.join(paths)}: see {od.rejected}")
    log.info("analyze: %d sounds, mode %s, fit %s, %d sources", len(clips), config.mode,
             fit_name(config), b.k)
    ahead.join()
    t0 = time.perf_counter()
    r = refine_all(an, clips, block)
    seconds = (time.perf_counter() - t0) / len(clips)
    decoder = render.numpy_decoder(b.params)
    normaliser = b.config["model"]["normaliser"]
    env = Envelope()
    heard = [render.envelope(s.shape[1], rate, env.attack, env.hold, env.decay)
             for s, rate in ((b.sources, audio.SAMPLE_RATE), (b.full_sources, b.full_rate))]
    mixes, rows = [], []
    for i, (c, name) in enumerate(zip(cands, names, strict=True)):
        recipe = Recipe(**recipe_fields(r, i, an.variants),
                        name=shorten(printable(f"analyze: {c.file}")))
        z = np.asarray(recipe.latent, np.float32)
        w = render.edit_weights(render.decode(decoder, z, normaliser), {}, set(), set(), 0.0,
                                recipe.residual)
        delays = render.offsets(recipe.offsets_ms, audio.SAMPLE_RATE)
        mixes.append(render.render(w, b.sources, delays, heard[0], recipe.gain_db, recipe.shaping,
                                   audio.SAMPLE_RATE))
        x = render.render(w, b.full_sources, render.offsets(recipe.offsets_ms, b.full_rate),
                          heard[1], recipe.gain_db, recipe.shaping, b.full_rate)
        write_file(od.recipe(name), recipe.model_copy(update={"weights": w.tolist()})
                   .model_dump_json(indent=1, exclude_none=True))
        write_file(od.mix(name), render.wav_bytes(x, b.full_rate, "FLOAT"))
        rows.append([c.file if not c.spans else f"{c.file}#{c.instrument}", name,
                     int(measures.active_layers(w)), len(recipe.shaping),
                     round(float(w.max() / max(w.sum(), 1e-12)), 4), round(recipe.gain_db, 2)])
    d = measures.batch_distances(np.stack(mixes), clips)
    header = ["file", "name", "active_layers", "shaped_layers", "largest_weight", "gain_db",
              "log_spectral_distance_db", "mfcc_distance", "centroid_error_hz", "seconds"]
    write_file(od.summary, _csv([header, *(
        row + [round(float(d[k][i]), 3) for k in measures.DISTANCES] + [round(seconds, 4)]
        for i, row in enumerate(rows))]))
    log.info("analyze: %d recipes (%.0f ms a sound; median LSD %.2f dB, MFCC distance %.1f, "
             "centroid error %.0f Hz), %d skipped -> %s", len(rows), 1e3 * seconds,
             *(np.median(d[k]) for k in measures.DISTANCES), len(rejected),
             out)
    return {"written": len(rows), "rejected": len(rejected), "summary": od.summary}


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "a trained workdir (its bundle)", flag_values=fv)
    flags.DEFINE_string("out", None, "where the recipes, mixes and summary.csv go",
                        flag_values=fv)
    flags.DEFINE_enum("mode", AnalyzeConfig.mode, MODES, "what is refined", flag_values=fv)
    flags.DEFINE_integer("block", 64, "sounds refined together", flag_values=fv)
    flags.DEFINE_integer("shape_rounds", AnalyzeConfig.shape_rounds, "--mode=shape: sweeps of "
                         "swaps over the layers (1: about 20% faster, behind matching pursuit's "
                         "LSD in a seed; docs/shaping.md)", lower_bound=1,
                         upper_bound=8, flag_values=fv)
    flags.DEFINE_enum("fit", "timbre", list(FITS), "what the refinement matches first: "
                      "'timbre' (MFCC, centroid and features) or 'spectrogram' (0.4-0.6 dB "
                      "lower LSD, higher MFCC distance and feature MSE; docs/shaping.md)",
                      flag_values=fv)


def _command(f, paths: list[str]) -> int:
    if not f.workdir or not f.out or not paths:
        raise DrumlayerError("give --workdir=W --out=DIR and at least one file or folder")

    distributed.use_cpu_cores_as_trained(f.workdir)
    cli.compilation_cache()
    res = run(f.workdir, paths, f.out,
              AnalyzeConfig(mode=f.mode, shape_rounds=f.shape_rounds, **FITS[f.fit]), f.block)
    print(f"wrote {res['written']} recipes to {f.out} ({res['rejected']} files skipped: "
          f"{AnalyzeDir(f.out).rejected}); summary: {res['summary']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.recipes.analyze; argv without the program name (None: sys.argv)."""

    return cli.run(_command, argv, "python -m drumlayer.recipes.analyze", __doc__, _define_flags,
                   positional=True)


if __name__ == "__main__":
    sys.exit(main())
