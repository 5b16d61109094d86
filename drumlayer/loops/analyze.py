"""A drum loop analysed on a kit: its hits (`transcribe_loop`), the pads fitted to them
(`loop_recipes`, `loop_pads`), the loop rebuilt on them (`rebuilt_loop`), and what is written
of it (`hits_csv`, `groove_mid`, `report`, `write_loop`). The command that runs it over files:
drumlayer/loops/command.py; how each stage works: drumlayer.loops.transcribe and
drumlayer.loops.rebuild.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time

import numpy as np

from drumlayer.data import audio, categories
from drumlayer.data.dataset import Dataset
from drumlayer.errors import DrumlayerError
from drumlayer.kit import export as export_lib
from drumlayer.kit import midi
from drumlayer.loops import categorise, rebuild
from drumlayer.loops import transcribe as tr
from drumlayer.recipes import render
from drumlayer.studio import voices
from drumlayer.studio.model import Studio
from drumlayer.workdir import LoopDir, Workdir, read_json, write_file

log = logging.getLogger(__name__)
HITS_FIELDS = ("onset_s", "category", "velocity", "gm_note", "pad")


class LoopRejected(DrumlayerError):
    """A loop that cannot be analysed; the message says why."""


class LoopKit:
    """A kit opened for loops: a studio per trained category ({category: Studio}), the
    templates the transcription decomposes onsets over (`rebuild.templates`), and the
    categoriser that says which drums sound at an onset (None: the decomposition says)."""

    def __init__(self, studios: dict, untrained: dict[str, np.ndarray] | None = None,
                 categoriser: categorise.Categoriser | None = None):
        self.studios = studios
        self.templates = rebuild.templates(studios, untrained)
        self.categoriser = categoriser

    @classmethod
    def open(cls, workdir: str) -> LoopKit:
        """The kit of a kit job's workdir."""
        summary = export_lib.kit_summary(workdir)
        trained = {c: e["workdir"] for c, e in summary["categories"].items() if "workdir" in e}
        if not trained:
            raise DrumlayerError(f"no category of {workdir} has a trained model")
        return cls.of({c: Studio(w) for c, w in trained.items()}, workdir)

    @classmethod
    def of(cls, studios: dict, workdir: str) -> LoopKit:
        """The kit of these studios ({category: Studio}) of a kit job's workdir."""
        wd = Workdir(workdir)
        return cls(studios, untrained(wd, studios), categoriser(wd))


def categoriser(wd: Workdir, mixtures: int = categorise.MIXTURES,
                steps: int = categorise.STEPS) -> categorise.Categoriser | None:
    """The kit corpus's categoriser (`categorise.for_workdir`: trained once on its training
    and validation clips of the kit categories, then read back), or None without a corpus."""
    meta = read_json(wd.corpus.meta) or {}
    if "fingerprint" not in meta:
        return None
    ds, key = Dataset(wd.corpus), str(meta["fingerprint"])

    def pool() -> dict[str, list[np.ndarray]]:
        out = {}
        for c in categories.KIT_CATEGORIES:
            ids = [i for i, r in enumerate(ds.rows)
                   if r["category"] == c and r["split"] in ("train", "val")]
            if ids:
                out[c] = [np.asarray(a, np.float64) for a in ds.audio(ids)]
        return out

    return categorise.for_workdir(wd.root, pool, key, mixtures, steps)


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
    x22 = rebuild.peak_one(x22)
    hits, grid, unknown = tr.transcribe(x22, kit.templates,
                                         categoriser=kit.categoriser)
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
    dist = rebuild.distances(rebuild.peak_one(r22), t["x22"],
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


def write_loop(res: dict, folder: LoopDir, path: str, rate: int, export_rate: int) -> dict:
    """Everything of one analysed loop into its folder; returns its report."""
    os.makedirs(folder.dir, exist_ok=True)
    rebuilt = res["rebuilt"]
    length = len(rebuilt)
    write_file(folder.hits, hits_csv(res["hits"], res["pads"]))
    write_file(folder.groove, groove_mid(
        res["hits"], res["pads"], res["grid"], length / rate, f"drumlayer {res['name']}"))
    write_file(folder.rebuilt, render.wav_bytes(rebuild.full_scale(rebuilt), rate, "PCM_24"))
    export_lib.write(res["pads"], folder.kit, name=res["name"], rate=export_rate)
    rep = report(res, path, rate, length)
    write_file(folder.report, json.dumps(rep, indent=1))
    return rep
