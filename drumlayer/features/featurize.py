"""Features of every clip in a clip file, written to a feature file block by block (the main
job's features stage). The features themselves are `extractor.features`."""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from tqdm import tqdm

from drumlayer.data import npy_rows
from drumlayer.features import extractor


def feature_file(src: str, dst: str, n_fft: int, hop: int, compression: str, batch: int,
                 desc: str = "features") -> None:
    """features of every row of the clip file src [N, S] -> dst [N, n_fft // 2 + 1], in padded
    blocks of `batch` rows (one shape, one compilation); dst appears only when complete."""
    n = npy_rows.num_rows(src)
    fn = jax.jit(lambda x: extractor.features(x, n_fft, hop, compression=compression))
    tmp = dst + ".tmp.npy"
    with npy_rows.RowWriter(tmp, (n_fft // 2 + 1,), np.float32, n) as out:
        for i in tqdm(range(0, n, batch), desc=desc, unit="batch", file=sys.stderr,
                      mininterval=1.0):
            block = npy_rows.read_rows(src, i, i + batch)
            pad = batch - block.shape[0]
            f = np.asarray(fn(np.pad(block, ((0, pad), (0, 0)))))[: block.shape[0]]
            for row in f:
                out.append(row)
    os.replace(tmp, dst)
