from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.cli import app

runner = CliRunner()


@pytest.fixture
def data(tmp_path, rng):
    n = 300
    df = pd.DataFrame({
        "image_id": [f"{i:04d}" for i in range(n)],
        "label": rng.choice(["a", "b", "c"], n),
        "patient": rng.integers(0, 50, n).astype(str),
    })
    df.to_csv(tmp_path / "train.csv", index=False)
    return tmp_path


def test_make_folds_writes_csv_and_prints_distribution(data):
    out = data / "folds.csv"
    r = runner.invoke(app, ["folds", "--data", str(data / "train.csv"), "--method", "stratified-group", "--group-col",
                            "patient", "--n-splits", "4", "--id-col", "image_id", "--out", str(out), "--json", str(data / "f.json")])
    assert r.exit_code == 0, r.output
    assert "class distribution per fold" in r.stdout and f"wrote {out}" in " ".join(r.stdout.split())
    df = pd.read_csv(out, dtype=str)
    assert df["image_id"].iloc[0] == "0000" and sorted(df["fold"].unique()) == ["0", "1", "2", "3"]
    assert (df.groupby("patient")["fold"].nunique() == 1).all()
    d = json.loads((data / "f.json").read_text())
    assert d["ok"] and np.array(d["counts"]).sum() == 300
    r = runner.invoke(app, ["folds", "--data", str(data / "train.csv"), "--out", str(out), "--id-col", "image_id"])
    assert r.exit_code == 2 and "folds.csv exists; pass --force" in r.stderr
    r = runner.invoke(app, ["folds", "--data", str(data / "train.csv"), "--out", str(out), "--id-col", "image_id", "--force"])
    assert r.exit_code == 0


def test_check_reports_leakage_with_exit_1(data):
    df = pd.read_csv(data / "train.csv", dtype=str).assign(fold=np.arange(300) % 5)  # ignores patients: leaks
    df.to_csv(data / "leaky.csv", index=False)
    r = runner.invoke(app, ["folds", "--data", str(data / "leaky.csv"), "--check", "--group-col", "patient", "--id-col", "image_id"])
    assert r.exit_code == 1
    assert "error: " in r.stderr and "appear in more than one fold" in r.stderr  # findings are diagnostics
    assert "appear in more than one fold" not in r.stdout and "class distribution per fold" in r.stdout
    r = runner.invoke(app, ["folds", "--data", str(data / "leaky.csv"), "--check", "--id-col", "image_id", "--json", "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)["leaked_groups"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "group", "--out", "x.csv"], "method 'group' needs the group column; pass --group-col"),
        (["--method", "shuffle", "--out", "x.csv"], "unknown fold method 'shuffle'; choose one of: stratified, group, stratified-group, kfold"),
        ([], "no output given; pass --out FILE"),
        (["--check"], "no fold column 'fold'"),
        (["--out", "x.csv", "--group-col", "site", "--method", "group"], "no group column 'site'"),
        (["--out", "x.csv", "--label-col", "target"], "no label column 'target'"),
    ],
)
def test_errors_one_line_exit_2(data, argv, message):
    argv = [a if a != "x.csv" else str(data / "x.csv") for a in argv]
    r = runner.invoke(app, ["folds", "--data", str(data / "train.csv"), "--id-col", "image_id", *argv])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (data / "x.csv").exists()


def test_check_leakage_error_printed_on_stdout_with_json_dash(data):
    df = pd.read_csv(data / "train.csv", dtype=str).assign(fold=np.arange(300) % 5)
    df.to_csv(data / "leaky.csv", index=False)
    r = runner.invoke(app, ["folds", "--data", str(data / "leaky.csv"), "--check", "--group-col", "patient",
                            "--id-col", "image_id", "--json", "-"])
    assert r.exit_code == 1 and json.loads(r.stdout)["ok"] is False
    assert "appear in more than one fold" in r.stderr


def test_check_inf_fold_becomes_a_huge_negative_fold(tmp_path):
    (tmp_path / "d.csv").write_text("id,label,fold\n1,a,0\n2,b,inf\n3,a,1\n4,b,1\n")
    r = runner.invoke(app, ["folds", "--data", str(tmp_path / "d.csv"), "--check"])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "d.csv: fold column 'fold' holds non-integer values \"inf\"" in lines[0]


@pytest.mark.parametrize("argv", [["--check"], ["--method", "kfold", "--out", "x.csv"]])
def test_header_only_csv_crashes_with_zero_size_array(tmp_path, argv):
    (tmp_path / "d.csv").write_text("id,label,fold\n")
    argv = [a if a != "x.csv" else str(tmp_path / "x.csv") for a in argv]
    r = runner.invoke(app, ["folds", "--data", str(tmp_path / "d.csv"), *argv])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "d.csv: no rows (only a header)" in lines[0] and "Traceback" not in r.output
    assert not (tmp_path / "x.csv").exists()


def test_json_file_refused_without_force_before_the_folds_csv_is_written(data):
    (data / "f.json").write_text("keep")
    r = runner.invoke(app, ["folds", "--data", str(data / "train.csv"), "--id-col", "image_id",
                            "--out", str(data / "folds.csv"), "--json", str(data / "f.json")])
    assert r.exit_code == 2 and "f.json exists; pass --force" in r.stderr
    assert not (data / "folds.csv").exists() and (data / "f.json").read_text() == "keep"
