"""Ablation of configs/snare.py: sparsemax mixing weights (exactly sparse) instead of softmax.

    python -m drumlayer.main --config=configs/ablations/sparsemax.py
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import snare  # noqa: E402


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.model.normaliser = "sparsemax"
    return c
