"""Random malformed CSVs thrown at every reader: a result an independent pandas/csv reading agrees
with, or one `EnsembleError` line — never another exception (issue 18)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ensemble import read_table
from ensemble._io import read_string_csv
from ensemble.errors import EnsembleError, LabelError
from ensemble.labels import read_labels
from ensemble.submission import read_submission

ODD = ["nan", "1e400", "True", "TRUE", "0x10", " 1 ", "", "-0", "1e-400", "NA", "inf", "é", "a,b", '"q"', "x" * 200_000]
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def csv_files(draw: st.DrawFn, table: bool) -> tuple[bytes, list[str]]:
    """(file bytes, header): mostly well-formed, then mutated: ragged rows, odd cells, encodings, separators."""
    n = draw(st.integers(0, 6))
    header = ["id", "a", "b"] if table else ["id", "label"]
    rows = []
    for i in range(n):
        p = draw(st.floats(0, 1, allow_nan=False))
        rows.append([f"{i:03d}", repr(p), repr(1 - p)] if table else [f"{i:03d}", draw(st.sampled_from(["cat", "dog", "0"]))])
    for _ in range(draw(st.integers(0, 3))):  # mutations
        kind = draw(st.sampled_from(["cell", "extra", "drop", "header"]))
        if kind == "header":
            header[draw(st.integers(0, len(header) - 1))] = draw(st.sampled_from(ODD + ["id", "a"]))
        elif rows:
            r = rows[draw(st.integers(0, len(rows) - 1))]
            if kind == "cell":
                r[draw(st.integers(0, len(r) - 1))] = draw(st.sampled_from(ODD))
            elif kind == "extra":
                r.append(draw(st.sampled_from(ODD)))
            elif len(r) > 1:
                r.pop()
    sep = draw(st.sampled_from([",", ",", ";", "\t"]))
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    return buf.getvalue().encode(encoding, errors="replace"), header


def _oracle(path: Path) -> pd.DataFrame:
    """Independent reading: every row must have the header's field count, then pandas as strings."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    assert rows and len(rows) > 1 and all(len(r) == len(rows[0]) for r in rows), rows[:3]
    return pd.DataFrame(rows[1:], columns=rows[0])


def _one_line(e: EnsembleError, path: Path) -> None:
    assert "\n" not in str(e) and str(e).strip(), repr(str(e))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "x.csv"


@SETTINGS
@given(data=csv_files(table=True))
def test_read_table_on_random_malformed_csv_raises_other_exceptions(path, data):
    path.write_bytes(data[0])
    try:
        t = read_table(path)
    except EnsembleError as e:
        return _one_line(e, path)
    ref = _oracle(path)
    assert t.ids.tolist() == ref["id"].tolist() and t.classes == list(ref.columns[1:])
    np.testing.assert_allclose(t.probs, ref[t.classes].astype(float).to_numpy(), rtol=1e-6, atol=1e-7)


@SETTINGS
@given(data=csv_files(table=False))
def test_string_readers_on_random_malformed_csv_raise_other_exceptions(path, data):
    path.write_bytes(data[0])
    for read in (
        lambda: read_string_csv(path, LabelError, missing="none"),
        lambda: read_labels(path, require=()),
        lambda: read_submission(path),
    ):
        try:
            got = read()
        except EnsembleError as e:
            _one_line(e, path)
            continue
        ref = _oracle(path)
        if isinstance(got, pd.DataFrame) and "target" in got.columns:  # the submission: sorted by id
            assert got["id"].tolist() == sorted(ref["id"].tolist())
        elif isinstance(got, pd.DataFrame):
            assert got.astype(str).values.tolist() == ref.values.tolist()  # (pandas names an empty header "Unnamed: i")
        else:
            assert got.ids.tolist() == ref["id"].tolist()
