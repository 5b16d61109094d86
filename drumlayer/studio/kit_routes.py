"""The studio over a kit workdir (`python -m drumlayer.studio --workdir=runs/kit`): one pad per
trained category, each the whole single-sound studio of its category's model, and the kit's
export.

Each category's studio is mounted at /c/<category>/ (its page API under /c/<category>/api/...);
the page at / shows the pads and talks to the selected pad's studio. /api/kit lists the pads
(and the categories the kit job skipped, with why); POST /api/kit/export renders every pad's
recipe (its round robins: seeded latent variants of it, its edits kept; each with its velocity
layers, see studio/voices.py) and returns the kit as a zip: an SFZ kit and a DecentSampler
preset on the General MIDI drum map, a Hydrogen drumkit and the recipes. GET /api/kit/grooves
lists the built-in grooves (drumlayer.kit.groove) the page plays; POST /api/kit/groove renders
a bar of one on the pads as a WAV, GET /api/kit/groove.mid writes it as a MIDI file (the bytes
of `python -m drumlayer.kit.export --groove`). The loop view's routes: studio/loop_routes.py.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from drumlayer.data import categories
from drumlayer.kit import export as export_lib
from drumlayer.kit import groove as groove_lib
from drumlayer.kit import midi, velocity
from drumlayer.recipes.bundle import BundleError
from drumlayer.recipes.recipe import Recipe
from drumlayer.studio import loop_routes, voices
from drumlayer.workdir import Workdir, read_json


class KitExport(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")
    pads: dict[str, Recipe | None] = Field(
        ..., description="category -> its recipe; null or a missing category is an empty pad")
    round_robin: int = Field(1, ge=1, le=voices.MAX_ROUND_ROBIN,
                             description="variants per pad (seeded latent variants of its "
                                         "recipe, its edits kept)")
    velocity_layers: int = Field(velocity.LAYERS, ge=1, le=voices.MAX_LAYERS)
    amount: float = Field(0.5, ge=0.0, le=2.0, description="variants: standard deviations of "
                                                            "latent jitter per direction")
    name: str = Field("drumlayer kit", min_length=1, max_length=100)
    sample_rate: int = Field(48000, description="44100 or 48000")
    seed: int = Field(0, ge=0, le=2**31 - 1)


class KitGroove(KitExport):
    groove: str = Field("rock", description="a built-in groove (GET /api/kit/grooves)")
    tempo: float = Field(100.0, ge=groove_lib.TEMPO[0], le=groove_lib.TEMPO[1],
                         description="beats per minute")


def is_kit_workdir(workdir: str) -> bool:
    """A kit job's workdir (kit.json, no bundle of its own)."""
    wd = Workdir(workdir)
    return os.path.exists(wd.kit_summary) and not os.path.exists(wd.bundle.meta)


