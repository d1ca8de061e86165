"""The multi-label metric registry against scikit-learn on indicator matrices, and its invariances."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from ensemble import _kernels
from ensemble.errors import MetricError, UnknownNameError
from ensemble.metrics import MULTILABEL_METRICS, get_metric
from ensemble.metrics.multilabel import (
    LabelCountMetric,
    class_counts,
    class_scores,
    row_counts,
)

# name: (higher is better, depends only on the decisions p > 0.5, has row losses)
CAPABILITIES = {
    "macro_f1": (True, True, False),
    "micro_f1": (True, True, False),
    "samples_f1": (True, True, True),
    "map": (True, False, False),
    "roc_auc": (True, False, False),
    "log_loss": (False, False, True),
}


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def sk_class_mean(fn, y: np.ndarray, p: np.ndarray, defined) -> float:
    """sklearn's per-class score averaged over the classes where it is defined; NaN when none is."""
    values = [fn(y[:, j], p[:, j]) for j in range(y.shape[1]) if defined(y[:, j])]
    return float(np.mean(values)) if values else np.nan


def sk_bce(y: np.ndarray, p: np.ndarray) -> float:
    """The mean of sklearn's per-column binary log loss, p clipped in its own dtype then taken in float64."""
    eps = np.finfo(p.dtype).eps
    clipped = np.clip(p, eps, p.dtype.type(1) - p.dtype.type(eps)).astype(np.float64)
    return float(np.mean([skm.log_loss(y[:, j], clipped[:, j], labels=[0, 1]) for j in range(y.shape[1])]))


def oracle(name: str, y: np.ndarray, p: np.ndarray) -> float:
    """The scikit-learn value of a multi-label entry (the documented average where sklearn differs)."""
    if name.endswith("_f1"):
        return quiet(skm.f1_score, y, p > 0.5, average=name[: -len("_f1")], zero_division=0)
    if name == "map":
        return quiet(sk_class_mean, skm.average_precision_score, y, p, lambda col: col.any())
    if name == "roc_auc":
        return quiet(sk_class_mean, skm.roc_auc_score, y, p, lambda col: 0 < col.sum() < len(col))
    return sk_bce(y, p)


def check(name: str, y: np.ndarray, p: np.ndarray) -> None:
    metric = MULTILABEL_METRICS.get(name)
    expected = oracle(name, y, p)
    if np.isnan(expected):
        with pytest.raises(MetricError, match="is undefined: no class has"):
            metric.score(y, p)
        return
    assert metric.score(y, p) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@st.composite
