"""The model a studio runs: a trained workdir's bundle, its corpus, its refinements, and a
recipe's sound (`Studio`); the page's API (server.py) and loops (drumlayer.loops) share it."""

from __future__ import annotations

import collections
import logging
import os
import secrets
import tempfile
import threading

import numpy as np
from fastapi import HTTPException
from pydantic import BaseModel

from drumlayer.data import audio, fullband
from drumlayer.data.dataset import Dataset
from drumlayer.features import measures
from drumlayer.recipes import refine as refine_lib
from drumlayer.recipes import render as render_lib
from drumlayer.recipes.bundle import Bundle, BundleError
from drumlayer.recipes.recipe import NAME_MAX, Recipe, display_name, printable, shorten
from drumlayer.studio import originals, warm
from drumlayer.workdir import Workdir

log = logging.getLogger(__name__)
WORKERS = 2  # uploads decoded and refined at once; more wait
MATCH_BANDS = 256


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
