"""User errors of `ens blend`, `ens oof-report`, `ens folds` and `ens select`, driven through the
CLI: each is one `error: ` line on stderr naming what and the fix, exit code 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests._errors import ens, one_error_line
from tests.cli.test_blend import problem, setup  # noqa: F401  (fixtures: prediction folders, labels)


@pytest.fixture
def preds(setup):
    """(root, prediction folders, labels CSV) of `ens blend`'s tests."""
    root, dirs, labels = setup
    return root, dirs, Path(labels)


def blended(root, dirs, labels, name="b"):
    """A blend folder `ens blend` wrote (its recipe records the labels file)."""
    r = ens("blend", "--method", "soft", "--labels", labels, *dirs, "--out", root / "blends" / name, "--no-nested")
    assert r.exit_code == 0, r.output
    return root / "blends" / name / "recipe.json"


# ens blend


def test_blend_without_method_or_recipe_says_choose_one(preds):
    root, dirs, labels = preds
    one_error_line(ens("blend", "--labels", labels, *dirs, "--out", root / "b"),
                   "no --method given; choose one, or pass --recipe to re-apply a blend")


def test_blend_without_labels_says_blending_needs_them(preds):
    root, dirs, _ = preds
    one_error_line(ens("blend", "--method", "soft", *dirs, "--out", root / "b"),
                   "no --labels given; blending needs the labels CSV (id, label, fold)")


def test_blend_with_zero_greedy_rounds_is_refused(preds):
    root, dirs, labels = preds
    one_error_line(ens("blend", "--method", "greedy", "--rounds", "0", "--labels", labels, *dirs, "--out", root / "b"),
                   "--rounds 0: give at least 1 round")


def test_blend_of_one_folder_twice_names_the_duplicate_member(preds):
    root, dirs, labels = preds
    one_error_line(ens("blend", "--method", "soft", "--labels", labels, dirs[0], dirs[0], "--out", root / "b"),
                   "appear more than once", "recipes match members by name")


def test_blend_on_labels_lacking_the_members_folds_is_refused(preds):
    root, dirs, labels = preds
    frame = pd.read_csv(labels, dtype=str)
    frame["fold"] = (frame["fold"].astype(int) % 2).astype(str)  # folds 0, 1 only
    frame.to_csv(root / "two_folds.csv", index=False)
    one_error_line(ens("blend", "--method", "soft", "--labels", root / "two_folds.csv", *dirs, "--out", root / "b"),
                   "that", "does not have; give the labels CSV whose fold column the models were trained on")


# classes given on the command line (oof-report, blend, select and check share them)


def test_classes_and_classes_file_together_are_refused(preds):
    _, dirs, labels = preds
    one_error_line(ens("oof-report", *dirs, "--labels", labels, "--classes", "c0,c1,c2,c3", "--classes-file", labels),
                   "--classes and --classes-file both given; give the class order once")


def test_an_empty_class_name_is_refused(preds):
    _, dirs, labels = preds
    one_error_line(ens("oof-report", *dirs, "--labels", labels, "--classes", "c0,,c2"),
                   "--classes: empty class name; give every class name in index order, e.g. --classes cat,dog")


def test_a_class_given_twice_is_refused(preds):
    _, dirs, labels = preds
    one_error_line(ens("oof-report", *dirs, "--labels", labels, "--classes", "c0,c1,c0"),
                   "class \"c0\" given twice; give each class once, in index order")


def test_an_unreadable_classes_file_is_refused(preds):
    root, dirs, labels = preds
    (root / "classes.txt").write_bytes(b"\xff\xfe\x00bad")
    one_error_line(ens("oof-report", *dirs, "--labels", labels, "--classes-file", root / "classes.txt"),
                   "cannot read the classes file (UnicodeDecodeError); give a UTF-8 file with one class name per line")


def test_report_with_negative_resamples_is_refused(preds):
    _, dirs, labels = preds
    one_error_line(ens("oof-report", *dirs, "--labels", labels, "--n-boot", "-1"),
                   "n_boot=-1; give 0 (no intervals) or more resamples")


# ens folds


def write_data(path, labels, groups=None):
    frame = pd.DataFrame({"id": [f"{i:03d}" for i in range(len(labels))], "label": labels})
    if groups is not None:
        frame["patient"] = groups
    frame.to_csv(path, index=False)
    return path


def test_folds_without_out_or_check_says_pass_out(tmp_path):
    data = write_data(tmp_path / "d.csv", ["a", "b"] * 10)
    one_error_line(ens("folds", "--data", data),
                   "no output given; pass --out FILE for the CSV with folds (or --check to check existing folds)")


def test_folds_with_more_folds_than_rows_is_refused(tmp_path):
    data = write_data(tmp_path / "d.csv", ["a", "b", "a"])
    one_error_line(ens("folds", "--data", data, "--method", "kfold", "--n-splits", "4", "--out", tmp_path / "f.csv"),
                   "3 rows cannot fill 4 folds; use fewer folds")


def test_folds_where_no_class_fills_every_fold_is_refused(tmp_path):
    data = write_data(tmp_path / "d.csv", ["a", "b", "c", "d"] * 3)
    one_error_line(ens("folds", "--data", data, "--n-splits", "5", "--out", tmp_path / "f.csv"),
                   "no class has 5 members (largest: 3); stratification needs one per fold — use fewer folds")


def test_stratified_folds_without_label_column_name_the_columns(tmp_path):
    data = tmp_path / "d.csv"
    pd.DataFrame({"id": [str(i) for i in range(20)]}).to_csv(data, index=False)
    one_error_line(ens("folds", "--data", data, "--out", tmp_path / "f.csv"),
                   "d.csv: no label column 'label' (columns: id); name it with --label-col")


def test_group_folds_with_a_missing_group_column_list_the_columns(tmp_path):
    data = write_data(tmp_path / "d.csv", ["a", "b"] * 10, groups=[str(i % 5) for i in range(20)])
    one_error_line(ens("folds", "--data", data, "--method", "group", "--group-col", "patient_id", "--out", tmp_path / "f.csv"),
                   "no group column 'patient_id' (columns: id, label, patient); name it with --group-col")


# ens select


def test_select_of_candidates_recording_no_labels_says_pass_labels(preds):
    root, dirs, labels = preds
    recipe = blended(root, dirs, labels)
    data = json.loads(recipe.read_text())
    data.pop("labels", None)
    recipe.write_text(json.dumps(data))
    one_error_line(ens("select", "--n", "1", recipe),
                   "record no labels file (blended before ens recorded it, or in memory); pass --labels train.csv")


def test_select_when_the_recorded_labels_file_is_gone_says_pass_labels(preds):
    root, dirs, labels = preds
    recipe = blended(root, dirs, labels)
    labels.unlink()
    one_error_line(ens("select", "--n", "1", recipe),
                   "the labels file the candidates were blended against is gone; pass --labels")


def test_select_against_labels_without_label_column_names_the_columns(preds):
    root, dirs, labels = preds
    recipe = blended(root, dirs, labels)
    pd.read_csv(labels, dtype=str).drop(columns="label").to_csv(root / "ids.csv", index=False)
    one_error_line(ens("select", "--n", "1", "--labels", root / "ids.csv", recipe),
                   "ids.csv: no label column 'label' (columns: id, fold); name it with --label-col")
