"""The layering studio: a local web app over a trained workdir (the paper's Figure 6).

    python -m drumlayer.studio --workdir=runs/snare

server.py: the HTTP API (FastAPI); warm.py: what it compiles at start; kit_routes.py: a kit
workdir's pads; static/: the page,
which decodes and mixes in the browser with the arithmetic of drumlayer/recipes/render.py.
"""
