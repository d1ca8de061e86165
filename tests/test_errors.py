"""User errors of the top-level modules (recipe, folds, join, tables, the shared readers) that no
command-level test reaches: each raises one `EnsembleError` whose text names what and the fix."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from ensemble.errors import ConfigError, LabelError, TableError
from ensemble.folds import make_folds
from ensemble.join import join_labels
from ensemble.labels import read_labels
from ensemble.recipe import Recipe, read_recipe
from ensemble.tables import make_table, read_table, write_table

# recipe.json: a hand-edited key is named, with the fix

VALID = {
    "method": "soft", "name": "b", "classes": ["a", "b"],
    "members": [{"name": "m1"}, {"name": "m2"}],
    "units": ["m1", "m2"], "unit_members": {"m1": ["m1"], "m2": ["m2"]},
}


def edited(**changes):
    raw = copy.deepcopy(VALID)
    for key, value in changes.items():
        raw[key] = value
    return raw


def test_the_valid_recipe_reads():
    assert Recipe.from_dict(edited()).units == ["m1", "m2"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"classes": ["a", ""]}, "recipe key 'classes' must be a list of non-empty strings"),
    ({"units": ["m1", "m1"], "unit_members": {"m1": ["m1"]}}, "recipe key 'units' names a unit twice"),
    ({"weights": [0, 0]}, "recipe key 'weights' are all zero; give at least one positive weight"),
    ({"unit_members": {"m1": ["m1"], "m2": ["m3"]}}, "recipe key 'members' lacks 'm3', a member of a weighted unit"),
    ({"n_test": -5}, "recipe key 'n_test' is -5, not a row count"),
    ({"scores": {"metric": "macro_f1", "higher_is_better": True, "ci95": [0.5]}},
     "recipe key 'scores.ci95' is [0.5], not a pair of numbers"),
    ({"unit_members": ["m1"]}, "recipe key 'unit_members' is ['m1'], not an object"),
])
def test_a_hand_edited_recipe_key_is_named(changes, message):
    with pytest.raises(ConfigError, match="re-create it with `ens blend`") as e:
        Recipe.from_dict(edited(**changes), where="r.json")
    assert str(e.value).startswith("r.json: recipe key '") and message in str(e.value)


def test_a_recipe_that_is_not_an_object_is_refused():
    with pytest.raises(ConfigError, match="recipe key 'members\\[0\\]' must be an object;"):
        Recipe.from_dict(edited(members=["m1", "m2"]), where="r.json")


def test_a_recipe_built_in_memory_has_no_blend_folder():
    with pytest.raises(ConfigError, match="recipe 'b' was not read from a file; it has no blend folder"):
        read_recipe(edited()).folder


# folds from the Python API (the CLI reads the label column first and reports its absence there)


def test_stratified_folds_of_labels_without_label_column_say_name_it(tmp_path):
    pd.DataFrame({"id": [str(i) for i in range(20)]}).to_csv(tmp_path / "d.csv", index=False)
    data = read_labels(tmp_path / "d.csv", require=())
    with pytest.raises(LabelError, match=": no label column; stratified folds need one — name it with --label-col"):
        make_folds(data, method="stratified")


def test_stratified_folds_of_a_frame_without_label_column_say_name_it():
    frame = pd.DataFrame({"id": [str(i) for i in range(20)]})
    with pytest.raises(LabelError, match="data frame: no label column 'label'; stratified folds need one"):
        make_folds(frame, method="stratified")


def test_folds_of_something_else_name_the_accepted_types():
    with pytest.raises(ConfigError, match="make_folds takes Labels or a pandas DataFrame, not list"):
        make_folds([1, 2, 3], method="kfold")


# joining tables to labels


def test_joining_no_tables_says_pass_one(tmp_path):
    with pytest.raises(ConfigError, match="no prediction tables given; pass at least one OOF table or folder"):
        join_labels(tmp_path / "train.csv", [])


# readers of CSV and JSON files


def probs_table(tmp_path):
    t = make_table(np.array(["1", "2"], dtype=object), ["a", "b"], np.array([[0.5, 0.5], [0.2, 0.8]], dtype=np.float32))
    return write_table(t, tmp_path / "oof.csv")


def test_a_sidecar_that_is_not_json_is_named(tmp_path):
    p = probs_table(tmp_path)
    p.with_name("oof.json").write_text("{model: m}")
    with pytest.raises(TableError, match=r"oof.json: sidecar is not valid JSON \(.*\); fix or delete it"):
        read_table(p)


@pytest.mark.parametrize("rows_before", [1, 3000], ids=["in-the-header-block", "further-down"])
def test_a_table_that_is_not_utf8_is_refused(tmp_path, rows_before):
    p = tmp_path / "oof.csv"
    rows = b"".join(b"%d,0.5,0.5\n" % i for i in range(rows_before))
    p.write_bytes(b"id,a,b\n" + rows + b"\xff\xfe,0.5,0.5\n")
    with pytest.raises(TableError, match=r"not a readable CSV \(.*\); write it with ens or pandas.to_csv"):
        read_table(p)


def test_a_labels_csv_pandas_cannot_parse_is_refused(tmp_path):
    p = tmp_path / "train.csv"
    p.write_bytes(b"id,label\n" + b"".join(b"%d,a\n" % i for i in range(3000)) + b'1,"a\n')
    with pytest.raises(LabelError, match=r"train.csv: not a readable CSV \(Error tokenizing data"):
        read_labels(p)


def test_a_parquet_table_with_float_ids_is_refused(tmp_path):
    p = tmp_path / "oof.parquet"
    pd.DataFrame({"id": [1.5, 2.5], "a": [0.5, 0.2], "b": [0.5, 0.8]}).to_parquet(p, index=False)
    with pytest.raises(TableError, match="oof.parquet: the id column has type double; store ids as strings"):
        read_table(p)


def test_a_folder_holding_a_table_in_two_formats_is_refused(tmp_path):
    probs_table(tmp_path)
    pd.DataFrame({"id": ["1", "2"], "a": [0.5, 0.2], "b": [0.5, 0.8]}).to_parquet(tmp_path / "oof.parquet", index=False)
    with pytest.raises(TableError, match=r"holds both oof.csv and oof.parquet; keep one of them \(they share the "
                                         r"sidecar oof.json\) or name the file to read"):
        read_table(tmp_path)


def test_an_unknown_prediction_table_format_is_refused_before_any_work():
    from ensemble.predict.options import PredictOptions

    with pytest.raises(ConfigError, match="unknown table format 'feather'; choose one of: csv, parquet"):
        PredictOptions(split="test", table_format="feather").check()
