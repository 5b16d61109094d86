"""Ablation of configs/snare.py:
no discriminative pretraining: the VAE starts from random initialisation.

    python -m drumlayer.main --config=configs/ablations/no_pretrain.py
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import snare  # noqa: E402


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.train.pretrain_epochs = 0
    return c
