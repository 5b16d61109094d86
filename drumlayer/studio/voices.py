"""A recipe as an instrument plays it: its round robins (seeded latent variants, its edits
kept) and each one's velocity layers (`drumlayer.kit.velocity`), rendered. The page plays these
buffers on a pad hit or a MIDI note; the kit export writes the same sounds as its samples.

POST /api/voices returns them as float32 [layers, round robins, samples] at the studio's rate,
scaled as the kit export scales a pad (its loudest peak at -1.05 dBFS, the rest in proportion),
with X-Voices: {"rate", "samples", "round_robin", "layers": [[lovel, hivel]], "level_db",
"range_db"} (a player's gain inside a layer: `velocity.velocity_gain`).
"""

# no `from __future__ import annotations`: FastAPI reads the route's annotations

import json
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response

from drumlayer.kit import export as export_lib
from drumlayer.kit import velocity
from drumlayer.recipes import render as render_lib
from drumlayer.recipes.recipe import GAIN_DB, Recipe

MAX_LAYERS = MAX_ROUND_ROBIN = export_lib.MAX_VARIATIONS


def round_robins(st, r: Recipe, n: int, amount: float, seed: int) -> list[Recipe]:
    """r and n - 1 seeded latent variants of it (its edits kept)."""
    z = export_lib.jitter(st.bundle.pca, np.asarray(r.latent), n - 1, seed, amount)
    return [r] + [r.model_copy(update={"latent": v.tolist()}) for v in z]


def measure(st, r: Recipe):
    """`velocity.plan`'s measure for the recipe r of the studio st: the layers' mix at 22.05 kHz
    of r's edits on the weights decoded at each latent (offsets, shaping and the envelope left
    out: they change the sound alike at every point)."""
    def mix(z):
        decoded = render_lib.decode(st.decoder, np.asarray(z, np.float32), st.normaliser)
        w = np.stack([render_lib.edit_weights(d, r.locks, set(r.muted), set(r.solo), r.prune,
                                              r.residual) for d in decoded])
        return w @ st.bundle.sources

    return velocity.mix_measure(mix)


def pad(st, r: Recipe, layers: int = velocity.LAYERS, round_robin: int = 1,
        amount: float = export_lib.JITTER, seed: int = 0) -> dict:
    """The recipe's pad (`kit.export.pad`): its round robins' velocity layers, rendered at the
    studio's rate."""
    st.check(r)
    rrs = round_robins(st, r, round_robin, amount, seed)

    def sound(z, level_db):
        gain = float(np.clip(r.gain_db + level_db, *GAIN_DB))
        return st.render(r.model_copy(update={"latent": z.tolist(), "gain_db": gain}))

    lays, fits, audio = velocity.voices(np.array([x.latent for x in rrs], np.float32),
                                        measure(st, r), sound, st.sr, st.bundle.pca, layers,
                                        seed=seed)
    return export_lib.pad(lays, fits, audio, st.sr,
                          [st.filled(x).model_dump(exclude_none=True) for x in rrs])


def add_routes(router: APIRouter, st) -> None:
    """POST /api/voices on router for the studio st (server.Studio)."""

    @router.post("/api/voices", summary="The recipe's velocity layers and round robins as the "
                 "page plays them: float32 [layers, round robins, samples]",
                 response_class=Response)
    def voices(recipe: Recipe,
               layers: Annotated[int, Query(ge=1, le=MAX_LAYERS)] = velocity.LAYERS,
               round_robin: Annotated[int, Query(ge=1, le=MAX_ROUND_ROBIN)] = 1,
               amount: Annotated[float, Query(ge=0.0, le=2.0)] = export_lib.JITTER,
               seed: Annotated[int, Query(ge=0, le=2**32 - 1)] = 0):
        try:
            p = pad(st, recipe, layers, round_robin, amount, seed)
        except ValueError as e:  # the model's sounds do not change along any direction there
            raise HTTPException(422, f"no velocity layers for this recipe: {e}") from None
        a = p["audio"]
        scale = render_lib.common_scale(a.reshape(-1, a.shape[-1]))
        meta = {"rate": st.sr, "samples": a.shape[-1], "round_robin": a.shape[1],
                "layers": p["layers"],
                "level_db": [lay["level_db"] for lay in p["recipes"]["velocity_layers"]],
                "range_db": velocity.RANGE_DB}
        return Response((a * np.float32(scale)).astype("<f4").tobytes(),
                        media_type="application/octet-stream",
                        headers={"X-Voices": json.dumps(meta)})
