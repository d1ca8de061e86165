"""Multi-label submissions in the ledger: sets compared per (row, class) decision, order-free hashes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import hamming_loss
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.errors import LabelError
from ensemble.ledger import diff_submissions, load_predictions, record_submission
from ensemble.submission import SubmissionFormat
from tests.ledger.test_entries import write_recipe, write_sub

CLASSES = ["atelectasis", "effusion", "hernia", "mass"]
ML = "multilabel"


def _cells(Y: np.ndarray, *, sep: str = " ", reverse: bool = False, as_index: bool = False) -> list[str]:
    """Each row's set written by hand (optionally in reverse class order, or as indices)."""
    names = [str(i) for i in range(len(CLASSES))] if as_index else CLASSES
    out = []
    for row in Y:
        chosen = [names[j] for j in np.flatnonzero(row)]
        out.append(sep.join(chosen[::-1] if reverse else chosen))
    return out


@pytest.fixture
def base(tmp_path, rng):
    ids = np.array([f"{i:05d}" for i in range(300)], dtype=object)
    Y = (rng.random((300, len(CLASSES))) < [0.5, 0.3, 0.1, 0.2]).astype(np.uint8)
    Y[Y.sum(axis=1) == 0, 0] = 1  # every row has a class (no --allow-empty needed)
    return tmp_path, ids, Y


def test_order_of_classes_and_rows_does_not_change_the_hash(base, rng):
    tmp, ids, Y = base
    ledger = tmp / "l.db"
    a = record_submission(write_sub(tmp / "a.csv", ids, _cells(Y)), ledger=ledger, task=ML)
    b = record_submission(write_sub(tmp / "b.csv", ids, _cells(Y, reverse=True), order=rng.permutation(300)), ledger=ledger, task=ML)
    assert a.entry.labels_as == "sets as written" and a.entry.sets
    assert b.entry.pred_sha256 == a.entry.pred_sha256 and b.duplicate_of.id == 1 and b.agreement == 1.0
    # another separator, the same sets
    c = record_submission(write_sub(tmp / "c.csv", ids, _cells(Y, sep="|")), ledger=ledger, task=ML, fmt=SubmissionFormat(label_sep="|"))
    assert c.entry.pred_sha256 == a.entry.pred_sha256


def test_names_and_indices_are_the_same_sets_when_classes_are_known(base):
    tmp, ids, Y = base
    ledger = tmp / "l.db"
    a = record_submission(write_sub(tmp / "a.csv", ids, _cells(Y)), ledger=ledger, task=ML, classes=CLASSES)
    b = record_submission(write_sub(tmp / "b.csv", ids, _cells(Y, as_index=True, reverse=True)), ledger=ledger, task=ML, classes=CLASSES)
    assert a.entry.labels_as == "class-name sets" and b.entry.pred_sha256 == a.entry.pred_sha256
    # recorded without classes (indices as written), it still matches once reconciled
    c = record_submission(write_sub(tmp / "c.csv", ids, _cells(Y, as_index=True)), ledger=ledger, task=ML)
    assert c.entry.pred_sha256 != a.entry.pred_sha256 and c.duplicate_of.id in (1, 2) and c.agreement == 1.0


@pytest.mark.parametrize("classes", [CLASSES, None])
def test_agreement_is_the_share_of_equal_row_class_decisions(base, rng, classes):
    tmp, ids, Y = base
    ledger = tmp / "l.db"
    variants = []
    for k, n_flip in enumerate([80, 10, 40]):
        V = Y.copy()
        rows, cols = rng.choice(300, n_flip, replace=False), rng.integers(0, len(CLASSES), n_flip)
        V[rows, cols] ^= 1
        V[V.sum(axis=1) == 0, 0] = 1
        variants.append(V)
        record_submission(write_sub(tmp / f"v{k}.csv", ids, _cells(V), order=rng.permutation(300)), ledger=ledger, task=ML, classes=classes)
    new = record_submission(write_sub(tmp / "new.csv", ids, _cells(Y)), ledger=ledger, task=ML, classes=classes)
    expected = [1 - hamming_loss(Y, V) for V in variants]  # every class is predicted somewhere: the same universe
    assert new.closest.id == 1 + int(np.argmax(expected)) and new.agreement == pytest.approx(max(expected))
    d = diff_submissions(1, 4, ledger=ledger)
    assert d.sets and d.agreement == pytest.approx(expected[0])
    counts = {c["label"]: (c["a"], c["b"]) for c in d.per_class}
    assert counts == {c: (int(variants[0][:, j].sum()), int(Y[:, j].sum())) for j, c in enumerate(CLASSES)}
    differ = np.flatnonzero((variants[0] != Y).any(axis=1))
    assert d.flipped["id"].tolist() == ids[differ].tolist()
    assert d.flipped["b"].tolist() == _cells(Y[differ])  # shown as the classes joined by spaces


