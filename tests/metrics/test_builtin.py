"""The built-in metric registry against scikit-learn, and the invariances every entry must keep."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from ensemble import _kernels
from ensemble.errors import MetricError, UnknownNameError
from ensemble.metrics import METRICS, Metric, get_metric, qwk, roc_auc
from tests.metrics.cases import ORACLES, labelled, sklearn_score

ORDINAL = {"qwk"}  # depends on the class order: only order-reversing permutations keep it
# name: (higher is better, argmax only, has a count code, has row losses)
CAPABILITIES = {
    "macro_f1": (True, True, True, False),
    "macro_f1_all": (True, True, True, False),
    "micro_f1": (True, True, True, False),
    "weighted_f1": (True, True, True, False),
    "accuracy": (True, True, True, True),
    "balanced_accuracy": (True, True, True, False),
    "qwk": (True, True, False, False),
    "log_loss": (False, False, False, True),
    "roc_auc": (True, False, False, False),
}


def check_equals_sklearn(name: str, y: np.ndarray, probs: np.ndarray) -> None:
    metric = METRICS.get(name)
    if name == "roc_auc" and len(np.unique(y)) < 2:  # sklearn: NaN; ens: undefined, one line
        with pytest.raises(MetricError, match="ROC-AUC is undefined: every row of y_true is class"):
            metric.score(y, probs)
        return
    rel = 2e-6 if name == "log_loss" and probs.dtype == np.float32 else 1e-12  # sklearn logs float32 in float32
    assert metric.score(y, probs) == pytest.approx(sklearn_score(name, y, probs), rel=rel, abs=1e-12, nan_ok=True)


def test_every_entry_has_an_oracle_and_its_capabilities():
    assert set(METRICS.names()) == set(ORACLES) == set(CAPABILITIES)
    for name, m in METRICS.items():
        has_rows = m.row_losses(np.array([0, 1]), np.eye(2, dtype=np.float32)) is not None
        assert (m.higher_is_better, m.argmax_only, m.count_code is not None, has_rows) == CAPABILITIES[name], name
        assert m.name == name
        if m.count_code is not None:
            assert _kernels.COUNT_METRICS[name] == m.count_code


@pytest.mark.parametrize("name", list(ORACLES))
@settings(max_examples=40, deadline=None)
@given(case=labelled(min_classes=2), ties=st.booleans())
def test_equals_sklearn_on_random_inputs(name, case, ties):
    y, probs, _ = case
    if ties:  # exact ties: the first maximum wins, as np.argmax (sklearn is given np.argmax)
        probs = (np.round(probs * 2) / 2).astype(probs.dtype)
    check_equals_sklearn(name, y, probs)


@pytest.mark.parametrize("name", list(ORACLES))
@pytest.mark.parametrize("c", [2, 3, 18])
def test_equals_sklearn_on_larger_problems_and_perfect_predictions(rng, name, c):
    y = rng.integers(0, c, 3000)
    probs = rng.dirichlet(np.ones(c), 3000).astype(np.float32)
    probs[np.arange(1000), y[:1000]] += 1.5  # a real signal, and some confident rows
    probs /= probs.sum(axis=1, keepdims=True)
    check_equals_sklearn(name, y, probs)
    perfect = np.eye(c)[y] * 0.9 + 0.1 / c
    check_equals_sklearn(name, y, perfect)
    missing = probs.copy()
    missing[:, 0] = 0  # class 0 never predicted
    check_equals_sklearn(name, y, missing)
    check_equals_sklearn(name, np.where(y == c - 1, 0, y), probs)  # the last class never true


def test_roc_auc_equals_sklearns_multiclass_call_when_every_class_is_present(rng):
    y = rng.integers(0, 5, 2000)
    probs = rng.dirichlet(np.ones(5), 2000)
    probs[np.arange(2000), y] += 0.3
    probs /= probs.sum(axis=1, keepdims=True)
    expected = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=np.arange(5))
    assert roc_auc(y, probs) == pytest.approx(expected, rel=1e-12)
    binary = probs[:, :2] / probs[:, :2].sum(axis=1, keepdims=True)
    assert roc_auc(y % 2, binary) == pytest.approx(skm.roc_auc_score(y % 2, binary[:, 1]), rel=1e-12)


def test_roc_auc_skips_classes_absent_from_the_truth(rng):
    # sklearn's macro average is NaN here; ens averages the present classes (documented choice)
    y = rng.choice([0, 2, 3], 500)
    probs = rng.dirichlet(np.ones(4), 500)
    present = [skm.roc_auc_score(y == j, probs[:, j]) for j in (0, 2, 3)]
    assert roc_auc(y, probs) == pytest.approx(np.mean(present), rel=1e-12)
    with pytest.raises(MetricError, match="needs scores of at least 2 classes"):
        roc_auc(np.zeros(3, np.int64), np.ones((3, 1)))


def test_qwk_degenerate_case_is_nan_like_sklearn():
    y = np.zeros(4, np.int64)
    probs = np.eye(3)[y]
    assert np.isnan(qwk(y, probs))  # truth and prediction a single same class: undefined
    assert np.isnan(METRICS.get("qwk").score(y, probs))
    assert qwk(y, np.eye(3)[[1, 1, 1, 1]]) == skm.cohen_kappa_score(y, [1] * 4, weights="quadratic", labels=[0, 1, 2])


@pytest.mark.parametrize("name", list(ORACLES))
def test_row_order_invariance(rng, name):
    y = rng.integers(0, 5, 400)
    probs = rng.dirichlet(np.ones(5), 400).astype(np.float32)
    perm = rng.permutation(400)
    m = METRICS.get(name)
    assert m.score(y[perm], probs[perm]) == pytest.approx(m.score(y, probs), rel=1e-12)


@pytest.mark.parametrize("name", list(ORACLES))
def test_class_permutation_invariance(rng, name):
    y = rng.integers(0, 6, 400)
    probs = rng.dirichlet(np.ones(6), 400)
    m = METRICS.get(name)
    reverse = np.arange(6)[::-1]  # class j becomes class 5 - j: every metric, the ordinal ones too
    perms = [reverse] if name in ORDINAL else [reverse, rng.permutation(6)]
    for perm in perms:
        permuted = np.empty_like(probs)
        permuted[:, perm] = probs
        assert m.score(perm[y], permuted) == pytest.approx(m.score(y, probs), rel=1e-12)
    if name in ORDINAL:  # and a shuffle of the order does change it
        perm = np.array([3, 0, 5, 1, 4, 2])
        permuted = np.empty_like(probs)
        permuted[:, perm] = probs
        assert m.score(perm[y], permuted) != pytest.approx(m.score(y, probs), rel=1e-6)


@pytest.mark.parametrize("name", list(ORACLES))
def test_row_losses_average_to_the_score(rng, name):
    y = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300).astype(np.float32)
    m = METRICS.get(name)
    rows = m.row_losses(y, probs)
    if rows is not None:
        assert rows.shape == (300,) and rows.dtype == np.float64
        assert rows.mean() == pytest.approx(m.score(y, probs), rel=1e-12)


@pytest.mark.parametrize(("name", "lower"), [("log_loss", True), ("macro_f1", False), ("qwk", False)])
def test_best_and_oriented_follow_the_direction(rng, name, lower):
    y = rng.integers(0, 4, 2000)
    candidates = []
    for signal in (0.2, 2.0, 0.8):  # the middle candidate is the best for every metric
        logits = rng.standard_normal((2000, 4))
        logits[np.arange(2000), y] += signal
        candidates.append(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
    m = METRICS.get(name)
    scores = np.array([m.score(y, p) for p in candidates])
    truth = np.array([sklearn_score(name, y, p) for p in candidates])
    assert m.best(scores) == 1 == (np.argmin(truth) if lower else np.argmax(truth))
    assert m.better(scores[1], scores[0]) and not m.better(scores[0], scores[1])
    np.testing.assert_array_equal(m.oriented(scores), -scores if lower else scores)
    assert m.direction == ("lower is better" if lower else "higher is better")


def test_get_metric():
    assert get_metric("qwk") is METRICS.get("qwk")
    custom = Metric("mine", higher_is_better=False)
    assert get_metric(custom) is custom
    with pytest.raises(UnknownNameError, match="unknown metric 'f2'; choose one of: macro_f1, macro_f1_all, micro_f1"):
        get_metric("f2")


@pytest.mark.parametrize("name", list(ORACLES))
def test_input_errors_are_metric_errors(name):
    m = METRICS.get(name)
    with pytest.raises(MetricError, match="y_true holds labels outside 0..1"):
        m.score(np.array([0, 2]), np.eye(2, dtype=np.float32))
    with pytest.raises(MetricError, match="y_true has 2 rows but the predictions have 3"):
        m.score(np.array([0, 1]), np.eye(3, dtype=np.float32))
