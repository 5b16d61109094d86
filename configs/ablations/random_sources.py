"""Ablation of configs/snare.py:
the source library drawn at random from the training snares, not by Frank-Wolfe.

    python -m drumlayer.main --config=configs/ablations/random_sources.py
"""

from drumlayer import configs

snare = configs.sibling(__file__, "../snare.py")


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.selection.method = "random"
    return c