def create_kit_app(workdir: str, make_app, add_page) -> FastAPI:
    """The kit studio; make_app(category_workdir) builds each pad's single-sound app,
    add_page(app) serves the page."""
    summary = read_json(Workdir(workdir).kit_summary) or {"categories": {}}
    trained = {c: e["workdir"] for c, e in summary["categories"].items() if "workdir" in e}
    skipped = {c: e.get("skipped") or e.get("failed") or "not trained"
               for c, e in summary["categories"].items() if c not in trained}
    if not trained:

        raise BundleError(f"no category of {workdir} has a trained model "
                          f"({'; '.join(f'{c}: {w}' for c, w in skipped.items())}): run the kit "
                          "job until one finishes")
    apps = {c: make_app(w) for c, w in trained.items()}
    app = FastAPI(title="drumlayer kit studio", version="1",
                  description="One pad per drum category of a trained kit; each pad's studio "
                              "is at /c/<category>/ (see its /docs).")
    app.state.kit = {c: a.state.studio for c, a in apps.items()}

    add_page(app)

    @app.get("/api/kit", summary="The pads: trained categories, their GM keys; the skipped; "
             "the MIDI notes that play each pad")
    def kit() -> dict:
        return {"pads": [{"category": c, "name": categories.PAD_NAMES[c],
                          "gm_key": categories.GM_NOTES[c], "k": app.state.kit[c].bundle.k}
                         for c in trained], "skipped": skipped,
                "notes": categories.gm_keys(trained)}

    def render_pads(req: KitExport) -> tuple[dict, list[str]]:
        """({category: pad} of the request's pads that hold a recipe, the empty pads)."""
        if req.sample_rate not in (44100, 48000):
            raise HTTPException(422, f"sample_rate must be 44100 or 48000, got "
                                f"{req.sample_rate}")
        unknown = sorted(set(req.pads) - set(trained))
        if unknown:
            raise HTTPException(422, f"no pad {unknown[0]!r} in this kit (pads: "
                                f"{', '.join(trained)})")
        empty = [c for c in trained if not req.pads.get(c)]
        if len(empty) == len(trained):
            raise HTTPException(422, "every pad is empty: give at least one pad a sound")
        try:
            pads = {c: voices.pad(app.state.kit[c], r, req.velocity_layers, req.round_robin,
                                  req.amount, req.seed + n)
                    for n, (c, r) in enumerate((c, r) for c, r in req.pads.items() if r)}
        except ValueError as e:
            raise HTTPException(422, f"no velocity layers for a pad: {e}") from None
        return pads, empty

    @app.post("/api/kit/export", summary="The kit as a zip: SFZ and DecentSampler (GM map, "
              "velocity layers, round robins), Hydrogen drumkit, recipes",
              response_class=Response)
    def export(req: KitExport):
        pads, empty = render_pads(req)
        headers = {"Content-Disposition": 'attachment; filename="drumlayer_kit.zip"',
                   "X-Empty-Pads": ",".join(empty)}
        return Response(export_lib.zip_bytes(export_lib.kit_files(pads, req.name, req.sample_rate)),
                        media_type="application/zip", headers=headers)

    @app.get("/api/kit/grooves", summary="The built-in grooves: {name: {category: [[step, "
             "velocity]]}}, sixteenth notes of one bar")
    def grooves() -> dict:
        return {"steps": groove_lib.STEPS, "patterns": groove_lib.PATTERNS}

    @app.post("/api/kit/groove", summary="A bar of a built-in groove on the pads, as a WAV "
              "(24-bit)", response_class=Response)
    def groove(req: KitGroove):
        try:
            groove_lib.check(req.groove, req.tempo)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        pads, _ = render_pads(req)
        name = groove_lib.file_name(req.groove, req.tempo, "wav")
        return Response(export_lib.groove_wav(pads, req.groove, req.tempo, req.sample_rate),
                        media_type="audio/wav",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    add_groove_midi(app, list(trained))
    loop_routes.add_loop_routes(app, app.state.kit, workdir, render_pads, KitExport)
    for c, a in apps.items():
        app.mount(f"/c/{c}", a)
    return app


def add_groove_midi(app: FastAPI, trained: list[str]) -> None:
    """GET /api/kit/groove.mid: a built-in groove as a MIDI file on the kit's pads."""
    @app.get("/api/kit/groove.mid", summary="A bar of a built-in groove as a Standard MIDI File "
             "(GM drum channel 10, the tempo, the velocities) on the kit's pads",
             response_class=Response)
    def groove_mid(groove: str = Query("rock", max_length=100),
                   tempo: float = Query(100.0, ge=groove_lib.TEMPO[0], le=groove_lib.TEMPO[1],
                                        allow_inf_nan=False),
                   pads: str | None = Query(None, max_length=1000, description=(
                       "the pads that sound, comma-separated (default: every pad)"))):
        chosen = trained if pads is None else [p for p in pads.split(",") if p]
        unknown = sorted(set(chosen) - set(trained))
        if unknown:
            raise HTTPException(422, f"no pad {unknown[0]!r} in this kit (pads: "
                                f"{', '.join(trained)})")
        try:
            data = midi.groove_midi(groove, tempo, [c for c in trained if c in chosen])
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        name = groove_lib.file_name(groove, tempo, "mid")
        return Response(data, media_type="audio/midi",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
