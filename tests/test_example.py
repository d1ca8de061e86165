"""End to end: the README's main job (examples/digits/run.sh) on a reduced run — 2 folds, 1 epoch.

Everything goes through the `ens` CLI as a user runs it; the checks compare what ens wrote with an
independent sklearn computation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import f1_score

from ensemble.ledger import list_submissions

ROOT = Path(__file__).resolve().parents[1]
BLENDS = ["soft", "hard", "weighted", "greedy", "weighted_bias", "seed_soft"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("digits")
    work, models = tmp / "work", tmp / "models"
    models.mkdir()
    for card in (ROOT / "models").glob("digits_*.toml"):
        # the cards point into examples/digits/work; point them at this run's folder instead
        text = card.read_text().replace("../examples/digits/work/", f"{work}/")
        (models / card.name).write_text(text)
    env = {
        **os.environ, "WORK": str(work), "MODELS": str(models), "PREPARE_ARGS": "--folds 2 --epochs 1",
        "ENS": str(Path(sys.executable).with_name("ens")), "PY": sys.executable,
    }
    r = subprocess.run(["bash", str(ROOT / "examples/digits/run.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work, r.stdout


def test_every_stage_ran_and_wrote_its_outputs(run):
    work, out = run
    for model in ("resnet_s0", "resnet_s1", "effnet_s0", "resnet_swa", "resnet_swa_bn"):
        for table in ("oof.csv", "test.csv", "test_fold0.csv", "test_fold1.csv"):
            assert (work / "preds" / model / table).is_file(), (model, table)
    assert json.loads((work / "preds/effnet_s0/oof.json").read_text())["checkpoints"]  # ONNX files hashed too
    assert sorted(p.name for p in (work / "report").glob("*.png")) == [
        "confusion.png", "correlation.png", "logloss_vs_f1.png", "per_class_f1.png"]
    assert re.search(r"TTA chosen by OOF: --tta \S+", out)
    assert "pick 1:" in out and "pick 2:" in out


def test_submissions_cover_the_test_ids_and_are_in_the_ledger(run):
    work, _ = run
    test_ids = pd.read_csv(work / "test.csv", dtype=str)["id"]
    assert test_ids.str.len().eq(5).all()  # string ids with leading zeros survive the whole job
    classes = json.loads((work / "blends/soft/recipe.json").read_text())["classes"]
    for name in BLENDS:
        sub = pd.read_csv(work / "submissions" / f"{name}.csv", dtype=str)
        assert list(sub.columns) == ["id", "label"]
        assert sorted(sub["id"]) == sorted(test_ids) and sub["label"].isin(classes).all()
    entries = list_submissions(work / "ledger.db")
    assert [Path(e.path).stem for e in entries] == BLENDS


def test_recorded_oof_scores_match_sklearn(run):
    work, _ = run
    labels = pd.read_csv(work / "train.csv", dtype=str).set_index("id")["label"]
    for name in BLENDS:
        oof = pd.read_csv(work / "blends" / name / "oof.csv", dtype={"id": str}).set_index("id")
        recipe = json.loads((work / "blends" / name / "recipe.json").read_text())
        expected = f1_score(labels.reindex(oof.index), oof.idxmax(axis=1), average="macro")
        assert recipe["scores"]["metric"] == "macro_f1" and recipe["scores"]["oof"] == pytest.approx(expected, abs=1e-12), name


def test_private_scores_printed_match_sklearn(run):
    work, out = run
    truth = pd.read_csv(work / "test_labels.csv", dtype=str).set_index("id")["label"]
    board = out[out.index("private leaderboard"):]
    for name in BLENDS:
        pred = pd.read_csv(work / "submissions" / f"{name}.csv", dtype=str).set_index("id")["label"]
        score = f1_score(truth, pred.reindex(truth.index), average="macro")
        row = re.search(rf"blend {name}\s+(\S+)\s+(\S+)\s+(\S+)", board)
        assert row and float(row.group(3)) == pytest.approx(score, abs=5e-5), name
