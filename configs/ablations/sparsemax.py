"""Ablation of configs/snare.py: sparsemax mixing weights (exactly sparse) instead of softmax.

    python -m drumlayer.main --config=configs/ablations/sparsemax.py
"""

from drumlayer import configs

snare = configs.sibling(__file__, "../snare.py")


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.model.normaliser = "sparsemax"
    return c
