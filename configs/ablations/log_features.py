"""Ablation of configs/snare.py:
log-compressed magnitudes (log1p) in the features and the loss, not linear.

    python -m drumlayer.main --config=configs/ablations/log_features.py
"""

from drumlayer import configs

snare = configs.sibling(__file__, "../snare.py")


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.features.compression = "log"
    return c
