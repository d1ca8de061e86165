"""Prediction tables as Parquet: an `id` string column, then one float32 column per class.

The sidecar JSON beside the file stays the source of truth; a copy rides in the file's schema
metadata (key `ens`) so the file alone still says what made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ensemble._arrow import probs_from_columns, table_of
from ensemble._io import first_line, json_default
from ensemble.errors import TableError

META_KEY = b"ens"


def read(p: Path, source: str) -> tuple[pa.ChunkedArray, list[str], np.ndarray]:
    """The ids (an Arrow string column), the class names and float32 probabilities (n, C).

    Raises:
        TableError: not a Parquet file, no `id` first column, non-numeric class columns, no rows.
    """
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise TableError(f"{source}: not a readable Parquet file ({first_line(e)}); write it with ens or pandas.to_parquet") from None
    names = table.column_names
    if not names or names[0] != "id":
        first = repr(names[0]) if names else "nothing"
        raise TableError(f"{source}: first column is {first}, expected 'id' followed by one column per class")
    if table.num_rows == 0:
        raise TableError(f"{source}: no rows (only a header); a table needs one row per sample")
    for name, column in zip(names[1:], table.columns[1:]):
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            raise TableError(
                f"{source}: class column {name!r} holds non-numeric values (type {column.type}); "
                "probabilities are numbers only — store it as float32"
            )
    columns = [c.cast(pa.float32(), safe=False) for c in table.columns[1:]]
    return _ids(table.column(0), source), names[1:], probs_from_columns(columns, table.num_rows)


def _ids(column: pa.ChunkedArray, source: str) -> pa.ChunkedArray:
    if pa.types.is_integer(column.type):  # what a CSV of numeric ids reads as
        column = column.cast(pa.string())
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise TableError(f"{source}: the id column has type {column.type}; store ids as strings")
    return column.fill_null("")  # a missing id is refused as empty


def write(path: Path, ids: np.ndarray, classes: list[str], probs: np.ndarray, meta: dict[str, Any]) -> None:
    """Write `id` then one float32 column per class, with the sidecar's metadata in the schema."""
    table = table_of(ids, probs, ["id", *classes]).replace_schema_metadata({META_KEY: json.dumps(meta, default=json_default).encode("utf-8")})
    # No dictionary encoding: unique ids and continuous probabilities never fit pyarrow's default
    # dictionary page, so every column paid a failed dictionary build before falling back to plain.
    # Measured at 1M x 18: ~4-5x less CPU to write, a smaller file (73 vs 83 MB), ~10% faster reads;
    # one-hot (hard label) columns still shrink under the default snappy compression.
    pq.write_table(table, path, use_dictionary=False)
