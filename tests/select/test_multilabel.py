"""`ens select` on multi-label blends: the multi-label metric, per-(row, class) agreement, sets from the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from ensemble import make_table, write_table
from ensemble.cli import app
from ensemble.ledger import record_submission
from ensemble.select import load_candidates, select_submissions
from ensemble.submission import SubmissionFormat, write_submission
from ensemble.tables import read_table

CLASSES = ["atelectasis", "effusion", "hernia", "mass"]
RATES = [0.4, 0.3, 0.15, 0.25]
N = 800


def noisy_probs(rng: np.random.Generator, Y: np.ndarray, wrong: float) -> np.ndarray:
    """Sigmoid outputs deciding like `Y` except on a `wrong` share of (row, class) cells."""
    p = np.where(Y == 1, 0.8, 0.2)
    flip = rng.random(Y.shape) < wrong
    return np.where(flip, 1 - p, p)


def make_blend(root: Path, name: str, ids, oof, test_ids, test, *, nested: float | None) -> Path:
    folder = root / "blends" / name
    write_table(make_table(ids, CLASSES, oof, meta={"model": name}, task="multilabel"), folder / "oof.csv")
    write_table(make_table(test_ids, CLASSES, test, meta={"model": name}, task="multilabel"), folder / "test.csv")
    recipe = {
        "method": "weighted", "classes": CLASSES, "members": [{"name": name, "oof_sha256": name, "test_sha256": name}],
        "units": [name], "unit_members": {name: [name]}, "weights": [1.0],
        "scores": {"metric": "macro_f1", "higher_is_better": True, "oof": 0.0, "nested": nested, "ci95": [0.0, 1.0]},
    }
    (folder / "recipe.json").write_text(json.dumps(recipe))
    return folder / "recipe.json"


def macro_f1(Y: np.ndarray, probs: np.ndarray) -> float:
    return f1_score(Y, probs > 0.5, average="macro", zero_division=0)


@pytest.fixture
def world(tmp_path):
    rng = np.random.default_rng(5)
    ids = np.array([f"{i:05d}" for i in range(N)], dtype=object)
    Y = (rng.random((N, len(CLASSES))) < RATES).astype(np.uint8)
    labels = [";".join(c for c, v in zip(CLASSES, row) if v) for row in Y]
    pd.DataFrame({"id": ids, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    test_ids = np.array([f"t{i}" for i in range(200)], dtype=object)
    TY = (rng.random((200, len(CLASSES))) < RATES).astype(np.uint8)
    lead = noisy_probs(rng, Y, 0.10)
    recipes = {
        "leader": make_blend(tmp_path, "leader", ids, lead, test_ids, noisy_probs(rng, TY, 0.1), nested=None),
        "overfit": make_blend(tmp_path, "overfit", ids, noisy_probs(rng, Y, 0.03), test_ids, noisy_probs(rng, TY, 0.2), nested=0.6),
        "copy": make_blend(tmp_path, "copy", ids, lead, test_ids, noisy_probs(rng, TY, 0.1), nested=macro_f1(Y, lead) - 0.002),
        "diverse": make_blend(tmp_path, "diverse", ids, noisy_probs(rng, Y, 0.11), test_ids, noisy_probs(rng, TY, 0.1), nested=None),
    }
    return tmp_path, recipes, Y


def fill(p: np.ndarray) -> np.ndarray:
    """The default submission's sets: p > 0.5, a row with none gets its (first) top class."""
    chosen = p > 0.5
    none = ~chosen.any(axis=1)
    chosen[none, p[none].argmax(axis=1)] = True
    return chosen


def _oof(recipes, name) -> np.ndarray:
    return read_table(recipes[name].parent / "oof.csv").probs