def indicator_cases(draw, min_classes: int = 2):
    """Indicator matrices with empty, full and rare classes, all-zero rows, ties, float32 or float64."""
    c = draw(st.integers(min_classes, 7))
    n = draw(st.integers(1, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rate = rng.choice([0.0, 0.02, 0.3, 0.7, 1.0], size=c)  # some classes never / always positive
    y = (rng.random((n, c)) < rate).astype(np.uint8)
    p = np.clip(0.35 * y + rng.random((n, c)) * 0.65, 0, 1)
    if draw(st.booleans()):  # coarse values: ties within and across labels, values exactly at 0.5
        p = np.round(p * 4) / 4
    return y, p.astype(draw(st.sampled_from([np.float32, np.float64])))


def test_every_entry_has_its_capabilities():
    assert MULTILABEL_METRICS.names() == list(CAPABILITIES)
    y = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    for name, m in MULTILABEL_METRICS.items():
        has_rows = m.row_losses(y, np.eye(2, dtype=np.float32)) is not None
        assert (m.higher_is_better, m.argmax_only, has_rows) == CAPABILITIES[name], name
        assert (m.name, m.task, m.count_code) == (name, "multilabel", None)
        assert get_metric(name, "multilabel") is m
        assert isinstance(m, LabelCountMetric) == (name in ("macro_f1", "micro_f1"))


@pytest.mark.parametrize("name", list(CAPABILITIES))
@settings(max_examples=60, deadline=None)
@given(case=indicator_cases())
def test_equals_sklearn_on_random_indicator_matrices(name, case):
    check(name, *case)


@pytest.mark.parametrize("name", list(CAPABILITIES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_sklearns_own_macro_calls_when_every_class_is_defined(rng, name, dtype):
    n, c = 4000, 12
    y = (rng.random((n, c)) < rng.uniform(0.002, 0.5, c)).astype(np.uint8)
    y[:2, :] = [[1], [0]]  # every class has a positive and a negative row
    p = (1 / (1 + np.exp(-(rng.standard_normal((n, c)) + 1.5 * (2.0 * y - 1))))).astype(dtype)
    p[::7] = np.round(p[::7], 2)  # ties
    direct = {
        "map": lambda: skm.average_precision_score(y, p, average="macro"),
        "roc_auc": lambda: skm.roc_auc_score(y, p, average="macro"),
        # sklearn takes a float32 table's logs in float32: ~1e-7 apart; the float64 oracle is exact
        "log_loss": lambda: np.mean([skm.log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(c)]),
    }.get(name, lambda: oracle(name, y, p))
    rel = 2e-6 if name == "log_loss" and dtype == np.float32 else 1e-12
    assert MULTILABEL_METRICS.get(name).score(y, p) == pytest.approx(quiet(direct), rel=rel)
    check(name, y, p)


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_perfect_constant_and_extreme_predictions(rng, name):
    y = (rng.random((500, 6)) < 0.3).astype(np.uint8)
    y[:2] = [[1], [0]]
    cases = [
        y.astype(np.float32),  # perfect, and p exactly 0 and 1 (the log loss clips them)
        np.full(y.shape, 0.5, dtype=np.float32),  # all tied, nothing above the threshold
        np.where(y == 1, 0.0, 1.0).astype(np.float64),  # perfectly wrong
        np.where(y == 1, -0.0, 0.0).astype(np.float32),  # -0.0 and 0.0 tie
    ]
    for p in cases:
        check(name, y, p)
    check(name, np.zeros_like(y), cases[1])  # no positive anywhere: AP and AUC undefined, F1 0


@pytest.mark.parametrize("name", ["map", "roc_auc"])
def test_scores_outside_zero_two_are_ranked_exactly(rng, name):
    # logits or scores (negative, above 2): the dense-rank path must give sklearn's values, ties included
    y = (rng.random((300, 5)) < 0.4).astype(np.uint8)
    y[:2] = [[1], [0]]
    scores = np.round(rng.standard_normal((300, 5)) * 3, 1)
    for dtype in (np.float32, np.float64):
        check(name, y, scores.astype(dtype))


def test_f1_conventions_on_empty_rows_and_classes():
    # sklearn's zero_division=0: a class (macro) or a row (samples) with neither true nor predicted
    # positives counts 0 and stays in the average
    y = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=np.uint8)
    p = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.3], [0.2, 0.8, 0.1]], dtype=np.float32)
    scores = {name: MULTILABEL_METRICS.get(name).score(y, p) for name in ("macro_f1", "micro_f1", "samples_f1")}
    assert scores == {"macro_f1": pytest.approx((2 / 3 + 1 + 0) / 3), "micro_f1": 0.8,
                      "samples_f1": pytest.approx((1 + 0 + 2 / 3) / 3)}
    nothing = np.zeros((2, 2), dtype=np.uint8)
    assert MULTILABEL_METRICS.get("micro_f1").score(nothing, np.zeros((2, 2))) == 0.0


