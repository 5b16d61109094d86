"""Running a jit-compiled function over many rows in padded blocks of one shape."""

from __future__ import annotations

import jax
import numpy as np


def in_blocks(fn, *arrays, block: int = 64):
    """fn over the leading axis of arrays [N, ...] in padded blocks of `block` rows (one shape,
    one compilation); the outputs (a pytree of [block, ...]) are joined and cut back to N."""
    n = arrays[0].shape[0]
    outs = []
    for i in range(0, n, block):
        part = [np.asarray(a[i:i + block]) for a in arrays]
        pad = block - part[0].shape[0]
        part = [np.pad(p, [(0, pad)] + [(0, 0)] * (p.ndim - 1)) for p in part]
        outs.append(jax.device_get(fn(*part)))
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:n], *outs)


def block_size(n: int, largest: int) -> int:
    """The block for n rows: the smallest power of two >= n, at most `largest` (few shapes,
    little padding)."""
    return min(largest, 1 << max(0, (n - 1).bit_length()))
