"""The kit studio's loop view: drop a loop, see its hits, hear it rebuilt on the pads (A/B),
edit the pads, export the kit, the MIDI file and the rebuilt loop (drumlayer.loops).

- POST /api/kit/loop (multipart `file`): the loop's transcription at once (hits, tempo, grid,
  the unassigned) under a token; the page plays the hits on the pads it holds, so the first
  rebuilt loop is heard without waiting for a refinement. The studio keeps the last KEEP loops.
- POST /api/kit/loop/{token}/pads: each playable category's pad recipe chosen against the
  loop's hits (`rebuild.pad_recipe`: the slow part), for the page to put on its pads.
- GET /api/kit/loop/{token}/original: the loop as uploaded (mono, its rate), for A/B.
- GET /api/kit/loop/{token}/groove.mid: its hits as a MIDI file (the command's groove.mid).
- POST /api/kit/loop/{token}/rebuilt: the loop played on the pads the request gives (as
  /api/kit/export takes them), a 24-bit WAV at the loop's rate and length.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (KitExport is
# the kit app's request model, passed in)

import collections
import os
import secrets
import tempfile
import threading
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from drumlayer.data import audio
from drumlayer.loops import analyze as loops
from drumlayer.loops import rebuild
from drumlayer.recipes import render as render_lib

KEEP = 4  # loops kept for their routes
MAX_SECONDS = 300.0


def _loop_json(token: str, name: str, t: dict, rate: int, length: int, kit) -> dict:
    g = t["grid"]
    return {"token": token, "name": name, "sample_rate": rate, "seconds": length / rate,
            "tempo_bpm": g.tempo_bpm, "bars": g.bars, "downbeat_s": g.downbeat_s,
            "swing": g.swing,
            "hits": [{"onset_s": h.onset_s, "category": h.category, "velocity": h.velocity,
                      "pad": h.category in kit.studios} for h in t["hits"]],
            "unassigned": [{"onset_s": o, "shares": {c: round(v, 3) for c, v in s.items()}}
                           for o, s in t["unassigned"]]}


def add_loop_routes(app: FastAPI, kit_studios: dict, workdir: str, render_pads, KitExport,
                    max_upload_mb: float = 50.0) -> None:
    """The loop routes on the kit app; render_pads(req) -> (pads, empty) as /api/kit/export
    renders them; KitExport: its request model."""
    state = {"kit": None}
    lock = threading.Lock()
    kept: collections.OrderedDict[str, dict] = collections.OrderedDict()
    limit = int(max_upload_mb * 1024 * 1024)

    def kit() -> loops.LoopKit:
        with lock:
            if state["kit"] is None:
                state["kit"] = loops.LoopKit.of(kit_studios, workdir)
            return state["kit"]

    # made while the person looks at the kit: the first loop on a kit trains its categoriser
    # (tens of seconds, once), and a loop dropped later is heard at once
    threading.Thread(target=kit, name="loop-kit", daemon=True).start()

    def loop(token: str) -> dict:
        with lock:
            got = kept.get(token)
        if got is None:
            raise HTTPException(404, "no such loop here (unknown, or dropped for newer ones): "
                                "drop it again")
        return got

    def analyse(data: bytes, label: str) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "loop")
            with open(path, "wb") as f:
                f.write(data)
            try:
                rec, rate = audio.read_audio(path, max_seconds=MAX_SECONDS + 1.0,
                                             max_duration=MAX_SECONDS)
            except audio.AudioError as e:
                raise HTTPException(422, str(e).replace(path, label)) from None
        x = np.asarray(rec[:, 0], np.float64)
        k = kit()
        try:
            t = loops.transcribe_loop(k, x, rate)
        except loops.LoopRejected as e:
            raise HTTPException(422, f"{label}: {e}") from None
        token = secrets.token_hex(8)
        with lock:
            kept[token] = {"x": x, "rate": rate, "name": label, **t}
            while len(kept) > KEEP:
                kept.popitem(last=False)
        return _loop_json(token, label, t, rate, len(x), k)

    @app.post("/api/kit/loop", summary="Drop a loop: its hits, tempo and grid (multipart "
              "field `file`)")
    async def drop(file: Annotated[UploadFile, File(description="a drum loop, any format the "
                                                    "corpus reads")]) -> dict:
        data = await file.read(limit + 1)
        label = os.path.basename(file.filename or "loop")[:100]
        if len(data) > limit:
            raise HTTPException(413, f"{label} is over the studio's limit of {max_upload_mb:g} "
                                "MB")
        return await run_in_threadpool(analyse, data, label)

    @app.post("/api/kit/loop/{token}/pads", summary="The pads' recipes chosen against the "
              "loop's hits")
    def pads(token: str) -> dict:
        got = loop(token)
        recipes, choices = loops.loop_recipes(kit(), got["x22"], got["hits"])
        return {"pads": {c: r.model_dump(exclude_none=True) for c, r in recipes.items()},
                "choices": choices}

    @app.get("/api/kit/loop/{token}/original", summary="The loop as dropped (mono WAV)",
             response_class=Response)
    def original(token: str):
        got = loop(token)
        return Response(render_lib.wav_bytes(rebuild.full_scale(got["x"]), got["rate"], "FLOAT"),
                        media_type="audio/wav")

    @app.get("/api/kit/loop/{token}/groove.mid", summary="The loop's hits as a MIDI file",
             response_class=Response)
    def groove_mid(token: str):
        got = loop(token)
        name = render_lib.safe_name(os.path.splitext(got["name"])[0]) or "loop"
        data = loops.groove_mid(got["hits"], kit().studios, got["grid"],
                                len(got["x"]) / got["rate"], f"drumlayer {name}")
        return Response(data, media_type="audio/midi", headers={
            "Content-Disposition": f'attachment; filename="{name}_groove.mid"'})

    @app.post("/api/kit/loop/{token}/rebuilt", summary="The loop played on the pads given",
              response_class=Response)
    def rebuilt(token: str, req: KitExport):
        got = loop(token)
        pads_, _ = render_pads(req)
        y = rebuild.full_scale(loops.rebuilt_loop(got["x"], got["rate"], got["hits"], pads_))
        name = render_lib.safe_name(os.path.splitext(got["name"])[0]) or "loop"
        return Response(render_lib.wav_bytes(y, got["rate"], "PCM_24"), media_type="audio/wav",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{name}_rebuilt.wav"'})
