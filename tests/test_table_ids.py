"""The id checker on every kind of missing, empty and repeated id, whichever path it takes.

`check_ids` may answer the usual case (unique non-empty strings) from one hash pass; these pin that
every other case still gets the message the full checks give, and that no kind of missing value
(None, NaN, NaT) slips through as an id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ensemble.errors import TableError
from ensemble.tables import check_ids


def _ids(*values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@pytest.mark.parametrize("missing", [None, np.nan, float("nan"), pd.NaT, ""])
def test_a_missing_or_empty_id_is_refused_naming_its_row(missing):
    with pytest.raises(TableError, match=r'^t.csv: 1 rows have an empty id \(rows "2"\); every row needs an id$'):
        check_ids(_ids("a", "b", missing, "c"), "t.csv")


def test_several_empty_ids_are_counted_before_duplicates_are_looked_at():
    with pytest.raises(TableError, match=r'2 rows have an empty id \(rows "0", "3"\)'):
        check_ids(_ids("", "a", "a", None), "t")


def test_duplicates_are_named_once_each():
    with pytest.raises(TableError, match=r'^t: duplicate ids "a", "b"; each id must appear once — drop the repeated rows$'):
        check_ids(_ids("b", "a", "c", "a", "b", "b"), "t")


def test_unique_strings_pass_through_as_the_same_array():
    ids = _ids("00042", "42", " ", "é", "NA", "nan", "None")  # look like missing values, but are strings
    assert check_ids(ids, "t") is ids
    numpy_strings = np.array(["x", "y"]).astype(object)  # numpy's str_ elements are strings too
    assert check_ids(numpy_strings, "t") is numpy_strings
