from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from sklearn import metrics as skm

from ensemble import macro_f1 as api_macro_f1
from ensemble.errors import MetricError
from ensemble.metrics import (
    accuracy,
    argmax,
    confusion_matrix,
    f1_from_confusion,
    log_loss,
    macro_f1,
    per_class,
    top_confused,
)
from tests.metrics.cases import labelled


def sk_f1(y, pred, labels=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the zero-division classes we test on purpose
        return skm.f1_score(y, pred, average="macro", labels=labels)


@settings(max_examples=50, deadline=None)
@given(labelled())
def test_macro_f1_equals_sklearn_exactly(case):
    y, probs, c = case
    pred = np.argmax(probs, axis=1)
    assert macro_f1(y, probs) == sk_f1(y, pred)
    assert macro_f1(y, pred) == sk_f1(y, pred)
    assert macro_f1(y, probs, all_classes=True) == sk_f1(y, pred, labels=np.arange(c))
    assert macro_f1(y, pred, n_classes=c, all_classes=True) == sk_f1(y, pred, labels=np.arange(c))


@settings(max_examples=25, deadline=None)
@given(labelled(quantise=True))
def test_ties_take_the_first_maximum_like_numpy(case):
    y, probs, _ = case
    np.testing.assert_array_equal(argmax(probs), np.argmax(probs, axis=1))
    assert macro_f1(y, probs) == sk_f1(y, np.argmax(probs, axis=1))


@settings(max_examples=30, deadline=None)
@given(labelled())
def test_confusion_accuracy_per_class_against_sklearn(case):
    y, probs, c = case
    pred = np.argmax(probs, axis=1)
    cm = confusion_matrix(y, pred, c)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=np.arange(c)))
    assert cm.dtype == np.int64
    assert f1_from_confusion(cm) == sk_f1(y, pred)
    assert accuracy(y, probs) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    pc = per_class(y, probs, c)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=np.arange(c), average=None, zero_division=0)
    np.testing.assert_allclose(pc.precision, p, rtol=1e-15)
    np.testing.assert_allclose(pc.recall, r, rtol=1e-15)
    np.testing.assert_allclose(pc.f1, f, rtol=1e-15)
    np.testing.assert_array_equal(pc.support, s)


@settings(max_examples=30, deadline=None)
@given(labelled())
def test_log_loss_against_sklearn(case):
    y, probs, c = case
    if c == 1:  # sklearn refuses a single-column problem; ours is a loss of ~0
        assert log_loss(y, probs) == pytest.approx(0.0, abs=1e-6)
        return
    probs[0] = 0
    probs[0, (y[0] + 1) % c] = 1  # a confident miss: clipping to eps decides the loss
    assert log_loss(y, probs) == pytest.approx(skm.log_loss(y, probs, labels=np.arange(c)), rel=1e-5)


def test_single_class_and_one_column():
    y = np.zeros(5, dtype=np.int64)
    assert macro_f1(y, np.ones((5, 1), np.float32)) == 1.0 == sk_f1(y, y)
    assert macro_f1(y, y, n_classes=1, all_classes=True) == 1.0
    assert macro_f1(y, np.ones(5, np.int64)) == sk_f1(y, np.ones(5, np.int64)) == 0.0


def test_non_contiguous_and_large_inputs_use_the_same_answer(rng):
    probs = rng.random((70_001, 24), dtype=np.float32)[:, ::2]  # strided view
    y = rng.integers(0, 12, len(probs))
    pred = np.argmax(probs, axis=1)
    np.testing.assert_array_equal(argmax(probs), pred)
    assert macro_f1(y, probs) == sk_f1(y, pred)
    assert api_macro_f1 is macro_f1


def test_top_confused_pairs():
    cm = np.array([[5, 3, 0], [1, 4, 7], [0, 0, 9]])
    assert top_confused(cm, 2) == [(1, 2, 7, 7 / 12), (0, 1, 3, 3 / 8)]
    assert top_confused(np.eye(3, dtype=int)) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: macro_f1(np.array([0, 1]), np.array([0])), "y_true has 2 rows but the predictions have 1"),
        (lambda: macro_f1(np.array([0, 3]), np.eye(2)), r"y_true holds labels outside 0..1: \"3\" \(rows \"1\"\)"),
        (lambda: macro_f1(np.array([0, 1]), np.array([0, 1]), all_classes=True), "all_classes needs the class count"),
        (lambda: macro_f1(np.array([0, 1]), np.eye(2), n_classes=3), "n_classes=3 but the probabilities have 2 columns"),
        (lambda: macro_f1(np.array([0.0, 1.0]), np.eye(2)), "y_true has dtype float64; labels are integer"),
        (lambda: macro_f1(np.zeros(0, np.int64), np.zeros((0, 2))), "no samples"),
        (lambda: macro_f1(np.array([0]), np.zeros((1, 2, 2))), "predictions have shape"),
        (lambda: confusion_matrix(np.array([0]), np.array([-1]), 2), "y_pred holds labels outside 0..1"),
        (lambda: log_loss(np.array([0, 2]), np.eye(2)), "y_true holds labels outside 0..1"),
        (lambda: argmax(np.zeros(3)), r"probabilities have shape \(3,\)"),
        (lambda: f1_from_confusion(np.zeros((2, 3))), "confusion matrix has shape"),
    ],
)
def test_input_errors_say_what_and_the_fix(call, message):
    with pytest.raises(MetricError, match=message):
        call()
