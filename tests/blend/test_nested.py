"""Nested estimates: no held-out label reaches the fit, and pure noise shows no nested gain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from benchmarks.synthetic import make_problem
from ensemble.blend import blend
from ensemble.blend import methods as M
from ensemble.blend import nested as N
from ensemble.errors import LabelError
from ensemble.labels import Labels
from ensemble.tables import make_table


def test_folds_from_labels_else_a_seeded_stratified_split():
    y = np.repeat(np.arange(3), 20)
    given = np.arange(60) % 4
    folds, source = N.nested_folds(given, y, 42)
    assert source == "labels" and np.array_equal(folds, given)
    folds, source = N.nested_folds(None, y, 7)
    assert source == "stratified(seed=7)"
    for k, (_, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=7).split(y, y)):
        assert (folds[test] == k).all()


@pytest.mark.parametrize("method,spec", [
    ("weighted", M.Spec(tune_bias=True)),
    ("greedy", M.Spec(rounds=15)),
    ("hard", M.Spec(top=2)),
])
def test_held_out_labels_never_reach_the_fit(method, spec):
    p = make_problem(n_models=5, n_samples=1000, n_classes=4, seed=6)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    pred = N.nested_predictions(method, X, p.y, 4, spec, p.folds)
    scrambled = p.y.copy()
    fold0 = p.folds == 0
    scrambled[fold0] = np.random.default_rng(0).permutation(scrambled[fold0])  # fold 0's labels changed...
    pred2 = N.nested_predictions(method, X, scrambled, 4, spec, p.folds)
    np.testing.assert_array_equal(pred2[fold0], pred[fold0])  # ...but fold 0's predictions did not
    assert not np.array_equal(pred2[~fold0], pred[~fold0])  # (other folds' fits did see them)


def test_pure_noise_gains_in_sample_but_not_nested():
    p = make_problem(n_models=0, n_noise=12, n_samples=1500, n_classes=4, seed=1)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    soft = f1_score(p.y, X.mean(axis=1).argmax(1), average="macro")
    fitted = M.fit("weighted", X, p.y, 4, M.Spec())
    in_sample = f1_score(p.y, M.apply("weighted", fitted, X).argmax(1), average="macro")
    nested = f1_score(p.y, N.nested_predictions("weighted", X, p.y, 4, M.Spec(), p.folds).argmax(1), average="macro")
    assert in_sample - soft > (nested - soft) + 0.02  # the fit found "signal" in noise...
    assert abs(nested - soft) < 0.03  # ...that does not survive held-out folds


def test_blend_reports_noise_as_within_noise(tmp_path):
    p = make_problem(n_models=0, n_noise=8, n_samples=1200, n_classes=4, seed=2)
    classes = list("abcd")
    ids = np.array([f"{i}" for i in range(1200)], dtype=object)
    oof = [make_table(ids, classes, p.probs[m], meta={"model": n}) for m, n in enumerate(p.names)]
    lab = Labels(ids, classes, p.y, p.folds, None, pd.DataFrame(), tmp_path / "train.csv")
    r = blend(oof, lab, method="weighted", n_boot=200)
    s = r.scores
    assert s.oof > s.nested
    assert s.within_noise is True and "within noise" in r.verdict
    assert r.folds_source == "labels"


def test_labels_with_a_single_fold_are_one_line_naming_the_file_not_an_empty_fit(tmp_path):
    p = make_problem(n_models=3, n_samples=300, n_classes=3, seed=4)
    classes = list("abc")
    ids = np.array([f"{i}" for i in range(300)], dtype=object)
    oof = [make_table(ids, classes, p.probs[m], meta={"model": n}) for m, n in enumerate(p.names)]
    lab = Labels(ids, classes, p.y, np.zeros(300, dtype=np.int64), None, pd.DataFrame(), tmp_path / "train.csv")
    with pytest.raises(LabelError, match=r"train.csv: the fold column holds a single fold.*pass --no-nested"):
        blend(oof, lab, method="weighted", n_boot=20)
    assert blend(oof, lab, method="weighted", n_boot=20, nested=False).scores.nested is None


@pytest.mark.parametrize("name", ["macro_f1", "qwk", "accuracy", "log_loss"])
def test_nested_best_single_takes_each_folds_best_member_on_its_training_rows(name):
    from sklearn.metrics import accuracy_score, cohen_kappa_score, log_loss

    from ensemble.metrics import get_metric

    oracle = {
        "macro_f1": lambda y, p: f1_score(y, p.argmax(1), average="macro"),
        "qwk": lambda y, p: cohen_kappa_score(y, p.argmax(1), weights="quadratic"),
        "accuracy": lambda y, p: accuracy_score(y, p.argmax(1)),
        "log_loss": lambda y, p: -log_loss(y, p, labels=range(5)),
    }[name]
    p = make_problem(n_models=0, n_noise=6, n_samples=1200, n_classes=5, seed=11)  # near-equal members: the best changes by fold
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    expected = np.empty((1200, 5), dtype=np.float32)
    for k in np.unique(p.folds):
        test = p.folds == k
        best = int(np.argmax([oracle(p.y[~test], X[~test, u]) for u in range(6)]))
        expected[test] = X[test, best]
    np.testing.assert_array_equal(N.nested_best_single(X, p.y, get_metric(name), p.folds), expected)
