"""`ens check` validates by task: label sets expect sigmoid tables; a table of the other task is named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.tables import make_table, write_table
from tests.conftest import write_csv_table

runner = CliRunner()
IDS = ["01", "02", "03"]


@pytest.fixture
def files(tmp_path):
    sig = np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.7], [0.6, 0.3, 0.4]])
    write_table(make_table(IDS, ["a", "b", "c"], sig, meta={"name": "sig"}, task="multilabel"), tmp_path / "sig" / "oof.csv")
    soft = sig / sig.sum(axis=1, keepdims=True)
    write_table(make_table(IDS, ["a", "b", "c"], soft, meta={"name": "soft"}), tmp_path / "soft" / "oof.csv")
    (tmp_path / "sets.csv").write_text("id,label\n01,a;b\n02,c\n03,\n")
    (tmp_path / "single.csv").write_text("id,label\n01,a\n02,c\n03,a\n")
    return tmp_path


def _one_line(r, exit_code=2) -> str:
    assert r.exit_code == exit_code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output and r.stdout == ""
    return lines[0]


def test_label_sets_accept_sigmoid_tables(files):
    r = runner.invoke(app, ["check", str(files / "sig"), "--labels", str(files / "sets.csv"), "--label-sep", ";", "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["task"] == "multilabel"
    r = runner.invoke(app, ["check", str(files / "sig"), "--labels", str(files / "single.csv")])  # single labels fit sets too
    assert r.exit_code == 0, r.output
    assert "multilabel" in r.stdout


def test_softmax_table_where_sigmoid_is_expected_names_the_file(files):
    r = runner.invoke(app, ["check", str(files / "sig"), str(files / "soft"), "--labels", str(files / "sets.csv"), "--label-sep", ";"])
    line = _one_line(r)
    assert "soft/oof.csv: the table is multiclass (softmax: one class per row) but multilabel (a sigmoid per class) is expected here" in line
    r = runner.invoke(app, ["check", str(files / "soft"), "--task", "multilabel"])
    assert "soft/oof.csv: the table is multiclass" in _one_line(r)


def test_sigmoid_table_where_softmax_is_expected_names_the_file(files):
    r = runner.invoke(app, ["check", str(files / "sig"), "--task", "multiclass"])
    assert "sig/oof.csv: the table is multilabel (a sigmoid per class) but multiclass (softmax: one class per row) is expected here" in _one_line(r)


def test_label_sets_against_a_softmax_table_without_task_refused(files):
    r = runner.invoke(app, ["check", str(files / "soft"), "--labels", str(files / "sets.csv"), "--label-sep", ";"])
    assert "soft/oof.csv: the table is multiclass" in _one_line(r)


def test_tables_of_two_tasks_are_refused_without_labels(files):
    r = runner.invoke(app, ["check", str(files / "sig"), str(files / "soft")])
    assert "tables mix tasks" in _one_line(r)


def test_a_table_without_sidecar_is_checked_as_the_expected_task(files):
    bare = write_csv_table(files / "bare.csv", IDS, ["a", "b", "c"], [[0.9, 0.8, 0.1], [0.2, 0.1, 0.7], [0.6, 0.3, 0.4]])
    r = runner.invoke(app, ["check", str(bare), "--labels", str(files / "sets.csv"), "--label-sep", ";", "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["task"] == "multilabel"
    r = runner.invoke(app, ["check", str(bare)])
    assert "bare.csv: 2 rows do not sum to 1" in _one_line(r)
