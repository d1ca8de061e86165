"""Between pyarrow columns and the float32 (n_samples, n_classes) array, for the table formats."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def probs_from_columns(columns: list[pa.ChunkedArray], n: int) -> np.ndarray:
    """Float32 columns stacked into (n, C), one copy; nulls come out as NaN (refused by the checker)."""
    probs = np.empty((n, len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        start = 0
        for chunk in column.chunks:
            probs[start:start + len(chunk), j] = chunk.to_numpy(zero_copy_only=False)
            start += len(chunk)
    return probs


def table_of(ids: np.ndarray, probs: np.ndarray, names: list[str]) -> pa.Table:
    """`id` (strings) then one float32 column per class, named `names` (the id's name first)."""
    columns = probs.T.copy()  # (C, n): each class contiguous, so arrow takes it without a copy
    return pa.table([pa.array(ids, type=pa.string()), *(pa.array(col) for col in columns)], names=names)
