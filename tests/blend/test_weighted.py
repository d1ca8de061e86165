"""The weight optimiser and its kernels, checked against sklearn's macro-F1 by brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from benchmarks.synthetic import make_problem
from ensemble._kernels import COUNT_METRICS, MACRO_F1, MACRO_F1_ALL
from ensemble.blend import _kernels as K
from ensemble.blend.greedy import caruana
from ensemble.blend.weighted import optimise_weights
from ensemble.metrics import f1_from_counts
from tests.blend.oracles import grid_f1


def sk_f1(y, pred, C, all_classes=False):
    labels = list(range(C)) if all_classes else None
    return f1_score(y, pred, average="macro", labels=labels, zero_division=0)


def _state(B, y, C):
    amax, margin = K.argmax_margin(B)
    tp, pc, tc = K.class_counts(y, amax, C)
    return amax, margin, tp, pc, tc


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), C=st.integers(2, 6), all_classes=st.booleans())
def test_macro_f1_counts_equals_sklearn_and_metrics(seed, C, all_classes):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, 50)
    pred = rng.integers(0, C - 1 if C > 2 else C, 50)  # some classes may be absent from the prediction
    tp, pc, tc = K.class_counts(y, pred, C)
    got = K.count_metric(tp, pc, tc, MACRO_F1_ALL if all_classes else MACRO_F1)
    assert got == pytest.approx(sk_f1(y, pred, C, all_classes), abs=1e-12)
    assert got == pytest.approx(float(f1_from_counts(tp, pc, tc, all_classes=all_classes)), abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), all_classes=st.booleans())
def test_line_search_finds_the_exact_best_step(seed, all_classes):
    rng = np.random.default_rng(seed)
    n, C = 150, 4
    y = rng.integers(0, C, n)
    B = rng.dirichlet(np.ones(C), n)
    X = rng.dirichlet(np.ones(C) * 0.5, (n, 2)).astype(np.float32)
    P = X[:, 1].astype(np.float64)
    amax, margin, tp, pc, tc = _state(B, y, C)
    hi, lo = K.row_extremes(X)
    t_lo, t_hi = -0.4, 0.7
    t, f = K.line_search(B, amax, margin, X, hi, lo, 1, t_lo, t_hi, y, tp, pc, tc, MACRO_F1_ALL if all_classes else MACRO_F1)
    base = sk_f1(y, B.argmax(1), C, all_classes)
    assert t_lo <= t <= t_hi
    # the reported score is the true score at the returned step
    assert f == pytest.approx(sk_f1(y, (B + t * P).argmax(1), C, all_classes), abs=1e-12)
    # and no step on a fine grid does better (the search is exact, the grid is the oracle)
    steps = np.append(np.linspace(t_lo, t_hi, 2001), 0.0)
    grid = grid_f1(y, B[None] + steps[:, None, None] * P[None], C, all_classes)
    assert grid[-1] == pytest.approx(base, abs=1e-12)  # the grid oracle agrees with sklearn
    grid = grid.max()
    assert f >= grid - 1e-12
    assert f >= base - 1e-12 and (t != 0.0) == (f > base + 1e-12)


def test_eval_adds_equals_sklearn_per_candidate():
    rng = np.random.default_rng(5)
    n, M, C = 300, 6, 5
    y = rng.integers(0, C, n)
    X = rng.dirichlet(np.ones(C), (n, M)).astype(np.float32)
    B = X[:, :2].sum(axis=1).astype(np.float64)
    amax, margin, tp, pc, tc = _state(B, y, C)
    hi, _ = K.row_extremes(X)
    got = K.eval_adds(B, amax, margin, X, hi, 1.0, y, tp, pc, tc, MACRO_F1)
    want = [sk_f1(y, (B + X[:, m]).argmax(1), C) for m in range(M)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_add_scaled_matches_numpy():
    rng = np.random.default_rng(2)
    B = rng.random((100, 7))
    X = rng.random((100, 2, 7)).astype(np.float32)
    expect = B + 0.3 * X[:, 1].astype(np.float64)
    amax, margin = K.add_scaled(B, X, 1, 0.3)
    np.testing.assert_allclose(B, expect)
    srt = np.sort(expect, axis=1)
    np.testing.assert_array_equal(amax, expect.argmax(1))
    np.testing.assert_allclose(margin, srt[:, -1] - srt[:, -2])


@pytest.fixture(scope="module")
def prob():
    p = make_problem(n_models=8, n_samples=2000, n_classes=6, seed=4)
    return np.ascontiguousarray(p.probs.transpose(1, 0, 2)), p.y


@pytest.mark.parametrize("start", ["caruana", "uniform", "worst", "random"])
def test_weighted_never_worse_than_its_starting_point(prob, start):
    X, y = prob
    M, C = X.shape[1], X.shape[2]
    singles = [sk_f1(y, X[:, m].argmax(1), C) for m in range(M)]
    init = {
        "caruana": None,
        "uniform": np.ones(M),
        "worst": np.eye(M)[int(np.argmin(singles))],
        "random": np.random.default_rng(0).random(M),
    }[start]
    w, f, f0 = optimise_weights(X, y, C, init=init)
    assert f >= f0
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert f == pytest.approx(sk_f1(y, np.einsum("nmc,m->nc", X, w).argmax(1), C), abs=1e-9)
    if init is not None:
        assert f0 == pytest.approx(sk_f1(y, np.einsum("nmc,m->nc", X, init / init.sum()).argmax(1), C), abs=1e-9)


def test_weighted_beats_soft_and_its_caruana_start(prob):
    X, y = prob
    C = X.shape[2]
    counts, f_car = caruana(X, y, C, rounds=10)
    w, f, f0 = optimise_weights(X, y, C)
    assert f0 == pytest.approx(f_car)
    assert f >= f_car
    assert f > sk_f1(y, X.mean(axis=1).argmax(1), C)


SKLEARN_COUNT = {  # the independent oracle of every count metric the exact searches can optimise
    "macro_f1": lambda y, p, C: f1_score(y, p, average="macro", zero_division=0),
    "macro_f1_all": lambda y, p, C: f1_score(y, p, average="macro", labels=list(range(C)), zero_division=0),
    "micro_f1": lambda y, p, C: f1_score(y, p, average="micro", zero_division=0),
    "weighted_f1": lambda y, p, C: f1_score(y, p, average="weighted", zero_division=0),
    "accuracy": lambda y, p, C: accuracy_score(y, p),
    "balanced_accuracy": lambda y, p, C: balanced_accuracy_score(y, p),
}


@pytest.mark.parametrize("name", sorted(COUNT_METRICS))
def test_exact_searches_optimise_every_count_metric_against_sklearn(name):
    assert set(SKLEARN_COUNT) == set(COUNT_METRICS)
    code, oracle = COUNT_METRICS[name], SKLEARN_COUNT[name]
    rng = np.random.default_rng(11)
    n, M, C = 400, 5, 4
    y = rng.integers(0, C, n)
    X = rng.dirichlet(np.ones(C) * 0.7, (n, M)).astype(np.float32)
    B = X[:, :2].sum(axis=1).astype(np.float64)
    amax, margin, tp, pc, tc = _state(B, y, C)
    hi, lo = K.row_extremes(X)
    got = K.eval_adds(B, amax, margin, X, hi, 1.0, y, tp, pc, tc, code)
    np.testing.assert_allclose(got, [oracle(y, (B + X[:, m]).argmax(1), C) for m in range(M)], atol=1e-12)
    t, f = K.line_search(B, amax, margin, X, hi, lo, 3, -0.5, 0.8, y, tp, pc, tc, code)
    assert f == pytest.approx(oracle(y, (B + t * X[:, 3]).argmax(1), C), abs=1e-12)
    steps = np.linspace(-0.5, 0.8, 801)
    assert f >= max(oracle(y, (B + s_ * X[:, 3]).argmax(1), C) for s_ in steps) - 1e-12
    w, score, start = optimise_weights(X, y, C, code=code)
    assert score == pytest.approx(oracle(y, np.einsum("nmc,m->nc", X, w).argmax(1), C), abs=1e-12) and score >= start
