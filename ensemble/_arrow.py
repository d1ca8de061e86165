"""Between pyarrow columns and the float32 (n_samples, n_classes) array, for the table formats."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

# Rows whose every class is written before the next block: the block (~0.6 MB at 18 classes) stays in
# cache across its C strided column writes, instead of C passes over the whole array (~2.7x faster)
_BLOCK_ROWS = 8192


def probs_from_columns(columns: list[pa.ChunkedArray], n: int) -> np.ndarray:
    """Float32 columns stacked into (n, C), one copy; nulls come out as NaN (refused by the checker)."""
    probs = np.empty((n, len(columns)), dtype=np.float32)
    for start, arrays in _chunk_runs(columns):
        m = len(arrays[0])
        for lo in range(0, m, _BLOCK_ROWS):
            hi = min(lo + _BLOCK_ROWS, m)
            block = probs[start + lo : start + hi]
            for j, values in enumerate(arrays):
                block[:, j] = values[lo:hi]
    return probs


def _chunk_runs(columns: list[pa.ChunkedArray]) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(first row, each column's values) per run of rows that every column holds in one chunk."""
    if not columns:
        return
    lengths = [len(c) for c in columns[0].chunks]
    if any([len(c) for c in column.chunks] != lengths for column in columns[1:]):
        yield 0, [column.to_numpy() for column in columns]  # chunked differently: whole columns
        return
    start = 0
    for k, m in enumerate(lengths):
        yield start, [column.chunk(k).to_numpy(zero_copy_only=False) for column in columns]
        start += m


def table_of(ids: np.ndarray, probs: np.ndarray, names: list[str]) -> pa.Table:
    """`id` (strings) then one float32 column per class, named `names` (the id's name first)."""
    columns = probs.T.copy()  # (C, n): each class contiguous, so arrow takes it without a copy
    return pa.table([pa.array(ids, type=pa.string()), *(pa.array(col) for col in columns)], names=names)
