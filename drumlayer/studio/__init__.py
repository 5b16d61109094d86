"""The layering studio: a local web app over a trained workdir (the paper's Figure 6).

    python -m drumlayer.studio --workdir=runs/snare

server.py: the HTTP API (FastAPI); engine.py: recipe -> weights -> audio -> exports (numpy);
static/: the page, which decodes and mixes in the browser with the same arithmetic as engine.py.
"""
