"""Row-wise .npy files: write arrays larger than memory one row at a time, read blocks back.

Plain file reads and writes, not memory maps: a memory map's touched pages count as the
process's resident memory, and a corpus of 100,000 clips (8.8 GB) must not look like it needs it.
"""

from __future__ import annotations

import numpy as np


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> dict:
    return {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": shape}


class RowWriter:
    """Append rows [*row_shape] to a .npy of at most max_rows rows; `close` fixes the count.

    Use as a context manager; `close` returns the number of rows written.
    """

    def __init__(self, path: str, row_shape: tuple[int, ...], dtype, max_rows: int):
        self.path, self.row_shape, self.dtype = path, tuple(row_shape), np.dtype(dtype)
        self.rows = 0
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()
        np.lib.format.write_array_header_2_0(self._f, _header(self.dtype, (max_rows,
                                                                          *self.row_shape)))

    def append(self, row: np.ndarray) -> int:
        """Write one row; returns its index."""
        row = np.ascontiguousarray(row, dtype=self.dtype)
        if row.shape != self.row_shape:
            raise ValueError(f"row of shape {row.shape}, expected {self.row_shape}")
        self._f.write(row.tobytes())
        self.rows += 1
        return self.rows - 1

    def close(self) -> int:
        if not self._f.closed:
            self._f.close()
            shrink_npy(self.path, self.rows)
        return self.rows

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_header(f) -> tuple[tuple[int, ...], np.dtype, int]:
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read(f)
    if fortran:
        raise ValueError("Fortran-ordered .npy files are not supported")
    return shape, dtype, f.tell()


def shrink_npy(path: str, rows: int) -> None:
    """Cut a C-order .npy file to its first `rows` rows in place (the header keeps its size)."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        f.seek(0)
        shape, dtype, offset = _open_header(f)
        prefix = 10 if version == (1, 0) else 12  # magic, version, header length
        text = repr(_header(dtype, (rows, *shape[1:]))).encode("latin1")
        room = offset - prefix
        if len(text) + 1 > room:
            raise ValueError(f"{path}: header has no room for shape ({rows}, ...)")
        f.seek(prefix)
        f.write(text + b" " * (room - len(text) - 1) + b"\n")
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        f.truncate(offset + rows * row_bytes)


def read_rows(path: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a .npy file, read with plain I/O -> [stop - start, ...]."""
    with open(path, "rb") as f:
        shape, dtype, offset = _open_header(f)
        stop = min(stop, shape[0])
        row = int(np.prod(shape[1:], dtype=np.int64))
        f.seek(offset + start * row * dtype.itemsize)
        data = np.fromfile(f, dtype=dtype, count=max(0, stop - start) * row)
    return data.reshape(max(0, stop - start), *shape[1:])


def num_rows(path: str) -> int:
    with open(path, "rb") as f:
        return _open_header(f)[0][0]
