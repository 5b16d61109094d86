"""A whole drum kit: one layering model per category, from one corpus of every category.

    python -m drumlayer.main --config=configs/kit.py            # the open kits, or data.roots
    python -m drumlayer.main --config=configs/kit.py:smoke      # tiny: CI

Each category gets the recipe of configs/snare.py (40 sources, 16 augmented variants of each
training clip), with fewer variants where a category has more than 2,000 / 17 training clips
(kit.max_targets) and fewer sources where it has fewer training clips; a category too small to
train is skipped with what it needs. Outputs: WORKDIR/<category>/ (a main job's
workdir each) and WORKDIR/kit.md.
"""

import ml_collections

from drumlayer import configs
from drumlayer.data.categories import KIT_CATEGORIES

snare = configs.sibling(__file__, "snare.py")


def get_config(arg: str | None = None):
    c = snare.get_config(arg)
    c.data.category = "all"  # the corpus: every category at once
    c.kit = ml_collections.ConfigDict()
    c.kit.categories = KIT_CATEGORIES
    # At most this many training clips and variants per category (fewer variants where a
    # category has more clips): ~the paper's 1,836 targets, and what snare.py's recipe gives
    # the open kits' snares (116 x 17); 0: every category gets data.augment_per_clip.
    c.kit.max_targets = 2000
    return c
