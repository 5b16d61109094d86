"""The studio over a kit workdir (`python -m drumlayer.studio --workdir=runs/kit`): one pad per
trained category, each the whole single-sound studio of its category's model, and the kit's
export.

Each category's studio is mounted at /c/<category>/ (its page API under /c/<category>/api/...);
the page at / shows the pads and talks to the selected pad's studio. /api/kit lists the pads
(and the categories the kit job skipped, with why); POST /api/kit/export renders every pad's
recipes (each pad's round robin: the recipes given, completed to `round_robin` with seeded
latent variants of the first, its edits kept) and returns the kit as a zip: an SFZ kit on the
General MIDI drum map with the round robins, a Hydrogen drumkit and the recipes.
"""

from __future__ import annotations

import os
from typing import Annotated

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from drumlayer.data import categories
from drumlayer.kit import export as export_lib
from drumlayer.recipes.bundle import BundleError
from drumlayer.recipes.recipe import Recipe
from drumlayer.workdir import Workdir, read_json

MAX_ROUND_ROBIN = 16


class KitExport(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")
    pads: dict[str, Annotated[list[Recipe], Field(max_length=MAX_ROUND_ROBIN)]] = Field(
        ..., description="category -> its recipes (the first is the pad's sound); an empty "
                         "list or a missing category is an empty pad")
    round_robin: int = Field(1, ge=1, le=MAX_ROUND_ROBIN,
                             description="variants per pad (seeded latent variants of its "
                                         "first recipe fill a pad that has fewer)")
    amount: float = Field(0.5, ge=0.0, le=2.0, description="variants: standard deviations of "
                                                            "latent jitter per direction")
    name: str = Field("drumlayer kit", min_length=1, max_length=100)
    sample_rate: int = Field(48000, description="44100 or 48000")
    seed: int = 0


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

    @app.get("/api/kit", summary="The pads: trained categories, their GM keys; the skipped")
    def kit() -> dict:
        return {"pads": [{"category": c, "name": categories.PAD_NAMES[c],
                          "gm_key": categories.GM_NOTES[c], "k": app.state.kit[c].bundle.k}
                         for c in trained], "skipped": skipped}

    @app.post("/api/kit/export", summary="The kit as a zip: SFZ (GM map, round robins), "
              "Hydrogen drumkit, recipes", response_class=Response)
    def export(req: KitExport):
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
        pads = {}
        for n, (c, recipes) in enumerate((c, r) for c, r in req.pads.items() if r):
            st = app.state.kit[c]
            more = req.round_robin - len(recipes)
            if more > 0:
                z = export_lib.jitter(st.bundle.pca, np.asarray(recipes[0].latent), more,
                                     req.seed + n, req.amount)
                recipes = recipes + [recipes[0].model_copy(update={"latent": v.tolist()})
                                     for v in z]
            for r in recipes:
                st.check(r)
            audio = np.stack([st.render(r) for r in recipes])
            pads[c] = {"recipes": {"recipes": [st.filled(r).model_dump(exclude_none=True)
                                               for r in recipes]},
                       "audio": audio, "sample_rate": st.sr}
        headers = {"Content-Disposition": 'attachment; filename="drumlayer_kit.zip"',
                   "X-Empty-Pads": ",".join(empty)}
        return Response(export_lib.zip_bytes(export_lib.kit_files(pads, req.name, req.sample_rate)),
                        media_type="application/zip", headers=headers)

    for c, a in apps.items():
        app.mount(f"/c/{c}", a)
    return app
