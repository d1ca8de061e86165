from __future__ import annotations

import numpy as np
import pytest

from ensemble.errors import ClassMismatchError, LabelError, TableError
from ensemble.labels import Columns, read_labels


def write(tmp_path, text, name="train.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_names_indices_and_paths(tmp_path):
    p = write(tmp_path, "id,path,label,fold\n0001,img/a.png,cat,0\n0002,img/b.png,dog,1\n0003,img/c.png,dog,0\n")
    lab = read_labels(p, classes=["cat", "dog"], require=("label", "fold", "path"))
    assert list(lab.ids) == ["0001", "0002", "0003"]
    assert lab.y.tolist() == [0, 1, 1] and lab.y.dtype == np.int64 and not lab.by_index
    assert lab.folds.tolist() == [0, 1, 0] and lab.fold_values == [0, 1]
    assert lab.paths[0] == str(tmp_path / "img/a.png")
    other_root = read_labels(p, classes=["cat", "dog"], root="/data")
    assert other_root.paths[1] == "/data/img/b.png"
    idx = read_labels(write(tmp_path, "id,label\na,1\nb,0\n"), classes=["cat", "dog"])
    assert idx.y.tolist() == [1, 0] and idx.by_index  # indices into the given class order


def test_class_names_that_look_like_indices_match_by_name_first(tmp_path):
    p = write(tmp_path, "id,label\na,1\nb,0\n")
    lab = read_labels(p, classes=["1", "0"])
    assert lab.y.tolist() == [0, 1]


def test_classes_inferred(tmp_path):
    assert read_labels(write(tmp_path, "id,label\na,2\nb,0\n")).classes == ["0", "1", "2"]
    assert read_labels(write(tmp_path, "id,label\na,zebra\nb,ant\n")).classes == ["ant", "zebra"]


def test_custom_column_names(tmp_path):
    p = write(tmp_path, "image_id,target,kfold\nx,1,3\n")
    lab = read_labels(p, columns=Columns(id="image_id", label="target", fold="kfold"), require=("label", "fold"))
    assert lab.ids.tolist() == ["x"] and lab.folds.tolist() == [3]


@pytest.mark.parametrize(
    "text, kwargs, error, message",
    [
        ("id,label\na,cow\n", {"classes": ["cat", "dog"]}, ClassMismatchError,
         r'labels "cow" in \'label\' are not among the 2 classes \("cat", "dog"\); labels must be class names or indices 0..1'),
        ("id,label\na,5\n", {"classes": ["cat", "dog"]}, ClassMismatchError, r'labels "5" in'),
        ("id,target\na,1\n", {}, LabelError, r"no label column 'label' \(columns: id, target\); name it with --label-col"),
        ("id,label\na,1\n", {"require": ("label", "fold")}, LabelError, r"no fold column 'fold'.*--fold-col"),
        ("id,label,fold\na,1,x\n", {}, LabelError, r"fold column 'fold' holds non-integer values \"x\"; folds are finite integers"),
        ("id,label,fold\na,1,\n", {}, LabelError, r"fold column 'fold' holds non-integer values"),
        ("id,label\na,1\na,0\n", {}, TableError, r'duplicate ids "a"'),
        ("id,label\na,\n", {}, LabelError, r"1 rows have an empty 'label'"),
        ("id,label\na,-1\n", {}, LabelError, r"negative label -1 in 'label'; class indices start at 0"),
        ("id,path\na,\n", {"require": ("path",)}, LabelError, r"1 rows have an empty 'path' \(ids \"a\"\)"),
    ],
)
def test_errors(tmp_path, text, kwargs, error, message):
    with pytest.raises(error, match=message):
        read_labels(write(tmp_path, text), **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(LabelError, match="no such labels CSV"):
        read_labels(tmp_path / "nope.csv")


def test_fold_values_without_folds(tmp_path):
    lab = read_labels(write(tmp_path, "id,label\na,1\n"))
    with pytest.raises(LabelError, match=r"no fold column; add one with `ens folds`"):
        lab.fold_values


def test_labels_mixing_names_and_indices_are_refused_not_guessed(tmp_path):
    p = write(tmp_path, "id,label\na,cat\nb,1\n")
    with pytest.raises(ClassMismatchError, match="mixes class names and class indices"):
        read_labels(p, classes=["cat", "dog"])


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1.5"])
def test_fold_value_inf_or_fractional_is_refused_not_cast(tmp_path, value):
    p = write(tmp_path, f"id,label,fold\na,cat,0\nb,dog,{value}\n")
    with pytest.raises(LabelError, match=r"fold column 'fold' holds non-integer values .*folds are finite integers"):
        read_labels(p)
