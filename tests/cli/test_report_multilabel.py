"""`ens oof-report` on a small multi-label problem: what it prints, the JSON, the figures, the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score
from typer.testing import CliRunner

from ensemble import make_table, write_table
from ensemble.cli import app
from ensemble.report.plots import MULTILABEL_PLOTS, PLOTS
from tests.report.test_multilabel import CLASSES, write_world

runner = CliRunner()


@pytest.fixture
def world(tmp_path):
    labels, y, probs = write_world(tmp_path, n=200)
    preds = [str(tmp_path / "preds" / m) for m in ("solo", "f_s1", "f_s2")]
    return tmp_path, str(labels), preds, y, probs


def test_prints_per_class_cardinality_agreement_and_tta(world):
    root, labels, preds, y, probs = world
    r = runner.invoke(app, ["oof-report", "--labels", labels, *preds, "--n-boot", "0", "--metric", "map", "--plots", str(root / "plots")])
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    for text in ("multi-label, true cardinality", "macro-F1@0.5", "subset accuracy", "mean BCE", "cardinality@0.5",
                 "best F1 and its threshold t are in-sample", "pos rate", "pred rate", "label cardinality",
                 "one global threshold", "decision agreement", "probability correlation",
                 "TTA views and mean-merges: solo", "f:seed-avg"):
        assert text in out, text
    assert "confusion" not in out and "top confused" not in out
    assert sorted(p.name for p in (root / "plots").iterdir()) == sorted(MULTILABEL_PLOTS)


def test_json_to_stdout(world):
    root, labels, preds, y, probs = world
    r = runner.invoke(app, ["oof-report", "--labels", labels, preds[1], "--json", "-", "--n-boot", "0",
                            "--metric", "roc_auc", "--no-folds"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["task"] == "multilabel" and d["metric"] == "roc_auc" and d["focus"] == "f_s1"
    m = d["models"][0]
    assert m["score"] == pytest.approx(roc_auc_score(y, probs["f_s1"]), abs=1e-12)
    assert m["per_label"]["auc"] == pytest.approx([roc_auc_score(y[:, j], probs["f_s1"][:, j]) for j in range(len(CLASSES))])
    assert m["macro_f1"] == pytest.approx(f1_score(y, probs["f_s1"] > 0.5, average="macro", zero_division=0))
    assert d["per_label"]["cardinality"] == {"true": pytest.approx(y.sum(1).mean()),
                                             "predicted": pytest.approx((probs["f_s1"] > 0.5).sum(1).mean())}


def test_label_sep_option(tmp_path):
    labels, y, probs = write_world(tmp_path, n=120, sep=";")
    pred = str(tmp_path / "preds" / "f_s1")
    r = runner.invoke(app, ["oof-report", "--labels", str(labels), pred, "--n-boot", "0", "--json", "-"])
    assert r.exit_code == 2 and r.stdout == ""  # "a;b" is not a class name under the default separator
    r = runner.invoke(app, ["oof-report", "--labels", str(labels), pred, "--n-boot", "0", "--json", "-", "--label-sep", ";"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["cardinality"]["true"] == pytest.approx(y.sum(1).mean())


def test_mixing_tasks_is_one_line_exit_2(world):
    root, labels, preds, y, probs = world
    ids = [f"{i:05d}" for i in range(len(y))]
    soft = np.full((len(y), len(CLASSES)), 1 / len(CLASSES))
    write_table(make_table(ids, CLASSES, soft, meta={"model": "soft"}), root / "soft.csv")
    r = runner.invoke(app, ["oof-report", "--labels", labels, preds[0], str(root / "soft.csv"), "--n-boot", "0",
                            "--json", str(root / "r.json")])
    assert r.exit_code == 2 and r.stdout == "" and not (root / "r.json").exists()
    assert "tables mix tasks" in r.stderr and "blend or compare tables of one task" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_label_sets_against_multiclass_tables_are_refused(world):
    root, labels, preds, y, probs = world
    ids = [f"{i:05d}" for i in range(len(y))]
    soft = np.full((len(y), len(CLASSES)), 1 / len(CLASSES))
    write_table(make_table(ids, CLASSES, soft, meta={"model": "soft"}), root / "soft.csv")
    r = runner.invoke(app, ["oof-report", "--labels", labels, str(root / "soft.csv"), "--n-boot", "0"])
    assert r.exit_code == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert "train.csv" in r.stderr and "hold several classes joined by '|'" in r.stderr and "the task is multiclass" in r.stderr


def test_all_classes_refused_for_multilabel(world):
    root, labels, preds, *_ = world
    r = runner.invoke(app, ["oof-report", "--labels", labels, preds[1], "--n-boot", "0", "--all-classes"])
    assert r.exit_code == 2 and "multi-label macro-F1 always averages over all classes: drop --all-classes" in r.stderr


def test_existing_multilabel_figure_refused_before_work(world):
    root, labels, preds, *_ = world
    (root / "plots").mkdir()
    (root / "plots" / "threshold_f1.png").write_bytes(b"old")
    (root / "plots" / PLOTS[0]).write_bytes(b"a multiclass figure: not in the way of a multi-label report")
    r = runner.invoke(app, ["oof-report", "--labels", labels, preds[1], "--n-boot", "0", "--plots", str(root / "plots")])
    assert r.exit_code == 2 and "threshold_f1.png exists; pass --force" in r.stderr and r.stdout == ""
    assert (root / "plots" / "threshold_f1.png").read_bytes() == b"old"
