"""The studio's exports of a recipe as files for other tools: per-layer stems and an SFZ
instrument (the WAV export is the render route's). Each renders at the export's own rate."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations, which name
# this function's own rate_doc

from typing import Annotated

from fastapi import APIRouter, Query, Response

from drumlayer.recipes import render as render_lib
from drumlayer.recipes.recipe import Recipe


def add_routes(router: APIRouter, st, check_rate, rate_doc: str) -> None:
    """POST /api/export/stems and /api/export/sfz on router, for the studio st (server.Studio);
    check_rate(rate, export=True) refuses a rate that exports do not take."""

    @router.post("/api/export/stems", summary="Per-layer stems (24-bit) and the recipe, zipped",
              response_class=Response)
    def stems(recipe: Recipe,
              sample_rate: Annotated[int, Query(description=rate_doc)] = 48000):
        check_rate(sample_rate, export=True)
        _, w = st.weights(recipe)
        src, rate = st.voice(True, w, sample_rate)
        parts = render_lib.layers(w, src, st.offsets(recipe, rate), recipe.shaping, rate)
        data = render_lib.stems_zip(parts, st.bundle.names, st.env(recipe, rate=rate),
                                    recipe.gain_db, rate, sample_rate,
                                    st.filled(recipe).model_dump())
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": 'attachment; filename="layered_stems.zip"'})

    @router.post("/api/export/sfz", summary="An SFZ instrument of the layers, zipped",
              response_class=Response)
    def sfz(recipe: Recipe, sample_rate: Annotated[int, Query(description=rate_doc)] = 48000):
        check_rate(sample_rate, export=True)
        _, w = st.weights(recipe)
        e = recipe.envelope
        src, rate = st.voice(True, w, sample_rate)
        data = render_lib.sfz_zip(w, src, st.bundle.names, st.offsets(recipe, rate),
                                  e.attack, e.hold, e.decay, recipe.gain_db, rate, sample_rate,
                                  st.filled(recipe).model_dump(), recipe.shaping)
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": 'attachment; filename="layered_sfz.zip"'})
