"""Snares from the samples found on this machine: the open kits Debian ships, or data.roots.

The open kits hold about 140 distinct snares, far fewer than the paper's 2,495: the source library
is 40 of the ~110 training snares (the paper: 200 of 2,495), and each training snare gets 16
augmented variants (pitch, decay, EQ tilt, saturation, transient, room) as extra targets.

    python -m drumlayer.main --config=configs/snare.py
    python -m drumlayer.main --config=configs/snare.py:smoke   # tiny, synthetic: CI
"""

from drumlayer import configs

default = configs.sibling(__file__, "default.py")


def get_config(arg: str | None = None):
    c = default.get_config(arg)
    c.data.category = "snare"
    c.data.augment_per_clip = 2 if arg == "smoke" else 16
    if arg != "smoke":
        # ~110 real training snares: a third become the source library, the rest (and 16
        # augmented variants of every training snare) are the targets, ~1,800 like the paper's.
        c.selection.k = 40
    return c
