"""Every consumer of the metric, checked with a lower-is-better (log loss) and higher-is-better (QWK, macro-F1) metric.

Oracles are scikit-learn's metrics on the same probabilities; nothing here compares ens with itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, log_loss

from benchmarks.synthetic import make_problem
from ensemble.blend import blend
from ensemble.blend import methods as M
from ensemble.errors import ConfigError
from ensemble.labels import Labels
from ensemble.metrics import get_metric
from ensemble.tables import make_table

SK = {
    "log_loss": lambda y, p: log_loss(y, p, labels=list(range(p.shape[1]))),
    "qwk": lambda y, p: cohen_kappa_score(y, p.argmax(1), weights="quadratic", labels=list(range(p.shape[1]))),
    "macro_f1": lambda y, p: f1_score(y, p.argmax(1), average="macro"),
}
LOWER, HIGHER = "log_loss", "qwk"


@pytest.fixture(scope="module")
def problem():
    p = make_problem(n_models=6, n_samples=1500, n_classes=5, seed=8)
    classes = [f"c{i}" for i in range(5)]
    ids = np.array([f"{i:05d}" for i in range(len(p.y))], dtype=object)
    oof = [make_table(ids, classes, p.probs[m], meta={"model": n, "family": n}) for m, n in enumerate(p.names)]
    lab = Labels(ids, classes, p.y, p.folds, None, pd.DataFrame(), Path("train.csv"))
    return p, oof, lab


def _best(values, name):
    return int(np.argmin(values) if name == LOWER else np.argmax(values))


@pytest.mark.parametrize("name", [LOWER, HIGHER])
def test_best_single_and_top_k_follow_the_metrics_direction(problem, name):
    p, oof, lab = problem
    truth = [SK[name](p.y, q) for q in p.probs]
    r = blend(oof, lab, method="soft", metric=name, top=2, nested=False, n_boot=20)
    assert r.scores.best_single.name == p.names[_best(truth, name)]
    kept = sorted(np.argsort(truth)[:2] if name == LOWER else np.argsort(truth)[::-1][:2])
    assert sorted(i for i, m in enumerate(r.member_scores) if m.weight > 0) == list(kept)
    np.testing.assert_allclose([m.oof for m in r.member_scores], truth, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", [LOWER, HIGHER])
@pytest.mark.parametrize("method", ["weighted", "greedy"])
def test_fitted_blends_are_never_worse_in_sample_than_their_simplest_candidates(problem, name, method):
    p, oof, lab = problem
    r = blend(oof, lab, method=method, metric=name, nested=False, n_boot=20)
    got = SK[name](p.y, r.oof.probs.astype(np.float64))
    assert r.scores.oof == pytest.approx(got, rel=1e-5, abs=1e-7)
    best_single = min if name == LOWER else max
    single = best_single(SK[name](p.y, q) for q in p.probs)
    better = (lambda a, b: a <= b + 1e-9) if name == LOWER else (lambda a, b: a >= b - 1e-9)
    assert better(got, single)  # the fit may always fall back to the best member
    if method == "weighted":
        assert better(got, SK[name](p.y, p.probs.mean(axis=0)))  # the uniform average is a candidate


def test_verdict_gain_is_positive_when_the_blend_is_better_in_a_loss(problem):
    p, oof, lab = problem
    r = blend(oof, lab, method="weighted", metric=LOWER, calibrate="temperature", n_boot=100)
    s = r.scores
    assert s.higher_is_better is False and s.metric == LOWER
    assert s.nested < s.best_single.nested  # lower loss...
    assert s.nested_gain_over_best_single == pytest.approx(s.best_single.nested - s.nested)  # ...is a positive gain
    assert s.nested_gain_over_best_single > 0 and "outside noise" in r.verdict and LOWER in r.verdict


def test_calibrated_weighted_blend_beats_best_single_and_soft_average_nested_on_log_loss():
    p = make_problem(n_models=8, n_samples=3000, n_classes=6, seed=5)
    classes = [f"c{i}" for i in range(6)]
    ids = np.array([str(i) for i in range(len(p.y))], dtype=object)
    oof = [make_table(ids, classes, p.probs[m], meta={"model": n}) for m, n in enumerate(p.names)]
    lab = Labels(ids, classes, p.y, p.folds, None, pd.DataFrame(), Path("train.csv"))
    cal = blend(oof, lab, method="weighted", metric=LOWER, calibrate="temperature", n_boot=50).scores
    soft = blend(oof, lab, method="soft", metric=LOWER, n_boot=50).scores
    assert cal.nested < cal.best_single.nested and cal.nested < soft.oof  # soft fits nothing: in-sample is honest
    assert not cal.within_noise


def test_bias_and_calibration_go_where_they_can_change_the_metric(problem):
    p, oof, lab = problem
    with pytest.raises(ConfigError, match="--tune-bias moves argmax decisions; log_loss scores probabilities"):
        blend(oof, lab, method="soft", metric=LOWER, tune_bias=True, nested=False, n_boot=20)
    with pytest.raises(ConfigError, match="--calibrate changes probabilities, not the decisions, so qwk cannot see it — use --tune-bias"):
        blend(oof, lab, method="soft", metric=HIGHER, calibrate="temperature", nested=False, n_boot=20)
    plain = blend(oof, lab, method="soft", metric=HIGHER, nested=False, n_boot=20)
    tuned = blend(oof, lab, method="soft", metric=HIGHER, tune_bias=True, nested=False, n_boot=20)
    assert tuned.fitted.bias is not None
    assert SK[HIGHER](p.y, tuned.oof.probs) >= SK[HIGHER](p.y, plain.oof.probs) - 1e-12


def test_calibration_is_nested_without_leakage():
    # pure-noise members: a fitted temperature gains in-sample, not on held-out folds
    p = make_problem(n_models=0, n_noise=6, n_samples=1200, n_classes=4, seed=3)
    classes = list("abcd")
    ids = np.array([str(i) for i in range(1200)], dtype=object)
    oof = [make_table(ids, classes, p.probs[m], meta={"model": n}) for m, n in enumerate(p.names)]
    lab = Labels(ids, classes, p.y, p.folds, None, pd.DataFrame(), Path("train.csv"))
    s = blend(oof, lab, method="weighted", metric=LOWER, calibrate="temperature+bias", n_boot=50).scores
    assert s.oof < s.nested  # in-sample optimistic
    prior = np.bincount(p.y, minlength=4) / len(p.y)  # the best constant prediction, fitted in-sample
    assert s.nested > log_loss(p.y, np.tile(prior, (1200, 1))) - 0.01  # held out: no better than the class prior


def test_fit_spec_orients_a_loss_for_top_k():
    X = np.stack([np.full((4, 2), [0.9, 0.1]), np.full((4, 2), [0.6, 0.4]), np.full((4, 2), [0.5, 0.5])], axis=1)
    y = np.zeros(4, dtype=np.int64)
    fitted = M.fit("soft", X.astype(np.float32), y, 2, M.Spec(metric=get_metric(LOWER), top=1))
    assert fitted.units.tolist() == [0]  # the lowest loss, not the highest


def test_option_errors_of_the_metric_are_one_line(problem):
    p, oof, lab = problem
    from ensemble.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown calibration 'platt'; choose one of: none, temperature"):
        blend(oof, lab, method="soft", metric=LOWER, calibrate="platt", nested=False, n_boot=20)
    with pytest.raises(ConfigError, match="--all-classes is macro-F1 over all classes; it does not apply to --metric log_loss"):
        blend(oof, lab, method="soft", metric=LOWER, all_classes=True, nested=False, n_boot=20)