def test_empty_sets_need_allow_empty_and_round_trip(base):
    tmp, ids, Y = base
    Y = Y.copy()
    Y[:5] = 0
    ledger = tmp / "l.db"
    sub = write_sub(tmp / "a.csv", ids, _cells(Y))
    with pytest.raises(LabelError, match="5 rows have an empty 'label'; pass --allow-empty"):
        record_submission(sub, ledger=ledger, task=ML)
    res = record_submission(sub, ledger=ledger, task=ML, fmt=SubmissionFormat(allow_empty=True), classes=CLASSES)
    _, preds = load_predictions(res.entry.id, ledger)
    assert preds.is_sets and [set(m) for m in preds.members()] and preds.shown[:5].tolist() == [""] * 5
    got = np.array([[c in s.split() for c in CLASSES] for s in preds.shown], dtype=np.uint8)
    np.testing.assert_array_equal(got, Y)


def test_the_recipe_s_blend_tells_the_task(base):
    tmp, ids, Y = base
    recipe = write_recipe(tmp / "blends" / "ml" / "recipe.json", classes=CLASSES)
    (tmp / "blends" / "ml" / "test.json").write_text(json.dumps({"task": "multilabel"}))  # the blend's test table sidecar
    a = record_submission(write_sub(tmp / "a.csv", ids, _cells(Y, reverse=True)), ledger=tmp / "l.db", recipe_path=recipe)
    assert a.entry.labels_as == "class-name sets"
    b = record_submission(write_sub(tmp / "b.csv", ids, _cells(Y)), ledger=tmp / "l.db", recipe_path=recipe)
    assert b.duplicate_of.id == 1


runner = CliRunner()


def test_cli_add_and_diff_multilabel(base):
    tmp, ids, Y = base
    ledger = tmp / "l.db"
    Y2 = Y.copy()
    Y2[:3] = 0
    write_sub(tmp / "a.csv", ids, _cells(Y2))
    r = runner.invoke(app, ["submissions", "add", str(tmp / "a.csv"), "--task", "multilabel", "--ledger", str(ledger)])
    assert r.exit_code == 2 and "3 rows have an empty 'label'; pass --allow-empty" in r.stderr
    r = runner.invoke(app, ["submissions", "add", str(tmp / "a.csv"), "--task", "multilabel", "--allow-empty", "--ledger", str(ledger)])
    assert r.exit_code == 0, r.output
    pd.DataFrame({"id": ids, "label": _cells(Y, sep=";", reverse=True)}).to_csv(tmp / "b.csv", index=False)
    r = runner.invoke(app, ["submissions", "add", str(tmp / "b.csv"), "--task", "multilabel", "--submission-label-sep", ";",
                            "--ledger", str(ledger)])
    assert r.exit_code == 0, r.output
    expected = 1 - hamming_loss(Y2, Y)
    assert f"{expected:.2%} of (row, class) decisions agree" in r.stdout
    r = runner.invoke(app, ["submissions", "diff", "1", "2", "--ledger", str(ledger)])
    assert r.exit_code == 0, r.output
    assert f"{expected:.2%} of (row, class) decisions agree on 300 common ids (3 flipped)" in " ".join(r.stdout.split())
    assert "rows predicting each class" in r.stdout
