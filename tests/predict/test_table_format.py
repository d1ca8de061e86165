"""`predict(table_format="parquet")` / `ens predict --format parquet`: the same tables, resumed and cleaned up."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble import read_table
from ensemble.errors import OutputExistsError
from ensemble.predict import plan, predict
from tests.predict._data_helpers import make_config, write_data


@pytest.fixture
def case(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "SHARD_ROWS", 4)
    return tmp_path, write_data(tmp_path, 9, folds=3), make_config(tmp_path, [0, 1, 2])


def run(cfg, csv, out, **kw):
    return predict(cfg, csv, out_dir=out, workers=0, batch_size=4, **{"split": "test", **kw})


def test_parquet_tables_equal_the_csv_ones_and_resume(case):
    d, csv, cfg = case
    as_csv = run(cfg, csv, d / "csv")
    as_parquet = run(cfg, csv, d / "pq", table_format="parquet")
    assert sorted(p.name for p in (d / "pq" / "m").glob("test*")) == sorted(
        p.name.replace(".csv", ".parquet") for p in (d / "csv" / "m").glob("test*"))
    for name, table in as_csv.items():
        np.testing.assert_array_equal(read_table(d / "pq" / f"{name}.parquet").probs, table.probs)
        assert as_parquet[name].ids.tolist() == table.ids.tolist()
    again = run(cfg, csv, d / "pq", table_format="parquet")
    assert {s["status"] for s in again.summary} == {"up to date"}


def test_switching_format_needs_force_then_replaces_the_tables_from_the_parts(case):
    d, csv, cfg = case
    run(cfg, csv, d / "preds")
    with pytest.raises(OutputExistsError, match=r"test_fold0.csv exists \(the table in another format; it would share the sidecar with test_fold0.parquet\) \(and 3 more tables\)"):
        run(cfg, csv, d / "preds", table_format="parquet")
    res = run(cfg, csv, d / "preds", table_format="parquet", force=True)
    assert {s["status"] for s in res.summary} == {"reused"}
    assert sorted(p.name for p in (d / "preds" / "m").glob("test*.*")) == sorted(
        [f"test{s}.{e}" for s in ["", "_fold0", "_fold1", "_fold2"] for e in ("json", "parquet")])


def test_stale_fold_tables_are_removed_in_either_format(case):
    d, csv, cfg = case
    run(cfg, csv, d / "preds", table_format="parquet")
    fewer = make_config(d, [0, 2])
    run(fewer, csv, d / "preds", table_format="parquet", force=True)
    assert not (d / "preds" / "m" / "test_fold1.parquet").exists()
    assert not (d / "preds" / "m" / "test_fold1.json").exists()