def test_one_class_is_scored_as_its_own_positive_class(rng):
    # sklearn reads a one-column indicator as a binary target and averages over both of its labels;
    # a multi-label metric scores the one class
    y = (rng.random((200, 1)) < 0.3).astype(np.uint8)
    p = rng.random((200, 1))
    f1 = MULTILABEL_METRICS.get("macro_f1").score(y, p)
    assert f1 == pytest.approx(skm.f1_score(y[:, 0], p[:, 0] > 0.5)) == MULTILABEL_METRICS.get("micro_f1").score(y, p)
    assert MULTILABEL_METRICS.get("roc_auc").score(y, p) == pytest.approx(skm.roc_auc_score(y[:, 0], p[:, 0]))
    check("log_loss", y, p)


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_row_order_invariance(rng, name):
    y = (rng.random((400, 6)) < 0.25).astype(np.uint8)
    p = np.round(rng.random((400, 6)), 2).astype(np.float32)
    perm = rng.permutation(400)
    m = MULTILABEL_METRICS.get(name)
    assert m.score(y[perm], p[perm]) == pytest.approx(m.score(y, p), rel=1e-12)


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_class_permutation_invariance(rng, name):
    y = (rng.random((400, 6)) < 0.25).astype(np.uint8)
    p = rng.random((400, 6))
    perm = rng.permutation(6)
    m = MULTILABEL_METRICS.get(name)
    assert m.score(y[:, perm], p[:, perm]) == pytest.approx(m.score(y, p), rel=1e-12)


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_row_losses_average_to_the_score(rng, name):
    y = (rng.random((300, 5)) < 0.3).astype(np.uint8)
    p = rng.random((300, 5)).astype(np.float32)
    m = MULTILABEL_METRICS.get(name)
    rows = m.row_losses(y, p)
    if rows is not None:
        assert rows.shape == (300,) and rows.dtype == np.float64
        assert rows.mean() == pytest.approx(m.score(y, p), rel=1e-12)


