"""Multi-label folds: the iterative-stratification package is the oracle for every split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import KFold
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.errors import LabelError
from ensemble.folds import check_fold_file, make_folds, write_folds

CLASSES = ["atelectasis", "cardiomegaly", "effusion", "hernia", "mass", "nodule"]
RATES = np.array([0.45, 0.25, 0.12, 0.04, 0.03, 0.015])  # skewed: the rare classes are what KFold spreads badly


@pytest.fixture
def sets(rng) -> tuple[pd.DataFrame, np.ndarray]:
    """A frame of label sets `a|b` (some empty) and its indicator matrix, built independently of ens."""
    n = 700
    Y = (rng.random((n, len(CLASSES))) < RATES).astype(np.uint8)
    label = ["|".join(c for c, v in zip(CLASSES, row) if v) for row in Y]
    frame = pd.DataFrame({"id": [f"{i:04d}" for i in range(n)], "label": label, "patient": rng.integers(0, 200, n).astype(str)})
    return frame, Y


def _oracle(Y: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    folds = np.full(len(Y), -1)
    for k, (_, val) in enumerate(MultilabelStratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(Y)), Y)):
        folds[val] = k
    return folds


def _worst_deviation(Y: np.ndarray, folds: np.ndarray, n_splits: int) -> float:
    """Largest |positives of a class in a fold - its even share|, over folds and classes."""
    per_fold = np.stack([Y[folds == k].sum(axis=0) for k in range(n_splits)])
    return float(np.abs(per_fold - Y.sum(axis=0) / n_splits).max())


@pytest.mark.parametrize("seed", [0, 7])
def test_equals_the_package_and_every_row_in_one_fold(sets, seed):
    frame, Y = sets
    folds = make_folds(frame, method="multilabel-stratified", n_splits=5, seed=seed)
    np.testing.assert_array_equal(folds, _oracle(Y, 5, seed))
    assert folds.dtype == np.int64 and sorted(set(folds)) == [0, 1, 2, 3, 4] and len(folds) == len(frame)
    assert not np.array_equal(folds, make_folds(frame, method="multilabel-stratified", n_splits=5, seed=seed + 1))


def test_per_class_balance_beats_plain_kfold(sets):
    frame, Y = sets
    folds = make_folds(frame, method="multilabel-stratified", n_splits=5, seed=3)
    kfold = np.empty(len(Y), dtype=int)
    for k, (_, val) in enumerate(KFold(5, shuffle=True, random_state=3).split(Y)):
        kfold[val] = k
    assert _worst_deviation(Y, folds, 5) < _worst_deviation(Y, kfold, 5)
    assert _worst_deviation(Y, folds, 5) <= 1.0  # iterative stratification: within a row of the even share


def test_grouped_never_splits_a_group_and_equals_the_package_on_groups(sets):
    frame, Y = sets
    folds = make_folds(frame, method="multilabel-stratified-group", n_splits=4, seed=1, group_col="patient")
    assert (pd.Series(folds).groupby(frame["patient"].to_numpy()).nunique() == 1).all()
    # the oracle: the package on one indicator row per group (a class when any row of the group holds it)
    per_group = pd.DataFrame(Y, columns=CLASSES).groupby(frame["patient"].to_numpy()).max().sort_index()
    group_fold = dict(zip(per_group.index, _oracle(per_group.to_numpy(), 4, 1)))
    np.testing.assert_array_equal(folds, frame["patient"].map(group_fold).to_numpy())


def test_one_class_per_row_is_split_as_its_one_hot_set(rng):
    frame = pd.DataFrame({"id": [str(i) for i in range(60)], "label": rng.choice(["a", "b", "c"], 60)})
    folds = make_folds(frame, method="multilabel-stratified", n_splits=3, seed=0)
    Y = pd.get_dummies(frame["label"]).to_numpy().astype(np.uint8)
    np.testing.assert_array_equal(folds, _oracle(Y, 3, 0))


def test_a_single_class_balances_positives_and_negatives(rng):
    frame = pd.DataFrame({"id": [str(i) for i in range(50)], "label": rng.choice(["x", ""], 50, p=[0.3, 0.7])})
    folds = make_folds(frame, method="multilabel-stratified", n_splits=5, seed=0)
    pos = (frame["label"] == "x").to_numpy()
    assert np.ptp(np.bincount(folds[pos], minlength=5)) <= 1 and np.ptp(np.bincount(folds, minlength=5)) <= 1


@pytest.mark.parametrize("method", ["stratified", "stratified-group"])
def test_a_multiclass_method_refuses_label_sets_naming_the_fix(sets, method):
    frame, _ = sets
    with pytest.raises(LabelError, match=f"stratifies one class per row, but the labels are sets of classes; use --method multilabel-{method}"):
        make_folds(frame, method=method, group_col="patient")


def test_write_then_check_reports_positive_rows_per_class(tmp_path, sets):
    frame, Y = sets
    frame.assign(label=frame["label"].str.replace("|", ";")).to_csv(tmp_path / "d.csv", index=False)
    from ensemble.labels import Columns

    cols = Columns(label_sep=";")
    res = write_folds(tmp_path / "d.csv", tmp_path / "f.csv", method="multilabel-stratified", n_splits=5, seed=2, columns=cols)
    folds = pd.read_csv(tmp_path / "f.csv", dtype=str)["fold"].astype(int).to_numpy()
    np.testing.assert_array_equal(folds, _oracle(Y, 5, 2))
    expected = np.stack([Y[folds == k].sum(axis=0) for k in range(5)])
    for r in (res, check_fold_file(tmp_path / "f.csv", columns=cols)):
        assert r.task == "multilabel" and r.classes == CLASSES and r.rows == np.bincount(folds).tolist()
        np.testing.assert_array_equal(r.counts, expected)
        rate = Y.mean(axis=0)
        np.testing.assert_allclose(r.deviation, np.abs(expected / np.bincount(folds)[:, None] - rate).max(axis=1))
        assert r.ok and not [f for f in r.findings if f.kind == "imbalance"]


def test_check_finds_leakage_and_imbalance_with_multilabel_fixes(tmp_path, sets):
    frame, Y = sets
    leaky = frame.assign(fold=np.arange(len(frame)) % 5)  # ignores patients
    leaky.loc[leaky["label"].str.contains("hernia"), "fold"] = 0  # every hernia in fold 0
    leaky.to_csv(tmp_path / "l.csv", index=False)
    res = check_fold_file(tmp_path / "l.csv", group_col="patient")
    assert not res.ok and res.findings[0].kind == "leakage"
    assert "rebuild folds with --method multilabel-stratified-group" in res.findings[0].message
    hernia = [f.message for f in res.findings if f.kind == "imbalance" and "'hernia'" in f.message]
    assert hernia and all("stratify (--method multilabel-stratified or multilabel-stratified-group)" in m for m in hernia)
    assert any(m.startswith(f"fold 0 holds {int(Y[:, 3].sum())} rows of class 'hernia'") for m in hernia)


runner = CliRunner()


def test_cli_makes_and_checks_multilabel_folds(tmp_path, sets):
    frame, Y = sets
    frame.assign(label=frame["label"].str.replace("|", " ")).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "f.csv"
    r = runner.invoke(app, ["folds", "--data", str(tmp_path / "d.csv"), "--method", "multilabel-stratified-group",
                            "--group-col", "patient", "--label-sep", " ", "--n-splits", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "positive rows per class per fold (multi-label)" in r.stdout
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert (df.groupby("patient")["fold"].nunique() == 1).all()
    r = runner.invoke(app, ["folds", "--data", str(out), "--check", "--group-col", "patient", "--label-sep", " ", "--json", "-"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    folds = df["fold"].astype(int).to_numpy()
    assert d["task"] == "multilabel" and d["counts"] == np.stack([Y[folds == k].sum(axis=0) for k in range(4)]).tolist()
    # --method multilabel-* reads sets even where no cell holds the separator
    single = frame[~frame["label"].str.contains("|", regex=False)].assign(fold=0)
    single.loc[single.index[::2], "fold"] = 1
    single.to_csv(tmp_path / "s.csv", index=False)
    r = runner.invoke(app, ["folds", "--data", str(tmp_path / "s.csv"), "--check", "--method", "multilabel-stratified", "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["task"] == "multilabel"


def test_cli_multiclass_method_on_sets_is_one_line(tmp_path, sets):
    frame, _ = sets
    frame.to_csv(tmp_path / "d.csv", index=False)
    r = runner.invoke(app, ["folds", "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "f.csv")])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "use --method multilabel-stratified" in lines[0]
    assert not (tmp_path / "f.csv").exists()
