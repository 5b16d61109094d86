"""A built corpus as the later stages read it: the manifest, and clips and features by id.

Ids 0..N-1 are the corpus clips, in manifest order; id N + j is augmented clip j, a variant of
corpus clip `parents[j]`. This is the one place that knows that rule. Reading only: the corpus
builder (`drumlayer.data.corpus`) writes these files; the evaluation and the studio read them
through here without importing the builder (no multiprocessing, kit parsers or sparse graphs).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from drumlayer.data import npy_rows
from drumlayer.workdir import CorpusDir, FeaturesDir

MANIFEST_FIELDS = ("id", "file", "kit", "instrument", "category", "source_format", "licence",
                   "key", "layer", "group", "split")
OUTSIDE = "outside"  # out of library: clips of data.holdout, and their near-copies
SPLITS = ("train", "val", "test", OUTSIDE)
MIN_TEST_CLIPS = 2  # what the evaluation needs of a category's test split (it takes pairs)
POOL = "pool"  # a kit job's other categories' training clips: candidate sources, not targets


def read_manifest(corpus: CorpusDir) -> list[dict[str, str]]:
    """The manifest's rows (MANIFEST_FIELDS, as strings), one per corpus clip, in id order."""
    with open(corpus.manifest, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def read_parents(corpus: CorpusDir) -> np.ndarray:
    """Corpus id [M] of each augmented clip (empty when there are none)."""
    if not os.path.exists(corpus.augmented_index):
        return np.zeros(0, np.int64)
    with open(corpus.augmented_index) as f:
        return np.array([int(line.split(",")[1]) for line in f.readlines()[1:]], np.int64)


class Dataset:
    """The corpus clips and their augmented variants, addressed by one id space."""

    def __init__(self, corpus: CorpusDir, features: FeaturesDir | None = None):
        self.corpus, self.features_dir = corpus, features
        self.rows = read_manifest(corpus)
        self.n = len(self.rows)  # corpus clips
        self.parents = read_parents(corpus) if os.path.exists(corpus.augmented) else np.zeros(
            0, np.int64)

    def __len__(self) -> int:
        return self.n + len(self.parents)

    def corpus_id(self, i: int) -> int:
        """The corpus clip that id i is (or is a variant of)."""
        return int(i) if i < self.n else int(self.parents[i - self.n])

    def variant(self, i: int) -> tuple[int, int] | None:
        """(parent corpus id, j) when id i is the j-th variant of its parent, else None."""
        if i < self.n:
            return None
        a = int(i) - self.n
        parent = int(self.parents[a])
        return parent, a - int(np.argmax(self.parents == parent))

    def split(self) -> np.ndarray:
        """Split name [N] of each corpus clip."""
        return np.array([r["split"] for r in self.rows])

    def ids(self, split: str, augmented: bool = False) -> np.ndarray:
        """Corpus ids of one split, then (augmented=True) the ids of the augmented variants of
        its clips (the augmentation varies the train split, and the val split with
        data.validate_variants)."""
        ids = np.flatnonzero(self.split() == split)
        if augmented:
            ids = np.concatenate([ids, self.n + np.flatnonzero(np.isin(self.parents, ids))])
        return ids

    def name(self, i: int) -> str:
        """'kit / instrument', with ' (variant j)' for augmented clip j."""
        r = self.rows[self.corpus_id(i)]
        return f"{r['kit']} / {r['instrument']}" + ("" if i < self.n else
                                                      f" (variant {i - self.n})")

    def file(self, i: int) -> str:
        return self.rows[self.corpus_id(i)]["file"]

    def audio(self, ids) -> np.ndarray:
        """Audio [len(ids), S] of clip ids (corpus or augmented), read row by row from disk."""
        out = []
        for i in ids:
            path, j = ((self.corpus.clips, int(i)) if i < self.n else
                       (self.corpus.augmented, int(i) - self.n))
            out.append(npy_rows.read_rows(path, j, j + 1)[0])
        return np.stack(out)

    def features(self) -> np.ndarray:
        """Features [N + M, D] of every id (the features stage's output)."""
        if self.features_dir is None:
            raise ValueError("this Dataset was opened without its features folder")
        feats = np.load(self.features_dir.clips)
        if not len(self.parents):
            return feats
        return np.concatenate([feats, np.load(self.features_dir.augmented)])
