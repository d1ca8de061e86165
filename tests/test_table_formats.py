"""Table files: exact float32 text, Parquet beside CSV (same contract), and the folder rule for both."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ensemble import make_table, read_table, write_table
from ensemble.errors import OutputExistsError, TableError
from ensemble.tables import resolve_table_path, sidecar_path
from tests.conftest import random_probs

CLASSES = ["a", "b", "c"]


def _awkward_float32(rng: np.random.Generator, n: int) -> np.ndarray:
    """Every kind of finite float32: random bit patterns, subnormals, 0, -0, 1, tiny and huge values."""
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    special = np.array([0.0, -0.0, 1.0, 1e-8, 1e-45, 2**-149, 1.1754942e-38, 1.17549435e-38, 3.4028235e38,
                        0.1, 1 / 3, 0.99999994, 5e-324], dtype=np.float32)
    x = np.concatenate([bits[np.isfinite(bits)], special])
    return x[: len(x) // len(CLASSES) * len(CLASSES)].reshape(-1, len(CLASSES))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_every_float32_survives_the_round_trip_bit_exactly(tmp_path, suffix):
    """Bypasses the probability checks (values are not rows of probabilities) to test the text alone."""
    from ensemble import _csv_table, _parquet_table

    fmt = {".csv": _csv_table, ".parquet": _parquet_table}[suffix]
    x = _awkward_float32(np.random.default_rng(0), 30_000)
    ids = np.array([f"{i:06d}" for i in range(len(x))], dtype=object)
    path = tmp_path / f"t{suffix}"
    fmt.write(path, ids, CLASSES, x, {})
    got_ids, classes, back = fmt.read(path, str(path))
    assert classes == CLASSES and got_ids.to_pylist() == ids.tolist()
    np.testing.assert_array_equal(back.view(np.uint32), x.view(np.uint32))
    if suffix == ".csv":  # an independent reader (Python's float, then float32) gets the same bits
        oracle = pd.read_csv(path, dtype={"id": str})
        np.testing.assert_array_equal(oracle[CLASSES].to_numpy().astype(np.float32).view(np.uint32), x.view(np.uint32))


def test_csv_text_is_plain_and_quoted_only_when_an_id_needs_it(tmp_path):
    t = make_table(["00042", "a,b", 'q"'], ["x", "y, z"], np.array([[0.1, 0.9], [1.0, 0.0], [1e-8, 1 - 1e-8]]))
    path = write_table(t, tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == 'id,x,"y, z"'
    assert lines[1] == '"00042",0.1,0.9'  # pyarrow quotes every id once one needs it
    back = read_table(path)
    assert back.ids.tolist() == ["00042", "a,b", 'q"'] and back.classes == ["x", "y, z"]
    np.testing.assert_array_equal(back.probs, t.probs)
    assert write_table(make_table(["1"], ["x"], np.ones((1, 1))), tmp_path / "u.csv").read_text() == "id,x\n1,1\n"


def test_parquet_table_has_the_same_contract(tmp_path, rng):
    probs = random_probs(rng, 6, 3)
    ids = [f"{i:03d}" for i in range(6)]
    t = make_table(ids, CLASSES, probs, meta={"model": "m"}, views={"hflip": random_probs(rng, 6, 3)})
    write_table(t, tmp_path / "m" / "oof.parquet")
    back = read_table(tmp_path / "m")  # the folder's oof.parquet
    assert back.ids.tolist() == ids and back.classes == CLASSES and back.name == "m"
    np.testing.assert_array_equal(back.probs, probs)
    assert set(back.views) == {"hflip"}
    schema = pq.read_schema(tmp_path / "m" / "oof.parquet")
    assert schema.names == ["id", *CLASSES] and schema.field("id").type == pa.string()
    assert all(schema.field(c).type == pa.float32() for c in CLASSES)
    assert json.loads(schema.metadata[b"ens"])["model"] == "m"  # a copy; the sidecar is the source of truth
    assert json.loads(sidecar_path(tmp_path / "m" / "oof.parquet").read_text())["classes"] == CLASSES


def test_parquet_columns_are_written_without_a_dictionary(tmp_path, rng):
    """Unique ids and continuous probabilities never fit a dictionary page: none is attempted (see write)."""
    t = make_table([f"{i:05d}" for i in range(2000)], CLASSES, random_probs(rng, 2000, 3))
    meta = pq.ParquetFile(write_table(t, tmp_path / "t.parquet")).metadata.row_group(0)
    for j in range(meta.num_columns):
        assert not meta.column(j).has_dictionary_page and meta.column(j).compression == "SNAPPY"


def test_parquet_written_by_pandas_is_read_and_checked(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"id": [7, 8], "a": [0.25, 1.0], "b": [0.75, 0.0]}).to_parquet(path)
    t = read_table(path)
    assert t.ids.tolist() == ["7", "8"] and t.probs.dtype == np.float32
    pd.DataFrame({"id": ["1"], "a": [0.5], "b": [0.4]}).to_parquet(path)
    with pytest.raises(TableError, match=r"1 rows do not sum to 1"):
        read_table(path)
    pd.DataFrame({"id": ["1"], "a": ["x"], "b": [1.0]}).to_parquet(path)
    with pytest.raises(TableError, match=r"class column 'a' holds non-numeric values \(type (large_)?string\)"):
        read_table(path)
    pd.DataFrame({"name": ["1"], "a": [1.0]}).to_parquet(path)
    with pytest.raises(TableError, match=r"first column is 'name', expected 'id'"):
        read_table(path)
    pd.DataFrame({"id": ["1", None], "a": [1.0, 1.0]}).to_parquet(path)
    with pytest.raises(TableError, match=r"1 rows have an empty id"):
        read_table(path)
    pd.DataFrame({"id": pd.Series([], dtype=str), "a": pd.Series([], dtype="float32")}).to_parquet(path)
    with pytest.raises(TableError, match=r"no rows \(only a header\)"):
        read_table(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(TableError, match=r"p.parquet: not a readable Parquet file .*; write it with ens or pandas.to_parquet"):
        read_table(path)


def test_folder_with_both_formats_is_refused_naming_both(tmp_path, rng):
    t = make_table(["1"], CLASSES, random_probs(rng, 1, 3))
    write_table(t, tmp_path / "oof.csv")
    (tmp_path / "oof.parquet").write_bytes(b"")
    with pytest.raises(TableError, match=r"holds both oof.csv and oof.parquet; keep one of them \(they share the sidecar oof.json\)"):
        resolve_table_path(tmp_path)
    assert resolve_table_path(tmp_path / "oof.csv") == tmp_path / "oof.csv"  # a named file is not ambiguous


def test_writing_the_other_format_needs_force_and_then_replaces_it(tmp_path, rng):
    t = make_table(["1"], CLASSES, random_probs(rng, 1, 3))
    write_table(t, tmp_path / "oof.csv")
    with pytest.raises(OutputExistsError, match=r"oof.csv exists; pass --force"):
        write_table(t, tmp_path / "oof.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oof.csv", "oof.json"]
    write_table(t, tmp_path / "oof.parquet", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oof.json", "oof.parquet"]
    np.testing.assert_array_equal(read_table(tmp_path).probs, t.probs)


def test_check_probs_never_copies_a_read_table_to_float64(tmp_path, rng, monkeypatch):
    """The checker works a block of rows at a time: its results equal the whole-table float64 check."""
    import ensemble.tables as tables

    probs = random_probs(rng, 50, 3)
    probs[[7, 31]] = [[0.5, 0.2, 0.2], [0.5, 0.4, 0.4]]  # two bad sums in different blocks
    monkeypatch.setattr(tables, "_CHECK_ROWS", 8)
    with pytest.raises(TableError, match=r"2 rows do not sum to 1 \(first: row 7 sums to 0.9\)"):
        make_table([str(i) for i in range(50)], CLASSES, probs)
    logits = rng.normal(size=(50, 3))
    t = make_table([str(i) for i in range(50)], CLASSES, logits, from_logits=True)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_array_equal(t.probs, (expected / expected.sum(1, keepdims=True)).astype(np.float32))


def test_columns_chunked_alike_or_not_stack_into_the_same_probabilities(rng):
    import pyarrow as pa

    from ensemble._arrow import probs_from_columns

    n, c = 20_000, 4
    probs = rng.random((n, c), dtype=np.float32)
    alike = [pa.chunked_array([probs[:7000, j], probs[7000:, j]]) for j in range(c)]  # as a reader's batches
    unlike = [pa.chunked_array(np.array_split(probs[:, j], j + 1)) for j in range(c)]  # each column its own
    for columns in (alike, unlike):
        np.testing.assert_array_equal(probs_from_columns(columns, n), probs)
