"""User errors of `select_finals` that `ens select` stops earlier (it reads the labels and the
candidates first): the library call still says what is wrong and the fix."""

from __future__ import annotations

import pandas as pd
import pytest

from ensemble.errors import ConfigError
from ensemble.labels import read_labels
from ensemble.select.candidates import load_candidates
from ensemble.select.finals import select_finals
from tests.select.test_finals import world  # noqa: F401  (fixture: labels and four planted blends)


def test_no_candidates_say_where_they_come_from(world):
    root, _, _ = world
    with pytest.raises(ConfigError, match="no candidates to select from; give recipes or record blends in the ledger"):
        select_finals([], read_labels(root / "train.csv"))


def test_labels_without_label_column_cannot_score_candidates(world):
    root, recipes, _ = world
    pd.read_csv(root / "train.csv", dtype=str).drop(columns="label").to_csv(root / "ids.csv", index=False)
    ids_only = read_labels(root / "ids.csv", require=())
    with pytest.raises(ConfigError, match="ids.csv: no label column; `ens select` scores OOF predictions against labels"):
        select_finals(load_candidates(recipes=list(recipes.values())), ids_only, n=1, n_boot=200)