def test_scored_in_the_multilabel_metric_and_hedged(world):
    root, recipes, Y = world
    sel = select_submissions(root / "train.csv", recipes=list(recipes.values()), n=2, n_boot=300, seed=3, label_sep=";")
    assert sel.task == "multilabel" and sel.metric == "macro_f1"
    by = {c.name: c for c in sel.candidates}
    for name in recipes:
        assert by[name].oof == pytest.approx(macro_f1(Y, _oof(recipes, name)), abs=1e-12)
    assert by["overfit"].oof > by["leader"].oof and by["overfit"].pick is None  # the lucky in-sample score
    assert [p.name for p in sel.picks] == ["leader", "diverse"]  # not the copy
    assert by["copy"].p_beats_leader == 0.0
    # agreement: the share of equal (row, class) decisions at 0.5
    a, b = (_oof(recipes, p.name) > 0.5 for p in sel.picks)
    assert sel.oof_agreement[0][1] == pytest.approx(np.mean(a == b))
    ta, tb = (read_table(recipes[p.name].parent / "test.csv", kind="test").probs for p in sel.picks)
    assert sel.test_agreement[0][1] == pytest.approx(np.mean(fill(ta) == fill(tb)))


def test_the_bootstrap_is_the_documented_paired_row_resample(world):
    root, recipes, Y = world
    sel = select_submissions(root / "train.csv", recipes=list(recipes.values()), n=1, n_boot=50, seed=9, label_sep=";")
    order = list(recipes)
    probs = [_oof(recipes, k) for k in order]
    rng = np.random.default_rng(9)
    boot = np.empty((len(order), 50))
    for b in range(50):
        rows = rng.integers(0, N, size=N)
        boot[:, b] = [macro_f1(Y[rows], p[rows]) for p in probs]
    by = {c.name: c for c in sel.candidates}
    ins = np.array([by[k].oof for k in order])
    sim = boot - (ins - np.array([by[k].honest for k in order]))[:, None]
    winners = sim == sim.max(0)
    np.testing.assert_allclose([by[k].p_best for k in order], (winners / winners.sum(0)).mean(1), atol=1e-12)


def test_log_loss_is_the_mean_binary_cross_entropy(world):
    root, recipes, Y = world
    sel = select_submissions(root / "train.csv", recipes=list(recipes.values()), n=1, n_boot=20, metric="log_loss", label_sep=";")
    by = {c.name: c for c in sel.candidates}
    p = _oof(recipes, "leader").astype(np.float64)
    bce = -(Y * np.log(p) + (1 - Y) * np.log(1 - p)).mean()
    assert not sel.higher_is_better and by["leader"].oof == pytest.approx(bce, rel=1e-5)


def test_candidates_from_the_ledger_carry_their_submitted_sets(world):
    root, recipes, _ = world
    ledger = root / "l.db"
    for name in ("leader", "diverse"):
        test = read_table(recipes[name].parent / "test.csv", kind="test")
        write_submission(test, root / f"{name}.csv", SubmissionFormat(allow_empty=True))
        record_submission(root / f"{name}.csv", ledger=ledger, recipe_path=recipes[name], fmt=SubmissionFormat(allow_empty=True))
    cands = load_candidates(ledger=ledger)
    assert [c.name for c in cands] == ["leader", "diverse"] and all(c.test.is_sets for c in cands)
    sel = select_submissions(root / "train.csv", ledger=ledger, n=2, n_boot=50, label_sep=";")
    ta, tb = (read_table(recipes[n].parent / "test.csv", kind="test").probs > 0.5 for n in ("leader", "diverse"))
    assert sel.test_agreement[0][1] == pytest.approx(np.mean(ta == tb))  # as submitted: empty rows allowed


def test_cli_select_multilabel(world):
    root, recipes, _ = world
    r = CliRunner().invoke(app, ["select", *map(str, recipes.values()), "--labels", str(root / "train.csv"),
                                 "--label-sep", ";", "--n", "2", "--n-boot", "50"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "candidates in macro_f1 (multi-label; higher is better" in text
    assert "of test (row, class) decisions" in text and "of OOF (row, class) decisions" in text
