"""End to end: the multi-label example (examples/mosaics/run.sh) on a reduced run — few images, 2 folds, 1 epoch.

Everything goes through the `ens` CLI as a user runs it; the checks recompute what ens wrote
independently: the folds with the iterative-stratification package, the submissions' sets
from the members' test tables with numpy (weights and thresholds read from the recipes), the
recorded OOF scores and the printed private scores with scikit-learn on indicator matrices.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.metrics import f1_score

from ensemble.ledger import list_submissions

ROOT = Path(__file__).resolve().parents[1]
# a reduced set of the example's blends: at 0.5, tuned per class, tuned globally
BLENDS = {"soft": "", "weighted_thr": "--tune-thresholds=per-class", "weighted_gthr": "--tune-thresholds=global"}
MODELS = ["resnet_s0", "resnet_s1", "effnet_s0"]
CLASSES = [str(d) for d in range(10)]
N_TRAIN, N_TEST, FOLDS = 300, 120, 2


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("mosaics")
    work, models = tmp / "work", tmp / "models"
    models.mkdir()
    for card in (ROOT / "models").glob("mosaic_*.toml"):
        # the cards point into examples/mosaics/work; point them at this run's folder instead
        text = card.read_text().replace("../examples/mosaics/work/", f"{work}/")
        (models / card.name).write_text(text)
    env = {
        **os.environ, "WORK": str(work), "MODELS": str(models), "FOLDS": str(FOLDS), "N_BOOT": "100",
        "BLENDS": " ".join(f"{name}:{flags}" for name, flags in BLENDS.items()),
        "PREPARE_ARGS": f"--n-train {N_TRAIN} --n-test {N_TEST} --epochs 1",
        "ENS": str(Path(sys.executable).with_name("ens")), "PY": sys.executable,
    }
    r = subprocess.run(["bash", str(ROOT / "examples/mosaics/run.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work, r.stdout


def indicators(cells: pd.Series, sep: str) -> np.ndarray:
    """Label cells -> indicator matrix (n, 10), written here independently of ens's reader."""
    return np.array([[c in str(cell).split(sep) for c in CLASSES] for cell in cells.fillna("")], dtype=np.uint8)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False).set_index("id")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def test_data_folds_and_tables_are_multilabel(run):
    work, _ = run
    train = read(work / "train.csv")
    assert len(train) == N_TRAIN and (train.index.str.len() == 5).all()  # string ids with leading zeros
    y = indicators(train["label"], "|")
    assert y.sum(axis=1).min() >= 1 and y.sum(axis=1).max() <= 4  # 1-4 digits shown, at least one class
    # the CLI's folds are the iterative-stratification package's own split for the seed
    expected = np.empty(len(y), dtype=np.int64)
    for k, (_, val) in enumerate(MultilabelStratifiedKFold(FOLDS, shuffle=True, random_state=42).split(y, y)):
        expected[val] = k
    np.testing.assert_array_equal(train["fold"].to_numpy(), expected)
    for model in MODELS:
        for kind in ("oof", "test"):
            meta = json.loads((work / "preds" / model / f"{kind}.json").read_text())
            assert meta["task"] == "multilabel", (model, kind)
        oof = read(work / "preds" / model / "oof.csv")
        assert list(oof.columns) == CLASSES and ((oof >= 0) & (oof <= 1)).all().all()
        assert not np.allclose(oof.sum(axis=1), 1.0)  # sigmoid outputs, not a softmax
    assert {"per_class_auc_ap.png", "threshold_f1.png"} <= {p.name for p in (work / "report").glob("*.png")}


def test_submissions_are_the_thresholded_blend_of_the_members(run):
    work, _ = run
    test_ids = read(work / "test.csv").index
    for name in BLENDS:
        recipe = json.loads((work / "blends" / name / "recipe.json").read_text())
        assert recipe["task"] == "multilabel" and recipe["classes"] == CLASSES, name
        members = [read(Path(m["test"])).reindex(test_ids)[CLASSES].to_numpy(np.float64) for m in recipe["members"]]
        weights = np.asarray(recipe.get("weights") or np.full(len(members), 1 / len(members)), dtype=np.float64)
        w = weights / weights.sum()
        assert recipe.get("bias") is None and recipe.get("temperature", 1.0) == 1.0, name
        if recipe.get("pool", "linear") == "log":  # geometric pooling: the sigmoid of the weighted mean logit
            raw = 1 / (1 + np.exp(-np.tensordot(w, logit(np.stack(members)), axes=1)))
        else:  # (n, C): the weighted mean of the members' probabilities
            raw = np.tensordot(w, np.stack(members), axes=1)
        t = np.broadcast_to(np.asarray(recipe.get("thresholds") or 0.5, dtype=np.float64), (len(CLASSES),))
        margin = logit(raw) - logit(t)  # > 0: above the class's threshold
        chosen = margin > 0
        none = ~chosen.any(axis=1)
        chosen[np.flatnonzero(none), margin[none].argmax(axis=1)] = True  # a row with no class: its top class
        sub = read(work / "submissions" / f"{name}.csv").reindex(test_ids)
        assert list(sub.columns) == ["label"] and sub["label"].notna().all(), name
        got = indicators(sub["label"], " ").astype(bool)
        clear = np.abs(margin) > 1e-5  # cells within float32 rounding of a threshold may go either way
        assert (got == chosen)[clear].all(), (name, int((got != chosen)[clear].sum()))
    entries = list_submissions(work / "ledger.db")
    assert [Path(e.path).stem for e in entries] == list(BLENDS)


def test_recorded_oof_scores_match_sklearn(run):
    work, _ = run
    labels = read(work / "train.csv")["label"]
    for name in BLENDS:
        oof = read(work / "blends" / name / "oof.csv")
        recipe = json.loads((work / "blends" / name / "recipe.json").read_text())
        # tuned blends write tables moved so each threshold sits at 0.5: p > 0.5 is the decision
        expected = f1_score(indicators(labels.reindex(oof.index), "|"), oof[CLASSES].to_numpy() > 0.5, average="macro", zero_division=0)
        assert recipe["scores"]["metric"] == "macro_f1", name
        assert recipe["scores"]["oof"] == pytest.approx(expected, abs=1e-9), name
        if "thr" in name:
            assert recipe["scores"]["nested"] is not None, name  # the thresholds are refitted per outer fold


def test_private_scores_printed_match_sklearn(run):
    work, out = run
    truth = indicators(read(work / "test_labels.csv")["label"], "|")
    ids = read(work / "test_labels.csv").index
    board = out[out.index("private leaderboard"):]
    scores = {}
    for name in BLENDS:
        pred = indicators(read(work / "submissions" / f"{name}.csv").reindex(ids)["label"], " ")
        scores[name] = f1_score(truth, pred, average="macro", zero_division=0)
        row = re.search(rf"blend {name}\s+(\S+)\s+(\S+)\s+(\S+)", board)
        assert row and float(row.group(3)) == pytest.approx(scores[name], abs=5e-5), name
    line = re.search(r"soft average at 0\.5 (\S+), weighted blend with tuned per-class thresholds (\S+)", board)
    assert line and float(line.group(1)) == pytest.approx(scores["soft"], abs=5e-5)
    assert float(line.group(2)) == pytest.approx(scores["weighted_thr"], abs=5e-5)
