"""Multi-label tasks at the table, labels and join level: sigmoid tables, label sets, task mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.preprocessing import MultiLabelBinarizer

from ensemble.errors import ConfigError, LabelError, TableError
from ensemble.join import join_labels
from ensemble.labels import Columns, read_labels
from ensemble.tables import make_table, read_table, write_table
from ensemble.task import activate, check_task, decisions


def test_sigmoid_table_accepts_rows_summing_to_anything_and_refuses_values_above_one():
    t = make_table(["a", "b"], ["x", "y"], np.array([[0.9, 0.8], [0.0, 0.0]]), task="multilabel")
    assert t.task == "multilabel" and t.probs.dtype == np.float32
    with pytest.raises(TableError, match=r"1 rows of a multilabel table hold values above 1 \(first: row 0, 1.5\)"):
        make_table(["a", "b"], ["x", "y"], np.array([[1.5, 0.8], [0.1, 0.0]]), task="multilabel")
    with pytest.raises(TableError, match="rows do not sum to 1"):  # the same rows as multiclass
        make_table(["a", "b"], ["x", "y"], np.array([[0.9, 0.8], [0.0, 0.0]]))


def test_sigmoid_from_logits_equals_torch():
    torch = pytest.importorskip("torch")
    z = np.array([[3.0, -1.0, 40.0], [0.0, -40.0, 0.2]])
    t = make_table(["a", "b"], ["x", "y", "w"], z, task="multilabel", from_logits=True)
    np.testing.assert_allclose(t.probs, torch.sigmoid(torch.tensor(z)).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(activate(z, "multilabel"), torch.sigmoid(torch.tensor(z)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(activate(z, "multiclass"), torch.softmax(torch.tensor(z), 1).numpy(), rtol=1e-12)


def test_decisions_are_strictly_above_the_threshold():
    p = np.array([[0.5, 0.51], [0.2, 0.9]])
    assert decisions(p).tolist() == [[False, True], [False, True]]
    assert decisions(p, np.array([0.1, 0.95])).tolist() == [[True, False], [True, False]]


def test_task_round_trips_and_a_softmax_table_where_sigmoid_is_expected_is_refused(tmp_path):
    t = make_table(["a", "b"], ["x", "y"], np.array([[0.9, 0.8], [0.0, 0.0]]), task="multilabel")
    write_table(t, tmp_path / "ml.csv")
    assert json.loads((tmp_path / "ml.json").read_text())["task"] == "multilabel"
    assert read_table(tmp_path / "ml.csv").task == "multilabel"
    assert read_table(tmp_path / "ml.csv", task="multilabel").task == "multilabel"
    write_table(make_table(["a", "b"], ["x", "y"], np.array([[0.5, 0.5], [1.0, 0.0]])), tmp_path / "mc.csv")
    with pytest.raises(TableError, match=r"mc.csv: the table is multiclass .* but multilabel .* is expected here"):
        read_table(tmp_path / "mc.csv", task="multilabel")
    with pytest.raises(TableError, match=r"ml.csv: the table is multilabel .* but multiclass .* is expected here"):
        read_table(tmp_path / "ml.csv", task="multiclass")
    with pytest.raises(TableError, match=r"is expected here; give tables of the labels' task \(predict with the model card's `task`\)"):
        read_table(tmp_path / "ml.csv", task="multiclass")
    # a table without a sidecar is checked as the task the caller expects
    (tmp_path / "bare.csv").write_text("id,x,y\na,0.9,0.8\nb,0,0\n")
    assert read_table(tmp_path / "bare.csv", task="multilabel").task == "multilabel"


def test_unknown_tasks_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"card.toml: task 'multi' is not one of multiclass, multilabel; write task = \"multiclass\""):
        check_task("multi", "card.toml")
    (tmp_path / "t.csv").write_text("id,x\na,1\n")
    (tmp_path / "t.json").write_text('{"task": "binary"}')
    with pytest.raises(TableError, match=r"t.json|t.csv: the sidecar's task 'binary' is not one of multiclass, multilabel; fix or delete the sidecar"):
        read_table(tmp_path / "t.csv")


def test_label_sets_equal_sklearn_multilabel_binarizer(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("id,label\n1,Cardiomegaly|Effusion\n2,\n3,Hernia\n4,Effusion|Hernia|Cardiomegaly\n")
    lab = read_labels(p)
    sets = [["Cardiomegaly", "Effusion"], [], ["Hernia"], ["Effusion", "Hernia", "Cardiomegaly"]]
    mlb = MultiLabelBinarizer().fit(sets)
    assert lab.task == "multilabel" and lab.classes == list(mlb.classes_)
    np.testing.assert_array_equal(lab.y, mlb.transform(sets))
    # another separator, and indices into a given class order
    q = tmp_path / "idx.csv"
    q.write_text("id,label\n1,0 2\n2,1\n")
    lab = read_labels(q, classes=["a", "b", "c"], columns=Columns(label_sep=" "), task="multilabel")
    assert lab.y.tolist() == [[1, 0, 1], [0, 1, 0]] and lab.by_index


def test_label_set_errors_name_the_rows(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("id,label\n1,a||b\n2,a\n")
    with pytest.raises(LabelError, match=r"1 rows of 'label' hold an empty class between separators '\|' \(rows .0.\)"):
        read_labels(p)
    p.write_text("id,label\n1,\n2,\n")
    with pytest.raises(LabelError, match=r"every 'label' cell is empty; multi-label labels need some positive classes"):
        read_labels(p, task="multilabel")
    p.write_text("id,label\nr1,a|b\nr2,a\n")
    with pytest.raises(LabelError, match=r"1 rows of 'label' hold several classes joined by '\|' \(ids \"r1\"\) but the task is multiclass"):
        read_labels(p, task="multiclass")


def test_join_follows_the_tables_task_and_refuses_mixes(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("id,label\n1,b\n2,a|b\n3,\n")  # sets, one of them a single class
    ml = make_table(["3", "2", "1"], ["b", "a"], np.full((3, 2), 0.3), task="multilabel")
    j = join_labels(p, [ml])
    assert j.task == "multilabel" and j.classes == ["b", "a"]
    assert j.y.tolist() == [[1, 0], [1, 1], [0, 0]]  # columns in the tables' order, rows in the labels'
    mc = make_table(["3", "2", "1"], ["b", "a"], np.full((3, 2), 0.5))
    with pytest.raises(LabelError, match=r"hold several classes joined by '\|' \(ids \"2\"\) but the task is multiclass"):
        join_labels(p, [mc])
    mc.path = tmp_path / "soft.csv"
    ml.path = tmp_path / "sig.csv"
    with pytest.raises(TableError, match=r"tables mix tasks: .*soft.csv is multiclass \(softmax\) but .*sig.csv is multilabel"):
        join_labels(p, [mc, ml])


def test_integer_label_sets_follow_the_recorded_class_order(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("id,label\n1,0|2\n2,1\n")
    t = make_table(["1", "2"], ["c", "b", "a"], np.full((2, 3), 0.2), meta={"classes": ["a", "b", "c"]}, task="multilabel")
    j = join_labels(p, [t], classes=["a", "b", "c"])
    assert j.classes == ["a", "b", "c"] and j.y.tolist() == [[1, 0, 1], [0, 1, 0]]  # columns put in the recorded order
