"""Ablation of configs/snare.py:
the source library as k medoids of the normalised training features.

    python -m drumlayer.main --config=configs/ablations/kmedoids_sources.py
"""

from drumlayer import configs

snare = configs.sibling(__file__, "../snare.py")


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.selection.method = "k_medoids"
    return c
