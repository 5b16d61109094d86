"""Ablation of configs/snare.py:
the source library drawn at random from the training snares, not by Frank-Wolfe.

    python -m drumlayer.main --config=configs/ablations/random_sources.py
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import snare  # noqa: E402


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.selection.method = "random"
    return c
