"""`--tune-thresholds`: exact sweeps against brute force with scikit-learn, the 0.5 shift, and nesting without leakage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ensemble.blend import methods as M
from ensemble.blend import nested as N
from ensemble.blend import thresholds as T
from ensemble.metrics import get_metric

ML = "multilabel"


@pytest.fixture(scope="module")
def small():
    """Rounded probabilities (ties), rare and common classes, one class without positives."""
    rng = np.random.default_rng(0)
    n, C = 240, 5
    Y = (rng.random((n, C)) < [0.1, 0.3, 0.5, 0.05, 0.0]).astype(np.uint8)
    P = np.round(np.clip(0.3 * Y + 0.7 * rng.random((n, C)), 0, 1), 2).astype(np.float32)
    return P, Y


def _brute(P, Y, average, candidates):
    """The best sklearn F1 over every candidate threshold (the same for all classes)."""
    return max(f1_score(Y, P > t, average=average, zero_division=0) for t in candidates)


def test_per_class_sweep_equals_brute_force_over_every_threshold(small):
    P, Y = small
    t = T.macro_f1_per_class(P, Y)
    for c in range(P.shape[1]):
        cands = np.unique(np.concatenate([P[:, c], [0.0, 0.5]]))
        best = max(f1_score(Y[:, c], P[:, c] > x, zero_division=0) for x in cands)
        assert f1_score(Y[:, c], P[:, c] > t[c], zero_division=0) == pytest.approx(best, abs=1e-12)
    assert t[4] == 0.5  # no positives: no cut is strictly better, the threshold stays
    assert f1_score(Y, P > t, average="macro", zero_division=0) == pytest.approx(
        np.mean([max(f1_score(Y[:, c], P[:, c] > x, zero_division=0) for x in np.unique(P[:, c])) for c in range(5)]))


@pytest.mark.parametrize("kind,average", [("macro_f1", "macro"), ("micro_f1", "micro"), ("samples_f1", "samples")])
def test_global_sweep_equals_brute_force(small, kind, average):
    P, Y = small
    g = T.exact_global(kind, P, Y, 0.5)
    cands = np.unique(np.concatenate([P.ravel(), [0.0]]))
    assert f1_score(Y, P > g, average=average, zero_division=0) == pytest.approx(_brute(P, Y, average, cands), abs=1e-12)


@pytest.mark.parametrize("kind,average", [("micro_f1", "micro"), ("samples_f1", "samples")])
def test_coupled_ascent_ends_where_no_single_class_can_do_better(small, kind, average):
    P, Y = small
    t = T.coupled_per_class(kind, P, Y, np.full(P.shape[1], 0.5))
    got = f1_score(Y, P > t, average=average, zero_division=0)
    assert got >= f1_score(Y, P > 0.5, average=average, zero_division=0)
    for c in range(P.shape[1]):  # a coordinate-wise optimum, checked by brute force per class
        for x in np.unique(P[:, c]):
            trial = t.copy()
            trial[c] = x
            assert f1_score(Y, P > trial, average=average, zero_division=0) <= got + 1e-12


def test_shift_puts_each_threshold_at_one_half_exactly():
    rng = np.random.default_rng(3)
    P = rng.random((2000, 6)).astype(np.float32)
    t = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 1e-4])
    # values one float32 ulp on either side of each threshold: the hardest cases for float32 tables
    t32 = t.astype(np.float32)
    P[:6] = np.nextafter(t32, np.float32(1))
    P[6:12] = np.nextafter(t32, np.float32(0))
    P[12:18] = t32
    s = T.shift(P, t)
    assert s.dtype == np.float32
    assert np.array_equal(s > 0.5, P > t)
    z = np.log(P.astype(float)) - np.log1p(-P.astype(float)) - (np.log(t) - np.log1p(-t))
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-z)), atol=1e-6)
    for c in range(6):  # monotone per class: ranks (hence AUC and AP) unchanged
        assert np.array_equal(np.argsort(s[:, c], kind="stable"), np.argsort(P[:, c], kind="stable")) or \
            np.all(np.diff(s[np.argsort(P[:, c]), c]) >= 0)


def test_fit_thresholds_never_loses_to_one_half_on_the_metric(small):
    P, Y = small
    for name in ("macro_f1", "micro_f1", "samples_f1"):
        metric = get_metric(name, ML)
        for mode in ("per-class", "global"):
            t = T.fit_thresholds(P, Y, metric, mode=mode)
            assert metric.score(Y, T.shift(P, t)) >= metric.score(Y, P)
            if mode == "global":
                assert len(set(t.tolist())) == 1


class _MetricFile(type(get_metric("macro_f1", ML))):
    """Stands for a metric file: no exact sweep is known for it, so the grid is searched."""

    runs_user_code = True


def test_a_metric_without_an_exact_sweep_is_searched_on_a_grid_scored_by_itself(small):
    P, Y = small
    metric = _MetricFile("my_metric.py", True)
    t = T.fit_thresholds(P, Y, metric, mode="per-class")
    assert metric.score(Y, T.shift(P, t)) > metric.score(Y, P)
    grid = np.quantile(P, np.linspace(0.02, 0.98, T.GRID), axis=0)
    assert all(x == 0.5 or np.isclose(grid[:, c], x).any() for c, x in enumerate(t))


def _noise(seed, n=4000, U=4, C=6):
    """Pure-noise members, independent of the labels, all above 0.5: the untuned blend predicts every
    row of every class, which is already the best a decision can do without information (for F1)."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, C)) < np.linspace(0.05, 0.4, C)).astype(np.uint8)
    X = (0.5 + 0.5 * rng.random((n, U, C))).astype(np.float32)
    return X, Y, rng.permutation(n) % 5


