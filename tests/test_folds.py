from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

from ensemble.errors import ConfigError, LabelError, OutputExistsError, UnknownNameError
from ensemble.folds import FOLD_METHODS, check_fold_file, check_folds, make_folds, write_folds
from ensemble.labels import read_labels


@pytest.fixture
def frame(rng) -> pd.DataFrame:
    n = 400
    label = rng.choice(["a", "b", "c", "rare"], size=n, p=[0.5, 0.3, 0.15, 0.05])
    return pd.DataFrame({"id": [f"{i:04d}" for i in range(n)], "label": label, "patient": rng.integers(0, 80, n).astype(str)})


def test_stratified_equals_sklearn_and_balances_classes(frame):
    folds = make_folds(frame, method="stratified", n_splits=5, seed=3)
    y = pd.factorize(frame["label"], sort=True)[0]
    for k, (_, val) in enumerate(StratifiedKFold(5, shuffle=True, random_state=3).split(frame, y)):
        assert (folds[val] == k).all()
    counts = pd.crosstab(folds, frame["label"]).to_numpy()
    expected = counts.sum(0) / 5
    assert np.abs(counts - expected).max() <= 1  # stratified: within one row of the even split
    assert folds.dtype == np.int64 and set(folds) == set(range(5))


@pytest.mark.parametrize("method", ["group", "stratified-group"])
def test_group_methods_never_split_a_group(frame, method):
    folds = make_folds(frame, method=method, n_splits=4, seed=1, group_col="patient")
    assert (pd.Series(folds).groupby(frame["patient"].to_numpy()).nunique() == 1).all()
    splitter = (GroupKFold(4, shuffle=True, random_state=1) if method == "group"
                else StratifiedGroupKFold(4, shuffle=True, random_state=1))
    y = pd.factorize(frame["label"], sort=True)[0]
    for k, (_, val) in enumerate(splitter.split(frame, y, frame["patient"])):
        assert (folds[val] == k).all()


def test_labels_input_and_seeded(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    lab = read_labels(tmp_path / "d.csv")
    a = make_folds(lab, method="stratified", seed=42)
    np.testing.assert_array_equal(a, make_folds(frame, method="stratified"))
    assert not np.array_equal(a, make_folds(lab, method="stratified", seed=43))
    assert FOLD_METHODS.names() == [
        "stratified", "group", "stratified-group", "kfold", "multilabel-stratified", "multilabel-stratified-group"
    ]


def test_check_finds_planted_leakage(tmp_path, frame):
    folds = make_folds(frame, method="stratified-group", n_splits=5, group_col="patient")
    clean = check_folds(replace(read_labels(_csv(tmp_path, frame.assign(fold=folds))), folds=folds), group_col="patient")
    assert clean.ok and not clean.leaked_groups and not [f for f in clean.findings if f.level == "error"]
    leak = frame.assign(fold=folds)
    first = np.flatnonzero(leak["patient"] == "7")[0]
    leak.loc[first, "fold"] = (folds[first] + 1) % 5  # one image of patient 7 moves to another fold
    res = check_fold_file(_csv(tmp_path, leak), group_col="patient")
    assert not res.ok and res.leaked_groups == ["7"]
    assert (res.findings[0].level, res.findings[0].kind) == ("error", "leakage")
    assert "1 groups of 'patient' appear in more than one fold (\"7\")" in res.findings[0].message
    np.testing.assert_array_equal(res.counts, pd.crosstab(leak["fold"], leak["label"]).to_numpy())


def test_check_finds_planted_imbalance(tmp_path, frame):
    folds = make_folds(frame, method="stratified", n_splits=5)
    assert check_fold_file(_csv(tmp_path, frame.assign(fold=folds))).findings == []
    skew = frame.assign(fold=folds)
    skew.loc[skew["label"] == "rare", "fold"] = 0  # every rare image in fold 0
    res = check_fold_file(_csv(tmp_path, skew))
    assert res.ok  # imbalance is a warning, not an error
    msgs = [f.message for f in res.findings if f.kind == "imbalance"]
    n_rare = int((frame["label"] == "rare").sum())
    assert any(m.startswith(f"fold 0 holds {n_rare} rows of class 'rare', expected about") for m in msgs)
    assert any(m.startswith("fold 1 holds 0 rows of class 'rare'") for m in msgs)
    share = pd.crosstab(skew["fold"], skew["label"], normalize="index") - skew["label"].value_counts(normalize=True)
    np.testing.assert_allclose(res.deviation, share.abs().max(axis=1).to_numpy())


def _csv(tmp_path, df):
    path = tmp_path / "folds.csv"
    df.to_csv(path, index=False)
    return path


def test_write_folds_keeps_every_column_as_read(tmp_path, frame):
    frame.assign(fold="garbage").to_csv(tmp_path / "d.csv", index=False)  # an old, broken fold column
    res = write_folds(tmp_path / "d.csv", tmp_path / "out.csv", method="stratified", n_splits=3)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str)
    assert list(out.columns) == ["id", "label", "patient", "fold"]
    assert out["id"].iloc[0] == "0000"  # ids stay strings
    np.testing.assert_array_equal(out["fold"].astype(int), make_folds(frame, method="stratified", n_splits=3))
    assert res.counts.sum() == len(frame) and res.folds == [0, 1, 2]
    with pytest.raises(OutputExistsError, match="out.csv exists; pass --force"):
        write_folds(tmp_path / "d.csv", tmp_path / "out.csv", method="stratified")
    write_folds(tmp_path / "d.csv", tmp_path / "out.csv", method="kfold", force=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "group"}, ConfigError, "method 'group' needs the group column; pass --group-col"),
        ({"method": "group", "group_col": "site"}, LabelError, "no group column 'site' \\(columns: id, label, patient\\)"),
        ({"method": "group", "group_col": "label"}, LabelError, "4 groups in 'label' cannot fill 5 folds; use --n-splits 4"),
        ({"method": "kfold", "n_splits": 401}, LabelError, "400 rows cannot fill 401 folds"),
        ({"method": "stratified", "n_splits": 1}, ConfigError, "n_splits=1; cross-validation needs at least 2 folds"),
        ({"method": "stratified", "n_splits": 300}, LabelError, "no class has 300 members"),
        ({"method": "shuffle"}, UnknownNameError, "unknown fold method 'shuffle'; choose one of: stratified, group"),
    ],
)
def test_make_folds_errors(frame, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_folds(frame, **kwargs)


def test_check_needs_a_fold_column(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(LabelError, match="no fold column 'fold'"):
        check_fold_file(tmp_path / "d.csv")
