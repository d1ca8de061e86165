"""Multi-label submissions: each row's classes above 0.5 joined, read back as the same sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ensemble import make_table
from ensemble.errors import ConfigError, LabelError
from ensemble.submission import SubmissionFormat, read_submission, write_submission

CLASSES = ["Cardiomegaly", "Effusion", "Hernia", "Mass", "No_Finding"]


@pytest.fixture
def table(rng):
    n = 200
    probs = rng.random((n, len(CLASSES))) ** 2  # mostly below 0.5: some rows have no class above it
    probs[0] = [0.5, 0.5, 0.2, 0.1, 0.3]  # exactly 0.5 is not above it: row 0 has no class, top class 0
    return make_table([f"{i:05d}" for i in range(n)][::-1], CLASSES, probs, task="multilabel")


def _expected_sets(table, *, as_index: bool, allow_empty: bool) -> dict[str, frozenset]:
    """Independently: per id, the classes with p > 0.5, else the argmax unless empty rows are allowed."""
    names = [str(i) for i in range(len(CLASSES))] if as_index else CLASSES
    out = {}
    for i, row in zip(table.ids, table.probs):
        chosen = {names[j] for j in range(len(row)) if row[j] > 0.5}
        if not chosen and not allow_empty:
            chosen = {names[int(np.argmax(row))]}
        out[i] = frozenset(chosen)
    return out


@pytest.mark.parametrize("target_format", ["name", "labels", "index"])
@pytest.mark.parametrize("allow_empty", [False, True])
@pytest.mark.parametrize("sep", [" ", "|"])
def test_round_trip_table_write_read_same_sets(tmp_path, table, target_format, allow_empty, sep):
    fmt = SubmissionFormat("image_id", "Finding Labels", target_format, label_sep=sep, allow_empty=allow_empty)
    write_submission(table, tmp_path / "s.csv", fmt)
    raw = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    assert list(raw.columns) == ["image_id", "Finding Labels"] and raw["image_id"].tolist() == list(table.ids)
    expected = _expected_sets(table, as_index=target_format == "index", allow_empty=allow_empty)
    assert (raw["Finding Labels"] == "").sum() == sum(not s for s in expected.values())
    assert (raw["Finding Labels"] == "").any() == allow_empty  # the fixture has rows with no class above 0.5
    back = read_submission(tmp_path / "s.csv", fmt, task="multilabel")
    assert back.attrs["task"] == "multilabel" and back["id"].tolist() == sorted(table.ids)
    assert {i: frozenset(t) for i, t in zip(back["id"], back["target"])} == expected
    # classes are written in class-index order
    first = raw["Finding Labels"].iloc[np.flatnonzero(raw["Finding Labels"].str.contains(sep, regex=False))[0]]
    order = [CLASSES.index(c) if target_format != "index" else int(c) for c in first.split(sep)]
    assert order == sorted(order)


def test_row_with_no_class_gets_its_top_class(tmp_path, table):
    write_submission(table, tmp_path / "s.csv")
    raw = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False).set_index("id")["label"]
    assert raw[table.ids[0]] == "Cardiomegaly"  # 0.5 and 0.5: neither above, the first top class


def test_labels_is_name_for_a_multiclass_table(tmp_path):
    t = make_table(["1", "2"], ["cat", "dog"], np.array([[0.3, 0.7], [0.6, 0.4]]))
    write_submission(t, tmp_path / "a.csv", SubmissionFormat(target_format="labels"))
    write_submission(t, tmp_path / "b.csv", SubmissionFormat(target_format="name"))
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text() == "id,label\n1,dog\n2,cat\n"


def test_sets_read_in_any_order_with_blanks_are_the_same(tmp_path):
    (tmp_path / "s.csv").write_text("id,label\n1,b a\n2,a  b \n3,a a\n")
    back = read_submission(tmp_path / "s.csv", task="multilabel")
    assert back["target"].tolist() == [("a", "b"), ("a", "b"), ("a",)]


def test_probs_of_a_multilabel_table_read_as_decisions(tmp_path, table):
    fmt = SubmissionFormat(target_format="probs")
    write_submission(table, tmp_path / "s.csv", fmt)
    back = read_submission(tmp_path / "s.csv", fmt, task="multilabel")
    expected = _expected_sets(table, as_index=False, allow_empty=True)
    assert {i: frozenset(t) for i, t in zip(back["id"], back["target"])} == expected
    assert back.attrs["digest"] and back.attrs["task"] == "multilabel"


def test_errors(tmp_path, table):
    with pytest.raises(ConfigError, match="--submission-label-sep is empty; give what joins a multi-label row's classes"):
        SubmissionFormat(label_sep="")
    with pytest.raises(ConfigError, match="hold the submission's label separator '_'; pick another --submission-label-sep"):
        write_submission(table, tmp_path / "s.csv", SubmissionFormat(label_sep="_"))
    assert not (tmp_path / "s.csv").exists()
    write_submission(table, tmp_path / "s.csv", SubmissionFormat(label_sep="_", target_format="index"))  # indices hold no "_"
    (tmp_path / "e.csv").write_text("id,label\n1,a b\n2,\n3, \n")
    with pytest.raises(LabelError, match="2 rows have an empty 'label'; pass --allow-empty if the competition accepts a row with no class"):
        read_submission(tmp_path / "e.csv", task="multilabel")
    assert read_submission(tmp_path / "e.csv", SubmissionFormat(allow_empty=True), task="multilabel")["target"].tolist() == [
        ("a", "b"), (), (),
    ]
    with pytest.raises(LabelError, match="1 rows have an empty 'label'; every id needs a prediction"):
        read_submission(tmp_path / "e.csv", SubmissionFormat(allow_empty=True))  # multiclass: never empty
