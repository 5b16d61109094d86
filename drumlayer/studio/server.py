"""The studio's HTTP server (FastAPI): the page, the model it runs, and the audio it exports.

    python -m drumlayer.studio --workdir=runs/snare [--port=8765] [--host=127.0.0.1]

The page decodes and mixes in the browser (every slider move stays on the page); the server
encodes uploads and corpus clips, and renders and exports recipes. OpenAPI docs: /docs.

Safety: it listens on 127.0.0.1 unless told otherwise; uploads above --max_upload_mb are refused
(413); audio is decoded from a temporary file the server names, never from a path in a request
(corpus clips and sources are addressed by integer ids, uploads by a server-made token).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import secrets
import tempfile
import threading
from typing import Annotated

import numpy as np
from fastapi import APIRouter, FastAPI, File, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from drumlayer.data import audio, fullband
from drumlayer.data.dataset import Dataset
from drumlayer.features import measures
from drumlayer.recipes import refine as refine_lib
from drumlayer.recipes import render as render_lib
from drumlayer.recipes.bundle import Bundle, BundleError
from drumlayer.recipes.recipe import NAME_MAX, Recipe, display_name, printable, shorten
from drumlayer.studio import exports, guard, kit_routes, originals, voices, warm
from drumlayer.workdir import Workdir

log = logging.getLogger(__name__)
STATIC = os.path.join(os.path.dirname(__file__), "static")
RATES = (22050, 44100, 48000)
WORKERS = 2  # uploads decoded and refined at once; more wait
MATCH_BANDS = 256
REFINE_DOC = ("refine the recipe by analysis by synthesis (weights and gain fitted to the "
              "sound; ~0.1 s): false gives the encoder's recipe alone")
RATE_DOC = ("output sample rate: 22050, 44100 or 48000 (exports: 44100 or 48000); default: "
            "the bundle's full-band rate")


class Match(BaseModel):
    """A recipe's sound against its original: distances, and both RMS-weighted spectra (dB, in
    MATCH_BANDS equal bands) for a plot."""

    log_spectral_distance_db: float
    mfcc_distance: float
    centroid_error_hz: float
    hz: list[float]
    original_db: list[float]
    mix_db: list[float]


class Weights(BaseModel):
    decoded: list[float]
    weights: list[float]


class Clip(BaseModel):
    id: int
    name: str
    split: str


class Studio:
    """The loaded workdir: bundle, corpus names, and the uploads kept for 'play original'."""

    def __init__(self, workdir: str, keep_uploads: int = 32, fit: str = "timbre"):
        if fit not in refine_lib.FITS:
            raise ValueError(f"fit must be one of {sorted(refine_lib.FITS)}, got {fit!r}")
        self.wd = Workdir(workdir)
        self.fit = fit
        self.bundle = Bundle.load(workdir)
        if self.bundle.pca is None:
            raise BundleError(f"{self.wd.bundle.pca} is missing: rerun the main job on this "
                              "workdir to finish its bundle")
        self.decoder = render_lib.numpy_decoder(self.bundle.params)
        self.normaliser = self.bundle.config["model"]["normaliser"]
        try:  # a workdir copied without its corpus still has a studio, without corpus clips
            self.dataset: Dataset | None = Dataset(self.wd.corpus)
        except FileNotFoundError:
            log.warning("studio: no corpus in %s: corpus clips are not offered", self.wd.corpus)
            self.dataset = None
        rows = self.dataset.rows if self.dataset else []
        self.clips = [Clip(id=int(r["id"]), name=display_name(f"{r['kit']} / {r['instrument']}"),
                           split=r["split"]) for r in rows]
        # token -> (the clip at 22.05 kHz, as the model hears it; the same at self.sr)
        self.originals: collections.OrderedDict[str, tuple[np.ndarray, np.ndarray]] = (
            collections.OrderedDict())
        self.keep_uploads = keep_uploads
        self.lock = threading.Lock()  # the requests' threads share the originals
        self.workers = threading.BoundedSemaphore(WORKERS)
        self._source_features = None
        self._analyzer = self._quick = None
        # building a refinement takes seconds: each has its own lock, not self.lock
        self.analyzer_lock, self.quick_lock = threading.Lock(), threading.Lock()
        # set once the encoder (encode_ready), the weights refinement (quick_ready) and the default
        # refinement (warm) are compiled (warm_up); set from the start without a warm-up
        self.encode_ready, self.quick_ready, self.warm = (threading.Event() for _ in range(3))
        for ready in (self.encode_ready, self.quick_ready, self.warm):
            ready.set()

    def warm_up(self) -> threading.Thread:
        """Compile what answers an upload, on a thread (studio/warm.py)."""
        return warm.warm_up(self)

    @property
    def analyzer(self) -> refine_lib.Analyzer:
        """The default refinement, with the fit the studio was started with (refine.FITS;
        built, and compiled, at its first use)."""
        with self.analyzer_lock:
            if self._analyzer is None:
                self._analyzer = refine_lib.Analyzer.from_bundle(
                    self.bundle, refine_lib.AnalyzeConfig(**refine_lib.FITS[self.fit]))
            return self._analyzer

    @property
    def quick(self) -> refine_lib.Analyzer:
        """The weights refinement (mode 'weights': no bank to build, compiled in a second)."""
        with self.quick_lock:
            if self._quick is None:
                self._quick = refine_lib.Analyzer.from_bundle(self.bundle, refine_lib.QUICK)
            return self._quick

    def refiner(self) -> refine_lib.Analyzer | None:
        """What refines an upload now: the default refinement, except while the warm-up is
        still building it, when the weights refinement answers if it is ready, and before that
        nothing (None: the encoder's recipe, as it is)."""
        if self.warm.is_set():
            return self.analyzer
        return self.quick if self.quick_ready.is_set() else None

    def encoded(self, x: np.ndarray) -> dict:
        """A clip [S]'s latent mean: the Recipe's field."""
        feats = np.asarray(self.bundle.features(x[None]))
        return {"latent": np.asarray(self.bundle.encode(feats)[0])[0].tolist()}

    def shape(self, r: Recipe) -> Recipe:
        """r's original refined again from its encoding (the default refinement: weights, then
        each layer's shaping): a new recipe whose layers' edits (locks, mutes, pruning) start
        afresh and whose offsets are the refinement's."""
        pair = self.original(r.original)
        if pair is None:
            raise HTTPException(404, "the recipe has no original here (unknown or expired): "
                                "encode the sound again")
        an = self.analyzer
        fields = refine_lib.recipe_fields(an(pair[0][None]), 0, an.variants)
        return self.filled(r.model_copy(update={
            **fields, "locks": {}, "muted": [], "solo": [], "prune": 0.0}))

    @property
    def sr(self) -> int:
        """The rate of everything the studio plays and exports: the bundle's full band."""
        return self.bundle.full_rate

    def recipe_from_clip(self, x: np.ndarray, name: str, refine: bool = True,
                         heard: np.ndarray | None = None, used: list | None = None,
                         token: str | None = None) -> Recipe:
        """A canonical clip [S]'s recipe: its latent mean, then (refine) the weights, gain and
        each layer's shaping refined by analysis by synthesis (`analyze`, the default mode);
        filled with weights and PCA coordinates.
        heard: the clip at full band (self.sr), for 'play original'; None: x resampled.
        token: the original's name when the studio can make it again (a corpus clip's or a
        source's, `original`): nothing is kept; None: an upload's, kept among the last
        keep_uploads."""
        an = self.refiner() if refine else None
        if an is None:
            self.encode_ready.wait()
            fields = self.encoded(x)
        else:
            fields = refine_lib.recipe_fields(an(x[None]), 0, an.variants)
        if used is not None:  # which refinement answered (the page says so)
            used.append(an.config.mode if an else "none")
        if token is None:
            token = secrets.token_hex(8)
            if heard is None:
                heard = fullband.band_limited(x, self.sr, self.samples)
            with self.lock:
                self.originals[token] = (x, heard)
                while len(self.originals) > self.keep_uploads:
                    self.originals.popitem(last=False)
        return self.filled(Recipe(**fields, name=shorten(printable(name), NAME_MAX),
                                  original=token))

    def original(self, token: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The sound a recipe was encoded from (`originals.original`), or None."""
        return originals.original(self, token)

    def recipe_from_upload(self, data: bytes, label: str, refine: bool = True,
                           used: list | None = None) -> Recipe:
        """An uploaded file's bytes -> its recipe (`recipe_from_clip`); a file that is not a
        usable sound is a 422 naming it. At most WORKERS run at once: the rest wait."""
        with self.workers, tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "upload")
            with open(path, "wb") as f:
                f.write(data)
            try:
                recording, rate = audio.read_audio(path, max_seconds=10.0, max_duration=30.0)
                x = audio.canonical(recording, rate)
                heard = audio.canonical(recording, rate, audio.ClipSpec(sample_rate=self.sr))
            except audio.AudioError as e:
                raise HTTPException(422, str(e).replace(path, label)) from None
            return self.recipe_from_clip(x, f"upload: {label}", refine, heard, used)

    def match(self, r: Recipe) -> Match:
        """How close the recipe's sound is to the original it was encoded from."""
        pair = self.original(r.original)
        if pair is None:
            raise HTTPException(404, "the recipe has no original here (unknown or expired "
                                "token): encode the sample again")
        x, y = pair[0], self.render(r, full=False)
        d = measures.batch_distances(y[None], x[None])
        spec = np.asarray(self.bundle.features(np.stack([x, y])))[:, :-1]
        parts = np.array_split(np.arange(spec.shape[1]), min(MATCH_BANDS, spec.shape[1]))
        db = 20 * np.log10(np.maximum(np.stack([spec[:, p].mean(-1) for p in parts], -1), 1e-6))
        hz = np.array([p.mean() for p in parts]) * audio.SAMPLE_RATE / int(
            self.bundle.config["features"]["n_fft"])
        return Match(**{k: float(v[0]) for k, v in d.items()}, hz=hz.tolist(),
                     original_db=db[0].tolist(), mix_db=db[1].tolist())

    def filled(self, r: Recipe) -> Recipe:
        """r with its output fields (weights, PCA coordinates) filled in."""
        decoded, w = self.weights(r)
        p = self.bundle.pca
        coords = (np.asarray(r.latent, np.float32) - p["center"]) @ p["components"].T
        return r.model_copy(update={"weights": w.tolist(), "pca": coords.tolist()})

    def check(self, r: Recipe) -> None:
        k, L = self.bundle.k, self.bundle.latent
        if len(r.latent) != L:
            raise HTTPException(422, f"latent has {len(r.latent)} numbers; this model's has {L}")
        if r.residual is not None and len(r.residual) != k:
            raise HTTPException(422, f"residual has {len(r.residual)} numbers; this model has "
                                f"{k} sources")
        for what, idx in (("locks", r.locks), ("muted", r.muted), ("solo", r.solo),
                          ("offsets_ms", r.offsets_ms), ("shaping", r.shaping)):
            bad = [i for i in idx if not 0 <= i < k]
            if bad:
                raise HTTPException(422, f"{what}: layer {bad[0]} does not exist (0..{k - 1})")

    def weights(self, r: Recipe) -> tuple[np.ndarray, np.ndarray]:
        self.check(r)
        decoded = render_lib.decode(self.decoder, np.asarray(r.latent, np.float32), self.normaliser)
        return decoded, render_lib.edit_weights(decoded, r.locks, set(r.muted), set(r.solo),
                                            r.prune, r.residual)

    @property
    def samples(self) -> int:
        return int(self.bundle.full_sources.shape[1])

    def voice(self, full: bool = True, w: np.ndarray | None = None,
              rate: int | None = None) -> tuple[np.ndarray, int]:
        """(sources [k, n], their rate): full band (what is heard), or the model's 22.05 kHz;
        or (rate given) the full band resampled to `rate`, its audible layers (w > 0) only: an
        export plays a layer's pitch and start as a sampler does, at its own rate."""
        b = self.bundle
        if rate is not None and rate != b.full_rate:
            return render_lib.at_rate(w, b.full_sources, b.full_rate, rate), rate
        return (b.full_sources, b.full_rate) if full else (b.sources, audio.SAMPLE_RATE)

    def offsets(self, r: Recipe, rate: int | None = None) -> dict[int, int]:
        return render_lib.offsets(r.offsets_ms, rate or self.sr)

    def env(self, r: Recipe, full: bool = True, rate: int | None = None) -> np.ndarray:
        e, rate = r.envelope, rate or (self.sr if full else audio.SAMPLE_RATE)
        n = self.samples * rate // self.sr if full else self.bundle.sources.shape[1]
        return render_lib.envelope(n, rate, e.attack, e.hold, e.decay)

    def render(self, r: Recipe, full: bool = True, rate: int | None = None) -> np.ndarray:
        """The recipe's sound [n] at full band (self.sr), or (full=False) at 22.05 kHz, or the
        full band rendered at `rate` (an export)."""
        _, w = self.weights(r)
        src, rate = self.voice(full, w, rate)
        return render_lib.render(w, src, self.offsets(r, rate), self.env(r, full, rate),
                                 r.gain_db, r.shaping, rate)


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
