from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.report.plots import PLOTS
from tests.report.test_core import synthetic

runner = CliRunner()


@pytest.fixture
def world(tmp_path):
    labels, y, probs = synthetic(tmp_path, n=240)
    preds = [str(tmp_path / "preds" / m) for m in ("solo", "f_s1", "f_s2")]
    return tmp_path, str(labels), preds


def test_prints_the_report_and_writes_json_and_pngs(world):
    root, labels, preds = world
    r = runner.invoke(app, ["oof-report", "--labels", labels, *preds, "--n-boot", "50",
                            "--json", str(root / "r.json"), "--plots", str(root / "plots")])
    assert r.exit_code == 0, r.output
    for title in ("OOF scores", "95% CI", "per class", "confusion", "top confused pairs", "probability correlation",
                  "argmax agreement", "TTA views and mean-merges: solo", "f:seed-avg"):
        assert title in r.stdout, title
    # each row names its family, so seeds and their average read as one group
    assert re.search(r"f_s1\s*│\s*f\s*│\s*model", r.stdout) and re.search(r"f:seed-avg\s*│\s*f\s*│\s*seed-avg", r.stdout)
    d = json.loads((root / "r.json").read_text())
    assert [m["name"] for m in d["models"]][0] == d["focus"]
    assert {m["name"] for m in d["models"]} == {"solo", "f_s1", "f_s2", "f:seed-avg"}
    assert d["bootstrap"] == {"n_boot": 50, "alpha": 0.05, "seed": 42}
    assert sorted(p.name for p in (root / "plots").iterdir()) == sorted(PLOTS)
    # outputs exist now: a second run without --force refuses before any work, and changes nothing
    r = runner.invoke(app, ["oof-report", "--labels", labels, *preds, "--json", str(root / "r.json")])
    assert r.exit_code == 2 and "r.json exists; pass --force" in r.stderr and r.stdout == ""
    r = runner.invoke(app, ["oof-report", "--labels", labels, preds[0], "--plots", str(root / "plots"), "--n-boot", "0"])
    assert r.exit_code == 2 and "confusion.png exists; pass --force" in r.stderr


def test_json_to_stdout_is_only_json(world):
    root, labels, preds = world
    r = runner.invoke(app, ["oof-report", "--labels", labels, preds[1], "--json", "-", "--n-boot", "20",
                            "--all-classes", "--model", "f_s1", "--no-folds"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["all_classes"] is True and d["focus"] == "f_s1" and d["models"][0]["fold_scores"] is None


def test_help_says_which_macro_f1_competitions_mean():
    r = runner.invoke(app, ["oof-report", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "Kaggle" in text and "average='macro'" in text


def _edit_labels(root, **changes):
    df = pd.read_csv(root / "train.csv", dtype=str)
    for k, v in changes.items():
        df = v(df)
    path = root / "edited.csv"
    df.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("edit", "argv", "message"),
    [
        (lambda df: df.iloc[:-3], [], r"3 ids are not in .*edited.csv \(\"00237\", \"00238\", \"00239\"\)"),
        (lambda df: pd.concat([df, df.iloc[:2].assign(id=["new1", "new2"])]), [],
         r"2 ids of .*edited.csv are missing \(\"new1\", \"new2\"\)"),
        (lambda df: df.assign(label=df["label"].where(df.index != 5, "emu")), [],
         r"labels \"emu\" in 'label' are not among the 4 classes"),
        (lambda df: df.drop(columns="fold"), [], r"no fold column 'fold'"),
        (lambda df: df.rename(columns={"label": "y"}), [], r"no label column 'label' .* name it with --label-col"),
        (lambda df: df, ["--model", "nope"], r"unknown model \(--model\) 'nope'; choose one of: "),
        (lambda df: df, ["--n-boot", "-1"], r"n_boot=-1; give 0"),
    ],
)
def test_input_errors_are_one_line_exit_2(world, edit, argv, message):
    import re

    root, _, preds = world
    labels = _edit_labels(root, e=edit)
    r = runner.invoke(app, ["oof-report", "--labels", labels, *preds, *argv])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), r.stderr
    assert r.stdout == ""


def test_missing_table_and_mismatched_classes(world, tmp_path):
    root, labels, preds = world
    r = runner.invoke(app, ["oof-report", "--labels", labels, str(root / "nope")])
    assert r.exit_code == 2 and "no such prediction table; give a CSV or a folder holding oof.csv" in r.stderr
    other = root / "other.csv"
    df = pd.read_csv(root / "preds" / "solo" / "oof.csv", dtype={"id": str}).rename(columns={"owl": "emu"})
    df.to_csv(other, index=False)
    r = runner.invoke(app, ["oof-report", "--labels", labels, preds[0], str(other)])
    assert r.exit_code == 2 and "classes differ from the reference (lacks \"owl\" and has extra \"emu\")" in r.stderr
