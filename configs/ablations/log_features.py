"""Ablation of configs/snare.py:
log-compressed magnitudes (log1p) in the features and the loss, not linear.

    python -m drumlayer.main --config=configs/ablations/log_features.py
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import snare  # noqa: E402


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.features.compression = "log"
    return c
