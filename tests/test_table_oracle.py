"""`read_table` against independent reads of the same file (Python's csv, pandas, pyarrow), bit for bit.

Whatever the readers do for speed (how columns are stacked, how ids become Python strings, how the
file was encoded), a table must read back as the ids, classes, float32 bits and sidecar that
pandas or pyarrow find in the file on their own.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ensemble import make_table, read_table, write_table
from ensemble.tables import sidecar_path
from tests.conftest import random_probs

CLASSES = ["a", "b c", "ü", "d,e", 'q"']
# leading zeros, numbers, unicode, separators, quotes, spaces: what a string id must keep as is
AWKWARD_IDS = ["00042", "42", "7.0", "1e5", "é-ü", "a,b", 'say "x"', " padded ", "tab\there", "x" * 300, "NA_", "-0"]


def _ids(n: int) -> list[str]:
    return AWKWARD_IDS + [f"{i:09d}" for i in range(n - len(AWKWARD_IDS))]


def _oracle_parquet(path) -> tuple[list[str], list[str], np.ndarray]:
    """pyarrow alone: ids as Python strings, class names, each column's values as float32."""
    table = pq.read_table(path)
    columns = [np.asarray(table.column(j).to_numpy(), dtype=np.float64).astype(np.float32) for j in range(1, table.num_columns)]
    return table.column(0).to_pylist(), table.column_names[1:], np.column_stack(columns)


def _oracle_csv(path) -> tuple[list[str], list[str], np.ndarray]:
    """Python's csv module and its correctly rounded `float`, then float32."""
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    values = np.array([[float(x) for x in row[1:]] for row in rows], dtype=np.float64).reshape(len(rows), -1)
    return [row[0] for row in rows], header[1:], values.astype(np.float32)


def _assert_same(table, oracle) -> None:
    ids, classes, probs = oracle
    assert table.ids.dtype == object and all(type(i) is str for i in table.ids)
    assert table.ids.tolist() == ids and table.classes == classes
    assert table.probs.dtype == np.float32 and table.probs.flags.c_contiguous
    np.testing.assert_array_equal(table.probs.view(np.uint32), probs.view(np.uint32))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_ens_wrote_reads_as_pandas_and_pyarrow_read_it(tmp_path, rng, suffix):
    n = 50_000  # several CSV blocks and Parquet pages
    t = make_table(_ids(n), CLASSES, random_probs(rng, n, len(CLASSES)), meta={"model": "m", "folds": [0, 1]})
    path = write_table(t, tmp_path / f"oof{suffix}")
    back = read_table(path)
    _assert_same(back, (_oracle_csv if suffix == ".csv" else _oracle_parquet)(path))
    np.testing.assert_array_equal(back.probs.view(np.uint32), t.probs.view(np.uint32))
    assert back.meta == json.loads(sidecar_path(path).read_text())


def test_parquet_files_from_other_writers_read_as_pyarrow_reads_them(tmp_path, rng):
    """Several row groups, float64 and integer class columns, a pandas index column: cast as pyarrow casts."""
    n = 30_000
    probs = rng.dirichlet(np.ones(3), size=n)  # float64: rounded to float32 once, as pyarrow's cast does
    ids = _ids(n)
    cases = {
        "row groups": pa.table({"id": ids, **{c: probs[:, j].astype(np.float32) for j, c in enumerate("xyz")}}),
        "float64": pa.table({"id": ids, **{c: probs[:, j] for j, c in enumerate("xyz")}}),
        "integers": pa.table({"id": ids, "x": np.ones(n, np.int64), "y": np.zeros(n, np.int8), "z": np.zeros(n, np.int32)}),
    }
    for name, table in cases.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path, row_group_size=7_000)
        _assert_same(read_table(path), _oracle_parquet(path))
    path = tmp_path / "pandas.parquet"
    pd.DataFrame({"id": ids, **{c: probs[:, j] for j, c in enumerate("xyz")}}).to_parquet(path)
    _assert_same(read_table(path), _oracle_parquet(path))


def test_csv_files_from_pandas_read_as_python_reads_them(tmp_path, rng):
    n = 30_000
    probs = random_probs(rng, n, len(CLASSES))
    frame = pd.DataFrame(probs, columns=CLASSES)
    frame.insert(0, "id", _ids(n))
    path = tmp_path / "oof.csv"
    frame.to_csv(path, index=False, float_format="%.9g")  # what ens wrote before it used pyarrow
    back = read_table(path)
    _assert_same(back, _oracle_csv(path))
    np.testing.assert_array_equal(back.probs.view(np.uint32), probs.view(np.uint32))
    oracle = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)  # and as pandas reads it
    assert back.ids.tolist() == oracle["id"].tolist()
    np.testing.assert_array_equal(back.probs.view(np.uint32), oracle[CLASSES].to_numpy().astype(np.float32).view(np.uint32))
