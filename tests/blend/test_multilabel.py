"""Every blend method on multi-label tables, each against a plain numpy formula, and the fits' choices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import f1_score, log_loss

from benchmarks.synthetic import make_multilabel_problem
from ensemble.blend import METHODS, blend, search
from ensemble.blend import methods as M
from ensemble.errors import ConfigError
from ensemble.metrics import get_metric
from ensemble.metrics.base import Metric
from ensemble.tables import make_table

ML = "multilabel"


@pytest.fixture(scope="module")
def prob():
    p = make_multilabel_problem(n_models=5, n_samples=900, n_classes=4, n_noise=1, seed=11)
    return np.ascontiguousarray(p.probs.transpose(1, 0, 2)), p.y, p  # (n, M, C), (n, C)


def _spec(metric="macro_f1", **kw):
    return M.Spec(metric=get_metric(metric, ML), task=ML, rounds=kw.pop("rounds", 15), **kw)


def _fit_apply(method, X, y, spec):
    return M.apply(method, M.fit(method, X, y, X.shape[2], spec), X)


def _logit(p):
    p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def test_soft_is_the_weighted_mean_per_class(prob):
    X, _, _ = prob
    w = np.array([1, 2, 0, 1, 3, 1], dtype=float)
    np.testing.assert_allclose(M.soft(X, w, ML), np.average(X, axis=1, weights=w), rtol=1e-6, atol=1e-7)


def test_geometric_is_the_sigmoid_of_the_mean_logit(prob):
    X, _, _ = prob
    w = np.array([1, 2, 0.5, 1, 3, 1])
    z = np.average(_logit(X), axis=1, weights=w)
    np.testing.assert_allclose(M.geometric(X, w, ML), 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-7)
    # the same as pooling p and 1 - p geometrically per class and renormalising the pair
    a = np.exp(np.average(np.log(X.astype(np.float64)), axis=1, weights=w))
    b = np.exp(np.average(np.log1p(-X.astype(np.float64)), axis=1, weights=w))
    np.testing.assert_allclose(M.geometric(X, w, ML), a / (a + b), rtol=1e-5, atol=1e-7)


def test_rank_is_the_per_class_rank_average_without_renormalising(prob):
    X, _, _ = prob
    n, U, C = X.shape
    expect = np.stack([np.mean([rankdata(X[:, u, c]) / n for u in range(U)], axis=0) for c in range(C)], axis=1)
    np.testing.assert_allclose(M.rank(X, np.ones(U), ML), expect, rtol=1e-6, atol=1e-7)


def test_hard_is_a_per_class_majority_vote_ties_by_the_mean():
    # 4 members, 1 row, 3 classes: class 0 voted by 3 of 4, class 1 by 2 of 4 (mean 0.55 -> on),
    # class 2 by 2 of 4 (mean 0.45 -> off)
    X = np.array([[[0.9, 0.9, 0.6], [0.8, 0.8, 0.6], [0.7, 0.3, 0.3], [0.2, 0.2, 0.3]]], dtype=np.float32)
    out = M.hard(X, np.ones(4), ML)
    assert out[0, 0] == pytest.approx(0.75)
    assert (out > 0.5).tolist() == [[True, True, False]]
    votes = (X > 0.5).mean(axis=1)
    mean = X.mean(axis=1)
    oracle = (votes > 0.5) | ((votes == 0.5) & (mean > 0.5))
    assert np.array_equal(out > 0.5, oracle)


def test_hard_on_random_members_matches_the_vote_formula(prob):
    X, _, _ = prob
    w = np.array([1, 2, 1, 1, 2, 1], dtype=float)
    share = np.einsum("nuc,u->nc", (X > 0.5).astype(float), w) / w.sum()
    mean = np.einsum("nuc,u->nc", X.astype(float), w) / w.sum()
    tie = np.isclose(share, 0.5)
    oracle = np.where(tie, mean > 0.5, share > 0.5)
    out = M.hard(X, w, ML)
    assert np.array_equal(out > 0.5, oracle)
    np.testing.assert_allclose(out[~tie], share[~tie], rtol=1e-6)


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_gives_probabilities_and_is_row_order_invariant(method, prob):
    X, y, _ = prob
    spec = _spec()
    out = _fit_apply(method, X, y, spec)
    assert out.dtype == np.float32 and out.shape == (X.shape[0], X.shape[2])
    assert (out >= 0).all() and (out <= 1).all()
    perm = np.random.default_rng(1).permutation(len(y))
    out_p = _fit_apply(method, np.ascontiguousarray(X[perm]), y[perm], spec)
    np.testing.assert_allclose(out_p, out[perm], rtol=1e-5, atol=1e-6)


def test_greedy_for_a_decision_metric_is_caruana_scored_by_that_metric(prob):
    X, y, _ = prob
    fitted = M.fit("greedy", X, y, X.shape[2], _spec(rounds=8))

    def f1(p):
        return f1_score(y, p > 0.5, average="macro", zero_division=0)

    # an independent Caruana: add (with replacement) the member that maximises sklearn's F1, keep the best round
    B, counts, best, best_counts = np.zeros(X.shape[::2]), np.zeros(X.shape[1]), -1.0, None
    for k in range(1, 9):
        scores = [f1((B + X[:, j]) / k) for j in range(X.shape[1])]
        j = int(np.argmax(scores))
        B += X[:, j]
        counts[j] += 1
        if scores[j] > best:
            best, best_counts = scores[j], counts.copy()
    np.testing.assert_allclose(fitted.weights, best_counts[fitted.units] / best_counts.sum())


def test_weighted_for_log_loss_is_at_least_as_good_as_the_mean(prob):
    X, y, _ = prob
    out = _fit_apply("weighted", X, y, _spec("log_loss"))

    def bce(p):
        return np.mean([log_loss(y[:, c], p[:, c], labels=[0, 1]) for c in range(y.shape[1])])

    assert bce(out) <= bce(X.mean(axis=1)) + 1e-9


def test_surrogate_weights_minimise_the_mean_binary_cross_entropy(prob):
    X, y, _ = prob
    from scipy.optimize import minimize

    def bce(w):
        p = np.clip(np.einsum("nuc,u->nc", X.astype(float), w / w.sum()), 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    ours = search.surrogate_weights(X, y, "linear", task=ML)
    ref = minimize(lambda a: bce(np.exp(a - a.max())), np.zeros(X.shape[1]), method="Nelder-Mead",
                   options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-10})
    assert bce(ours) <= ref.fun + 1e-4  # L-BFGS stops within ~1e-5 of the optimum (flat softmax directions)


def test_top_k_keeps_the_best_members_by_the_metric(prob):
    X, y, _ = prob
    f1 = np.array([f1_score(y, X[:, u] > 0.5, average="macro", zero_division=0) for u in range(X.shape[1])])
    fitted = M.fit("soft", X, y, X.shape[2], _spec(top=2))
    assert fitted.units.tolist() == sorted(np.argsort(-f1, kind="stable")[:2].tolist())


def test_calibrate_temperature_divides_the_logits(prob):
    X, y, _ = prob
    fitted = M.fit("soft", X, y, X.shape[2], _spec("log_loss", calibrate="temperature"))
    out = M.apply("soft", fitted, X)
    z = _logit(X.mean(axis=1)) / fitted.temperature
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)
    assert fitted.temperature != 1.0


def _tables(p, classes):
    ids = np.array([f"{i:05d}" for i in range(len(p.y))], dtype=object)
    return [make_table(ids, classes, p.probs[m], meta={"model": n, "family": f}, task=ML)
            for m, (n, f) in enumerate(zip(p.names, p.families))], ids


def test_seed_average_enters_each_family_as_one_unit(prob, tmp_path):
    _, _, p = prob
    classes = ["a", "b", "c", "d"]
    tables, ids = _tables(p, classes)
    lab = tmp_path / "train.csv"
    lab.write_text("id,label,fold\n" + "".join(
        f"{i},{'|'.join(np.array(classes)[r.astype(bool)])},{f}\n" for i, r, f in zip(ids, p.y, p.folds)))
    r = blend(tables, lab, method="soft", seed_average=True, n_boot=20)
    fams = list(dict.fromkeys(p.families))
    expect = np.mean([np.mean([p.probs[m] for m in range(len(p.names)) if p.families[m] == f], axis=0) for f in fams], axis=0)
    np.testing.assert_allclose(r.oof.probs, expect, rtol=1e-5, atol=1e-6)
    assert r.oof.task == ML and r.recipe.task == ML


def test_a_metric_object_of_the_other_task_is_refused(prob, tmp_path):
    _, _, p = prob
    classes = ["a", "b", "c", "d"]
    tables, ids = _tables(p, classes)
    lab = tmp_path / "train.csv"
    lab.write_text("id,label,fold\n" + "".join(
        f"{i},{'|'.join(np.array(classes)[r.astype(bool)])},{f}\n" for i, r, f in zip(ids, p.y, p.folds)))
    with pytest.raises(ConfigError, match="scores multiclass tables but the members are multilabel"):
        blend(tables, lab, method="soft", metric=get_metric("macro_f1"))
    with pytest.raises(ConfigError, match="multi-label decisions are per-class thresholds"):
        blend(tables, lab, method="soft", tune_bias=True)
    with pytest.raises(ConfigError, match="not the decisions, so macro_f1 cannot see it — use --tune-thresholds"):
        blend(tables, lab, method="soft", calibrate="temperature")
    assert isinstance(get_metric("macro_f1", ML), Metric)


def test_labels_without_folds_are_split_by_iterative_stratification(prob):
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    from ensemble.blend import nested as N

    _, y, _ = prob
    folds, source = N.nested_folds(None, y, 7)
    assert source == "multilabel-stratified(seed=7)"
    for k, (_, test) in enumerate(MultilabelStratifiedKFold(5, shuffle=True, random_state=7).split(y, y)):
        assert (folds[test] == k).all()


def test_calibrate_temperature_and_bias_is_a_per_class_platt_on_the_logits(prob):
    X, y, _ = prob
    fitted = M.fit("soft", X, y, X.shape[2], _spec("log_loss", calibrate="temperature+bias"))
    out = M.apply("soft", fitted, X)
    if fitted.bias is None:  # the metric did not want the bias: the temperature alone
        pytest.skip("no bias kept on this problem")
    z = _logit(X.mean(axis=1)) / fitted.temperature + fitted.bias
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)

    def bce(p):
        return np.mean([log_loss(y[:, c], p[:, c], labels=[0, 1]) for c in range(y.shape[1])])

    assert bce(out) < bce(X.mean(axis=1))
