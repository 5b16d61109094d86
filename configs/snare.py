"""Snares from the samples found on this machine: the open kits Debian ships, or data.roots.

The open kits hold about 140 distinct snares, far fewer than the paper's 2,495, so each training
target gets augmented variants (pitch, decay, EQ tilt, saturation, transient, room).

    python -m drumlayer.main --config=configs/snare.py
    python -m drumlayer.main --config=configs/snare.py:smoke   # tiny, synthetic: CI
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import default  # noqa: E402


def get_config(arg: str | None = None):
    c = default.get_config(arg)
    c.data.category = "snare"
    c.data.augment_per_clip = 2 if arg == "smoke" else 16
    return c
