"""Recipes: which sources, at what weights, make a sound; and how they are heard.

recipe (the JSON a person saves and loads), render (a recipe to audio, stems and SFZ, in numpy),
bundle (what a trained workdir ships: params, sources, PCA), refine (analysis by synthesis: a
recipe fitted to a target, in JAX; its per-layer shaping by swaps and tune), analyze (the batch
command over a person's own sounds).
"""
