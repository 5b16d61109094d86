"""The studio's HTTP server (FastAPI): the page, the model it runs, and the audio it exports.

    python -m drumlayer.studio --workdir=runs/snare [--port=8765] [--host=127.0.0.1]

The page decodes and mixes in the browser (every slider move stays on the page); the server
encodes uploads and corpus clips, and renders and exports recipes. OpenAPI docs: /docs.

Safety: it listens on 127.0.0.1 unless told otherwise; uploads above --max_upload_mb are refused
(413); audio is decoded from a temporary file the server names, never from a path in a request
(corpus clips and sources are addressed by integer ids, uploads by a server-made token).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated

import numpy as np
from fastapi import APIRouter, FastAPI, File, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from drumlayer.data import audio
from drumlayer.recipes import render as render_lib
from drumlayer.recipes.recipe import Recipe, display_name
from drumlayer.studio import exports, guard, kit_routes, originals, voices
from drumlayer.studio.model import Clip, Match, Studio, Weights  # noqa: F401 (Studio: the API's)

log = logging.getLogger(__name__)
STATIC = os.path.join(os.path.dirname(__file__), "static")
RATES = (22050, 44100, 48000)
REFINE_DOC = ("refine the recipe by analysis by synthesis (weights and gain fitted to the "
              "sound; ~0.1 s): false gives the encoder's recipe alone")
RATE_DOC = ("output sample rate: 22050, 44100 or 48000 (exports: 44100 or 48000); default: "
            "the bundle's full-band rate")


def _wav(data: bytes, filename: str | None = None) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else {}
    return Response(data, media_type="audio/wav", headers=headers)


def _rate(rate: int, export: bool = False) -> None:
    allowed = RATES[1:] if export else RATES
    if rate not in allowed:
        raise HTTPException(422, f"sample_rate must be one of {allowed}, got {rate}")


def add_page(app: FastAPI) -> None:
    """The page at / and its files at /static/."""

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(os.path.join(STATIC, "index.html"))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def create_app(workdir: str, max_upload_mb: float = 50.0,
               hosts: tuple[str, ...] = guard.LOOPBACK, warm_up: bool = False,
               fit: str = "timbre") -> FastAPI:
    """The studio's ASGI app over a trained workdir (a kit job's workdir: the kit studio, see
    studio/kit_routes.py), answering to the host names `hosts` only. warm_up: compile the
    encoder and refinement on a thread from the start (`Studio.warm_up`). fit: what the
    refinement matches first (refine.FITS)."""
    if kit_routes.is_kit_workdir(workdir):
        app = kit_routes.create_kit_app(
            workdir, lambda w: create_app(w, max_upload_mb, hosts, warm_up, fit), add_page)
        _add_guards(app, max_upload_mb, hosts)
        return app
    st = Studio(workdir, fit=fit)
    if warm_up:
        st.warm_up()
    app = FastAPI(title="drumlayer studio", version="1",
                  description="Layered drum sounds from a trained drumlayer workdir: encode a "
                  "sample to a recipe, edit it, render and export it.")
    app.state.studio = st
    _add_guards(app, max_upload_mb, hosts)
    add_page(app)
    for router in (_model_routes(st), _encode_routes(st, max_upload_mb), _recipe_routes(st)):
        app.include_router(router)
    return app


def _add_guards(app: FastAPI, max_upload_mb: float, hosts: tuple[str, ...]) -> None:
    """Errors as 4xx with a line saying what is wrong; only the studio's own hosts and origin,
    and bodies within their limits (`guard.Guard`)."""
    app.add_middleware(guard.Guard, hosts=hosts, upload_limit=int(max_upload_mb * 1024 * 1024))
    guard.add_error_handlers(app, render_lib.SilentError)


def _model_routes(st: Studio) -> APIRouter:
    """What the page loads once: the model, the sources' audio, the corpus. Made once, and
    answered on the event loop (no thread to wait for, however busy the heavy routes are)."""
    router = APIRouter()
    p = st.bundle.pca
    model = json.dumps({
        "k": st.bundle.k, "latent": st.bundle.latent, "sample_rate": st.sr,
        "samples": st.samples, "normaliser": st.normaliser,
        "names": [display_name(n) for n in st.bundle.names],
        "workdir": os.path.basename(st.wd.root), "fit": st.fit,
        "decoder": {k: {n: a.tolist() for n, a in v.items()} for k, v in st.decoder.items()},
        "pca": {"center": p["center"].tolist(), "components": p["components"].tolist(),
                "variance": np.asarray(p["variance"]).tolist(),
                "explained": np.asarray(p["explained"]).tolist()}}).encode()
    audio_bytes = np.ascontiguousarray(st.bundle.full_sources, "<f4").tobytes()

    @router.get("/api/model", summary="What the page needs to decode and mix by itself",
                response_class=Response, responses={200: {"content": {"application/json": {}}}})
    async def model_info():
        return Response(model, media_type="application/json")

    @router.get("/api/sources", summary="The sources' audio at full band (the model's "
             "sample_rate): float32 little-endian [k, samples]", response_class=Response)
    async def sources():
        return Response(audio_bytes, media_type="application/octet-stream")

    @router.get("/api/corpus", summary="The corpus clips that can be a starting point")
    async def corpus_clips() -> list[Clip]:
        return st.clips

    @router.get("/api/kit", summary="The pads of a kit: none in the studio of one model (the "
                "page asks, to know which studio it is)")
    async def no_kit() -> dict:
        return {"pads": [], "skipped": {}, "notes": {}}
    return router


REFINEMENT_HEADER = "X-Drumlayer-Refinement"  # which refinement made an encoded recipe


def _encode_routes(st: Studio, max_upload_mb: float) -> APIRouter:
    """Recipes of a sound: a corpus clip, a source, an upload; and the audio they came from."""
    router = APIRouter()
    limit = int(max_upload_mb * 1024 * 1024)

    def said(response: Response, used: list) -> None:
        """Which refinement answered: the default ('shape'), or 'weights' while the default is
        still starting (`Studio.refiner`), or 'none'."""
        response.headers[REFINEMENT_HEADER] = used[0] if used else "none"

    # GETs: a corpus clip's or a source's recipe keeps nothing (its original is made again
    # from its id), so that no request, however often sent, evicts a person's uploads
    @router.get("/api/corpus/{clip_id}/recipe", summary="Encode a corpus clip")
    def corpus_recipe(clip_id: int, response: Response,
                      refine: Annotated[bool, Query(description=REFINE_DOC)] = True) -> Recipe:
        x, heard = originals.corpus_clip(st, clip_id)
        used = []
        r = st.recipe_from_clip(x, f"corpus: {st.clips[clip_id].name}", refine, heard, used,
                                token=f"corpus-{clip_id}")
        said(response, used)
        return r

    @router.get("/api/sources/{index}/recipe", summary="Encode one of the sources")
    def source_recipe(index: int, response: Response,
                      refine: Annotated[bool, Query(description=REFINE_DOC)] = True) -> Recipe:
        x, heard = originals.source_clip(st, index)
        used = []
        r = st.recipe_from_clip(x, f"source: {display_name(st.bundle.names[index])}", refine,
                                heard, used, token=f"source-{index}")
        said(response, used)
        return r

    @router.post("/api/encode", summary="Encode an uploaded sample (multipart field `file`)")
    async def encode(file: Annotated[UploadFile, File(description="audio, any format the "
                                                      "corpus reads")], response: Response,
                     refine: Annotated[bool, Query(description=REFINE_DOC)] = True) -> Recipe:
        data = await file.read(limit + 1)
        label = os.path.basename(file.filename or "upload")[:100]
        if len(data) > limit:
            raise HTTPException(413, f"{label} is over the studio's limit of {max_upload_mb:g} "
                                "MB; trim it or restart with a larger --max_upload_mb")
        # decoding and refining take a CPU for a while: off the event loop, so that the page's
        # other requests (and other people's) are served meanwhile
        used = []
        r = await run_in_threadpool(st.recipe_from_upload, data, label, refine, used)
        said(response, used)
        return r

    @router.post("/api/shape", summary="Refine the layers' shaping against the recipe's "
                 "original (analysis by synthesis, mode 'shape')")
    def shape(recipe: Recipe, response: Response) -> Recipe:
        with st.workers:
            said(response, ["shape"])
            return st.shape(recipe)

    @router.get("/api/original/{token}", summary="The audio a recipe was encoded from",
             response_class=Response)
    def original(token: str):
        pair = st.original(token)
        if pair is None:
            raise HTTPException(404, "unknown or expired token: encode the sample again")
        return _wav(render_lib.wav_bytes(pair[1], st.sr, "FLOAT"))
    return router


def _recipe_routes(st: Studio) -> APIRouter:
    """What a recipe is: its weights, its match to its original, its sound and exports."""
    router = APIRouter()

    @router.post("/api/weights", summary="A recipe's decoded and edited weights")
    def weights(recipe: Recipe) -> Weights:
        d, w = st.weights(recipe)
        return Weights(decoded=d.tolist(), weights=w.tolist())

    @router.post("/api/match", summary="How close a recipe's sound is to the sample it came from")
    def match(recipe: Recipe) -> Match:
        return st.match(recipe)

    @router.post("/api/describe", summary="A recipe with its weights and PCA coordinates filled")
    def filled_recipe(recipe: Recipe) -> Recipe:
        return st.filled(recipe)

    @router.post("/api/render", summary="A recipe's sound as WAV", response_class=Response)
    def render(recipe: Recipe,
               sample_rate: Annotated[int | None, Query(description=RATE_DOC)] = None,
               export: Annotated[bool, Query(description="24-bit, peak at -1.05 dBFS")] = False):
        sample_rate = sample_rate or st.sr
        _rate(sample_rate)
        if export:
            rate = 44100 if sample_rate == 22050 else sample_rate
            return _wav(render_lib.export_wav(st.render(recipe, rate=rate), rate, rate),
                        f"layered_{rate}.wav")
        x = st.render(recipe)
        if sample_rate != st.sr:
            x = audio.resample(x, st.sr, sample_rate)
        return _wav(render_lib.wav_bytes(x, sample_rate, "FLOAT"))

    exports.add_routes(router, st, _rate, RATE_DOC)
    voices.add_routes(router, st)
    return router
