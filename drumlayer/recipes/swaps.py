"""Sweeps of swaps: each layer of a recipe put on the shaped copy of its source, and the weight,
that lower the surrogate J most (the search over the grid of recipes.refine's 'shape' mode).

The surrogate mixes the bank's feature spectra by weight and its mel powers and frame energies
by weight squared, anchored to the exact values where the sweep starts (recipes.surrogate):
swapping one layer changes the totals by two rows of each table, so every candidate of a layer
is scored at once. Shapes: B targets, K layers each, V copies of a source, C candidates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from drumlayer.features import extractor
from drumlayer.recipes.surrogate import Features, make_anchor, rms_weights, to_db

SWAP_SCALES = (0.5, 2.0)  # the best copies' weights times these are tried too
SWAP_TOP = 4  # that many best copies (all of them in a grid of fewer)


def sweep(sh, target: Features, idx, pick, vs, cost_weight: float):
    """One sweep over the K layers of each target, in turn: each layer is replaced by whichever
    of its source's V copies, at its weight or (for the SWAP_TOP best copies at it) its weight
    times one of SWAP_SCALES, gives the lowest surrogate J (plus cost_weight per shaped layer).
    sh: a refine.Analyzer whose constants are the bank; idx, pick [B, K] (the source and its
    copy), vs [B, K] -> (pick, vs). The surrogate is anchored once, at the start."""
    bank, nv = sh.constants, len(sh.variants)
    b, n = idx.shape
    few = bank.layers(idx * nv + pick)
    anchor = make_anchor(sh, few, vs)
    scales = jnp.asarray(SWAP_SCALES, vs.dtype)
    shaped = (jnp.arange(nv) > 0).astype(vs.dtype)
    tables = (bank.spectra, bank.mel_power, bank.energy)  # added by weight, weight^2, weight^2
    top_n = min(SWAP_TOP, nv)
    tiled = {c: Features(*(None if x is None else jnp.repeat(x, c, axis=0)
                           for x in target._replace(bin_db=None)))
             for c in (nv, top_n * len(scales))}

    def swapped(totals, w, cur, cols, ws):
        """J [B, C] of each total with the layer (weight w [B], column cur [B]) swapped for
        each of cols [B, C] at weights ws [B, C]."""
        c = cols.shape[1]
        s_all, m_all, e_all = (
            (t - (w ** p)[:, None] * table[cur])[:, None] + (ws ** p)[..., None] * table[cols]
            for t, table, p in zip(totals, tables, (1, 2, 2), strict=True))
        feats = extractor.compress(s_all, sh.compression) + anchor[0][:, None]
        feats = jnp.concatenate([feats, jnp.broadcast_to(anchor[1][:, None], feats.shape[
            :-1] + (1,))], -1).reshape(b * c, -1)
        mel_db = to_db(m_all).reshape((b, c) + anchor[2].shape[1:]) + anchor[2][:, None]
        weights = rms_weights(e_all * anchor[3][:, None]).reshape(b * c, -1)
        return sh.objective(Features(feats, mel_db.reshape((b * c,) + anchor[2].shape[1:]),
                                     weights), tiled[c]).reshape(b, c)

    def step(carry, at):
        totals, pick, vs = carry
        w, cur = vs[:, at], idx[:, at] * nv + pick[:, at]
        cand = idx[:, at, None] * nv + jnp.arange(nv)  # [B, V]
        # J plus the cost (the other layers' is the same for every candidate): each copy at w,
        # then the SWAP_TOP best at w times each of SWAP_SCALES
        j = swapped(totals, w, cur, cand, jnp.broadcast_to(w[:, None], cand.shape)) + (
            cost_weight * shaped)
        top = jax.lax.top_k(-j, top_n)[1]  # [B, m]
        cols = jnp.repeat(jnp.take_along_axis(cand, top, 1), len(scales), 1)  # [B, m * s]
        ws = jnp.tile(w[:, None] * scales, (1, top_n))
        j_scaled = swapped(totals, w, cur, cols, ws) + cost_weight * shaped[cols % nv]
        best = jnp.argmin(jnp.concatenate([j, j_scaled], 1), -1)
        col = jnp.concatenate([cand, cols], 1)[jnp.arange(b), best]
        new_w = jnp.concatenate([jnp.broadcast_to(w[:, None], cand.shape), ws], 1)[
            jnp.arange(b), best]
        jv = col - idx[:, at] * nv
        totals = tuple(t - (w ** p)[:, None] * table[cur] + (new_w ** p)[:, None] * table[col]
                       for t, table, p in zip(totals, tables, (1, 2, 2), strict=True))
        return (totals, pick.at[:, at].set(jv), vs.at[:, at].set(new_w)), None

    start = ((few.combine(vs, few.spectra), few.combine(vs * vs, few.mel),
              few.combine(vs * vs, few.energy)), pick, vs)
    (_, pick, vs), _ = jax.lax.scan(step, start, jnp.arange(n))
    return pick, vs
