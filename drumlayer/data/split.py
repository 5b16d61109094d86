"""Near-duplicate groups (onset signatures) and the train/val/test split by kit or group, so
no kit (or near-copy) is on both sides.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from drumlayer.data import npy_rows
from drumlayer.data.dataset import MIN_TEST_CLIPS

SIGNATURE_HEAD = 2048  # onset samples compared for near-duplicates (93 ms at 22.05 kHz)
SIGNATURE_POOL = 2  # averaged in pairs: a 1024-d signature (2 KB) of the band below ~5.5 kHz


def onset_signature(clip: np.ndarray) -> np.ndarray:
    """clip [S] -> zero-mean unit-norm float16 [SIGNATURE_HEAD // SIGNATURE_POOL]: its onset."""
    x = np.asarray(clip[:SIGNATURE_HEAD], np.float32).reshape(-1, SIGNATURE_POOL).mean(axis=1)
    x = x - x.mean()
    return (x / (np.linalg.norm(x) + 1e-12)).astype(np.float16)


def _components(n: int, edges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected components of a graph on n nodes given edge arrays -> labels [n] in 0..k-1."""
    rows = np.concatenate([e[0] for e in edges] + [np.zeros(0, np.int64)])
    cols = np.concatenate([e[1] for e in edges] + [np.zeros(0, np.int64)])
    graph = sparse.coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]


def _same_key_edges(keys: list) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every item to the first item with the same key."""
    first: dict = {}
    rows = np.arange(len(keys))
    cols = np.array([first.setdefault(k, i) for i, k in enumerate(keys)], dtype=np.int64)
    return rows, cols


def near_duplicate_groups(
    signatures: str | np.ndarray, layer_keys: list[str], threshold: float, block: int = 4096
) -> np.ndarray:
    """Group ids [n]: velocity layers of one instrument (same layer_key) and clips whose onset
    signatures correlate above `threshold` (the same recording reused, e.g. across soundfonts).

    signatures: [n, d] unit-norm rows (`onset_signature`), or the path of a .npy holding them;
    compared block against block, so memory is O(block^2 + block * d) whatever n is.
    """
    n = len(layer_keys)

    def rows(start: int) -> np.ndarray:
        if isinstance(signatures, str):
            return npy_rows.read_rows(signatures, start, start + block).astype(np.float32)
        return np.asarray(signatures[start : start + block], np.float32)

    edges = [_same_key_edges(layer_keys)]
    for i in range(0, n, block):
        left = rows(i)
        for j in range(i, n, block):
            a, b = np.nonzero(left @ rows(j).T >= threshold)
            keep = i + a < j + b  # each unordered pair once
            edges.append((i + a[keep], j + b[keep]))
    return _components(n, edges)


SPLIT_TOLERANCE = 0.5  # split_error above which whole kits are given up for groups


def split_units(units: np.ndarray, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """Assign whole units (kits joined with near-duplicate groups) to splits.

    units: [n] int. Returns [n] int in {0: train, 1: val, 2: test}. Units are visited in a
    seeded random order and each goes to the split furthest below its target share, so the
    shares come close to `fractions` while no unit is ever on two sides.
    """
    fractions = np.asarray(fractions, np.float64) / np.sum(fractions)
    ids, sizes = np.unique(units, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    target = fractions * len(units)
    have = np.zeros(len(fractions))
    assign = {}
    for j in order:
        deficit = (target - have) / np.maximum(target, 1e-9)
        s = int(np.argmax(deficit))
        assign[ids[j]] = s
        have[s] += sizes[j]
    return np.array([assign[u] for u in units], dtype=np.int64)


def split_error(splits: np.ndarray, fractions) -> float:
    """How far split sizes are from their targets: the largest |size - target| / max(target, 1)
    over the splits, or inf when a split whose target is at least one clip got none."""
    f = np.asarray(fractions, np.float64) / np.sum(fractions)
    target = f * len(splits)
    have = np.bincount(splits, minlength=len(f))
    if np.any((target >= 1) & (have == 0)):
        return np.inf
    return float(np.max(np.abs(have - target) / np.maximum(target, 1.0)))


def short_categories(splits: np.ndarray, categories, fractions) -> set[str]:
    """The categories with enough clips to give validation and test MIN_TEST_CLIPS each at
    their shares of `fractions`, that got fewer in splits [n]."""
    f = np.asarray(fractions, np.float64) / np.sum(fractions)
    need = MIN_TEST_CLIPS / max(float(np.min(f[1:])), 1e-9)
    cats = np.asarray(categories)
    return {str(c) for c in np.unique(cats) if np.sum(cats == c) >= need and np.any(
        np.bincount(splits[cats == c], minlength=len(f))[1:] < MIN_TEST_CLIPS)}


def _by_group(groups: np.ndarray, categories, fractions, seed: int) -> np.ndarray:
    """Near-duplicate groups dealt to splits, within each category on its own when given."""
    if categories is None:
        return split_units(groups, fractions, seed)
    cats, out = np.asarray(categories), np.empty(len(groups), np.int64)
    for c in np.unique(cats):
        out[cats == c] = split_units(groups[cats == c], fractions, seed)
    return out


def split_ids(kit_names: list[str], groups: np.ndarray, fractions, seed: int,
              categories: list[str] | None = None) -> tuple[np.ndarray, str]:
    """(splits [n] in {0: train, 1: val, 2: test}, 'kit' or 'group').

    Whole kits (joined with near-duplicate groups) stay on one side, so no test clip shares a
    kit with a training clip. When whole kits cannot come near the fractions (a library in one
    folder is one kit; a few kits of uneven size), or leave a category that has the clips for
    it fewer than MIN_TEST_CLIPS to validate or test on (categories [n]: a kit job's corpus),
    near-duplicate groups alone are dealt instead, within each category: velocity layers and
    reused recordings still never straddle two splits.
    """
    groups = np.asarray(groups)
    by_kit = split_units(_components(len(kit_names), [_same_key_edges(kit_names),
                                                      _same_key_edges(list(groups))]),
                         fractions, seed)
    short = set() if categories is None else short_categories(by_kit, categories, fractions)
    if split_error(by_kit, fractions) <= SPLIT_TOLERANCE and not short:
        return by_kit, "kit"
    by_group = _by_group(groups, categories, fractions, seed)
    if short and len(short_categories(by_group, categories, fractions)) < len(short):
        return by_group, "group"
    if split_error(by_group, fractions) < split_error(by_kit, fractions):
        return by_group, "group"
    return by_kit, "kit"


def clip_subset(clips: np.ndarray, fraction: float, seed: int,
                units: np.ndarray | None = None) -> np.ndarray:
    """A learning curve's draw: clips [N] (the corpus clip each target is or varies) -> a mask
    [N] keeping every target of the units drawn with the seed until they hold at least
    max(1, round(fraction * distinct clips)) clips, and none of the others. units [N]: what is
    drawn whole (e.g. each target's kit); default: the clips themselves. fraction 1 keeps all."""
    if fraction >= 1.0:
        return np.ones(len(clips), bool)
    names, unit = np.unique(clips if units is None else units, return_inverse=True)
    in_unit = np.bincount(  # distinct clips in each unit
        np.unique(np.stack([unit, clips]), axis=1)[0], minlength=len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    need = max(1, round(fraction * len(np.unique(clips))))
    drawn = order[:np.searchsorted(np.cumsum(in_unit[order]), need) + 1]
    return np.isin(unit, drawn)
