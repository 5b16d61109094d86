"""Ablation of configs/snare.py:
no discriminative pretraining: the VAE starts from random initialisation.

    python -m drumlayer.main --config=configs/ablations/no_pretrain.py
"""

from drumlayer import configs

snare = configs.sibling(__file__, "../snare.py")


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.train.pretrain_epochs = 0
    return c
