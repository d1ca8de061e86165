"""Small blending problems shared by the blend tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.synthetic import make_problem
from ensemble.labels import read_labels
from ensemble.tables import make_table, write_table


def tables_from(problem, *, n_test: int = 50, classes: list[str] | None = None):
    """OOF and test PredTables (test = the first n_test rows under other ids) of a synthetic problem."""
    n = len(problem.y)
    C = problem.probs.shape[2]
    classes = classes or [f"c{i}" for i in range(C)]
    ids = np.array([f"{i:05d}" for i in range(n)], dtype=object)
    tids = np.array([f"t{i:04d}" for i in range(n_test)], dtype=object)
    oof, test = [], []
    for m, (name, fam) in enumerate(zip(problem.names, problem.families)):
        meta = {"model": name, "family": fam, "folds": sorted(set(problem.folds.tolist()))}
        oof.append(make_table(ids, classes, problem.probs[m], meta=meta))
        test.append(make_table(tids, classes, problem.probs[m][:n_test][::-1], meta=meta))
    return oof, test, ids, classes


def write_problem(root: Path, problem, *, n_test: int = 50) -> tuple[list[Path], Path]:
    """Prediction folders preds/<model>/{oof,test}.csv and train.csv under `root`."""
    oof, test, ids, classes = tables_from(problem, n_test=n_test)
    dirs = []
    for o, t in zip(oof, test):
        d = root / "preds" / o.name
        write_table(o, d / "oof.csv")
        write_table(t, d / "test.csv")
        dirs.append(d)
    labels = root / "train.csv"
    pd.DataFrame({"id": ids, "label": np.array(classes)[problem.y], "fold": problem.folds}).to_csv(labels, index=False)
    return dirs, labels


@pytest.fixture(scope="session")
def small():
    """6 models x 1500 rows x 5 classes."""
    return make_problem(n_models=6, n_samples=1500, n_classes=5, seed=3)


@pytest.fixture
def small_tables(small, tmp_path):
    """(oof tables, test tables, labels) of `small`, labels read from a CSV with folds."""
    dirs, labels_csv = write_problem(tmp_path, small)
    from ensemble.blend.folders import read_members

    oof, test = read_members(dirs)
    return oof, test, read_labels(labels_csv, classes=oof[0].classes), dirs, labels_csv