def test_counts_and_from_counts_agree_with_sklearns_confusion_matrices(rng):
    y = (rng.random((700, 9)) < 0.2).astype(bool)
    decided = rng.random((700, 9)) < 0.2
    mcm = skm.multilabel_confusion_matrix(y, decided)  # (C, 2, 2): [[tn, fp], [fn, tp]]
    tp, pc, tc = class_counts(y, decided)
    np.testing.assert_array_equal(tp, mcm[:, 1, 1])
    np.testing.assert_array_equal(pc, mcm[:, 1, 1] + mcm[:, 0, 1])
    np.testing.assert_array_equal(tc, mcm[:, 1, 1] + mcm[:, 1, 0])
    rows = row_counts(y, decided)
    np.testing.assert_array_equal(rows[0], (y & decided).sum(1))
    np.testing.assert_array_equal(rows[2], y.sum(1))
    for name in ("macro_f1", "micro_f1"):
        m = MULTILABEL_METRICS.get(name)
        stacked = m.from_counts(np.stack([tp, tp // 2]), np.stack([pc, pc]), tc[None])  # vectorised over candidates
        assert stacked[0] == pytest.approx(skm.f1_score(y, decided, average=name[:5], zero_division=0), rel=1e-12)
        assert stacked[1] == pytest.approx(m.from_counts(tp // 2, pc, tc), rel=1e-12)


def test_the_numpy_twins_equal_the_compiled_kernels(rng, monkeypatch):
    y = (rng.random((3000, 7)) < rng.uniform(0.01, 0.6, 7)).astype(np.uint8)
    p = np.round(rng.random((3000, 7)), 3).astype(np.float32)
    p[:5] = [[0.0], [1.0], [-0.0], [0.5], [1e-30]]  # clipped, tied and threshold values
    rows = {(name, q.dtype): MULTILABEL_METRICS.get(name).row_losses(y, q) for name in ("samples_f1", "log_loss")
            for q in (p, p.astype(np.float64))}
    compiled = class_scores(y, p)
    monkeypatch.setattr(_kernels, "HAVE_NUMBA", False)
    for a, b in zip(compiled, class_scores(y, p)):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    for name in ("samples_f1", "log_loss"):
        for q in (p, p.astype(np.float64)):
            np.testing.assert_allclose(rows[name, q.dtype], MULTILABEL_METRICS.get(name).row_losses(y, q), rtol=1e-13)


def test_undefined_classes_are_left_out_of_the_averages(rng):
    y = (rng.random((200, 4)) < 0.3).astype(np.uint8)
    y[:, 1] = 0  # no positive: no AP, no AUC (sklearn: AP 0, AUC NaN)
    y[:, 3] = 1  # only positives: AP 1, no AUC
    p = rng.random((200, 4))
    auc, ap = class_scores(y, p)
    assert np.isnan(auc[[1, 3]]).all() and np.isnan(ap[1]) and ap[3] == 1.0
    assert MULTILABEL_METRICS.get("map").score(y, p) == pytest.approx(
        np.mean([skm.average_precision_score(y[:, j], p[:, j]) for j in (0, 2, 3)]), rel=1e-12)
    assert MULTILABEL_METRICS.get("roc_auc").score(y, p) == pytest.approx(
        np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in (0, 2)]), rel=1e-12)
    with pytest.raises(MetricError, match="ROC-AUC is undefined: no class has both a positive and a negative row"):
        MULTILABEL_METRICS.get("roc_auc").score(np.ones((3, 2), np.uint8), np.eye(3, 2))
    with pytest.raises(MetricError, match="average precision is undefined: no class has a positive row in y_true"):
        MULTILABEL_METRICS.get("map").score(np.zeros((3, 2), np.uint8), np.eye(3, 2))


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_input_errors_are_one_line(name):
    m = MULTILABEL_METRICS.get(name)
    p = np.full((3, 2), 0.4, dtype=np.float32)
    for y, message in [
        (np.array([0, 1, 1]), r"y_true has shape \(3,\) but the probabilities have shape \(3, 2\); multi-label labels"),
        (np.array([[0, 2], [1, 0], [0, 0]]), r"y_true holds values other than 0 and 1 \(\"2\"\); multi-label labels"),
        (np.zeros((0, 2), np.uint8), "no samples: y_true is empty"),
        (np.array([[0, 0.5], [1, 0], [0, 0]]), r"y_true holds values other than 0 and 1 \(\"0.5\"\)"),
        (np.full((3, 2), "a"), r"y_true has dtype <U1; multi-label labels are a 0/1 indicator matrix \(uint8\)"),
    ]:
        with pytest.raises(MetricError, match=message):
            m.score(y, p[: len(y)] if len(y) == 0 else p)
    as_floats = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # an indicator matrix of floats is one too
    assert m.score(as_floats, p) == m.score(as_floats.astype(np.uint8), p)
    with pytest.raises(UnknownNameError, match="unknown multi-label metric 'qwk'; choose one of: macro_f1, micro_f1"):
        get_metric("qwk", "multilabel")


@pytest.mark.parametrize("name", ["map", "roc_auc"])
def test_nan_probabilities_are_refused_by_the_rank_metrics(name):
    p = np.array([[0.1, np.nan], [0.7, 0.2]])
    with pytest.raises(MetricError, match=r"probabilities hold NaN \(rows \"0\"\); rank scores need finite"):
        MULTILABEL_METRICS.get(name).score(np.array([[0, 1], [1, 0]]), p)


def test_ranked_weights_count_rows_as_repeats_in_both_twins(rng, monkeypatch):
    from ensemble.metrics.ranking import Ranked

    y = (rng.random((300, 4)) < [0.02, 0.3, 0.6, 1.0]).astype(bool)  # rare, common, and a class with no negative
    p = np.round(rng.random((300, 4)), 1)  # many ties
    weights = np.stack([np.bincount(rng.integers(0, 300, 300), minlength=300) for _ in range(6)])
    compiled = Ranked.of(y, p).weighted(weights)
    monkeypatch.setattr(_kernels, "HAVE_NUMBA", False)
    twin = Ranked.of(y, p).weighted(weights)
    for b, w in enumerate(weights):
        rows = np.repeat(np.arange(300), w)  # the resample, materialised
        auc, ap = class_scores(y[rows], p[rows])
        for got in (compiled, twin):
            np.testing.assert_allclose(got[0][b], auc, rtol=1e-12)
            np.testing.assert_allclose(got[1][b], ap, rtol=1e-12)