@pytest.mark.parametrize("mode", ["per-class", "global"])
def test_noise_thresholds_gain_in_sample_only(mode):
    """In-sample threshold gain > nested gain ~ 0: thresholds are refitted inside each nested fold."""
    metric = get_metric("macro_f1", ML)
    for seed in (1, 2):
        X, Y, folds = _noise(seed)
        spec = M.Spec(metric=metric, task=ML, thresholds=mode)
        untuned = metric.score(Y, M.apply("soft", M.fit("soft", X, Y, 6, M.Spec(metric=metric, task=ML)), X))
        in_sample = metric.score(Y, M.apply("soft", M.fit("soft", X, Y, 6, spec), X))
        nested = metric.score(Y, N.nested_predictions("soft", X, Y, 6, spec, folds))
        assert in_sample - untuned >= nested - untuned and in_sample >= untuned
        assert mode == "global" or in_sample > untuned  # one threshold per class finds something in noise
        assert nested - untuned < 0.005  # no better than the untuned blend beyond noise


def test_held_out_labels_never_reach_the_thresholds():
    X, Y, folds = _noise(3, n=1500)
    spec = M.Spec(metric=get_metric("macro_f1", ML), task=ML, thresholds="per-class")
    pred = N.nested_predictions("soft", X, Y, 6, spec, folds)
    rows = np.flatnonzero(folds == 0)
    y2 = Y.copy()
    y2[rows] = np.random.default_rng(0).permutation(y2[rows])  # scramble the held-out fold's labels
    assert np.array_equal(N.nested_predictions("soft", X, y2, 6, spec, folds)[rows], pred[rows])


def test_refusals_name_the_fix():
    from ensemble.blend.core import BlendOptions, _check_decision_tools
    from ensemble.errors import ConfigError, UnknownNameError

    with pytest.raises(ConfigError, match="but roc_auc scores the probabilities themselves"):
        _check_decision_tools(BlendOptions("soft", tune_thresholds="per-class"), get_metric("roc_auc", ML), ML)
    with pytest.raises(ConfigError, match="--tune-thresholds is for multi-label \\(sigmoid\\) tables; these members are multiclass"):
        _check_decision_tools(BlendOptions("soft", tune_thresholds="global"), get_metric("macro_f1"), "multiclass")
    with pytest.raises(UnknownNameError, match="threshold mode"):
        _check_decision_tools(BlendOptions("soft", tune_thresholds="sometimes"), get_metric("macro_f1", ML), ML)
