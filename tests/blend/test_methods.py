"""Every registered method through shared invariance tests, and each combine rule against an oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gmean
from sklearn.metrics import f1_score

from benchmarks.synthetic import make_problem
from ensemble.blend import METHODS, blend
from ensemble.blend import methods as M

ALL = METHODS.names()


@pytest.fixture(scope="module")
def prob():
    p = make_problem(n_models=5, n_samples=800, n_classes=4, seed=11)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))  # (n, M, C)
    return X, p.y


def _fit_apply(method, X, y, spec=M.Spec(rounds=20)):
    return M.apply(method, M.fit(method, X, y, X.shape[2], spec), X)


def test_registry_holds_every_method_of_the_issue():
    assert set(ALL) == {"soft", "hard", "rank", "geometric", "weighted", "greedy"}  # seed averaging is a step, not a method


@pytest.mark.parametrize("method", ALL)
def test_rows_are_probabilities(method, prob):
    X, y = prob
    out = _fit_apply(method, X, y)
    assert out.dtype == np.float32 and out.shape == (X.shape[0], X.shape[2])
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", ALL)
def test_row_order_invariance(method, prob):
    X, y = prob
    perm = np.random.default_rng(1).permutation(len(y))
    out = _fit_apply(method, X, y)
    out_p = _fit_apply(method, np.ascontiguousarray(X[perm]), y[perm])
    np.testing.assert_allclose(out_p, out[perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ALL)
def test_class_permutation_invariance(method, prob):
    X, y = prob
    perm = np.array([2, 0, 3, 1])  # new class k is old class perm[k]
    inv = np.argsort(perm)
    out = _fit_apply(method, X, y)
    out_p = _fit_apply(method, np.ascontiguousarray(X[:, :, perm]), inv[y])
    np.testing.assert_allclose(out_p, out[:, perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ALL)
def test_equal_weights_give_the_unweighted_blend(method, prob):
    X, _ = prob
    U = X.shape[1]
    combine = METHODS.get(method).combine
    np.testing.assert_allclose(combine(X, np.full(U, 3.0)), combine(X, np.ones(U)), rtol=1e-6, atol=1e-7)
    if combine is M.soft:  # soft, and the fitted methods whose rule is soft: equal weights = soft
        np.testing.assert_allclose(combine(X, np.ones(U)), X.mean(axis=1), rtol=1e-6, atol=1e-7)


def test_soft_and_geometric_against_numpy_and_scipy(prob):
    X, _ = prob
    w = np.array([0.5, 0.1, 0.2, 0.0, 0.2])
    np.testing.assert_allclose(M.soft(X, w), np.average(X, axis=1, weights=w), rtol=1e-5, atol=1e-7)
    g = gmean(X.astype(np.float64), axis=1)
    np.testing.assert_allclose(M.geometric(X, np.ones(5)), g / g.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_rank_against_pandas(prob):
    X, _ = prob
    n, U, C = X.shape
    ranks = np.stack([pd.DataFrame(X[:, u]).rank(axis=0, method="average").to_numpy() for u in range(U)], axis=1)
    expect = ranks.mean(axis=1)
    expect /= expect.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(M.rank(X, np.ones(U)), expect, rtol=1e-5, atol=1e-7)


def test_hard_vote_against_a_counter(prob):
    X, _ = prob
    w = np.array([1.0, 2.0, 1.0, 1.0, 3.0])
    out = M.hard(X, w)
    top = X.argmax(axis=2)
    summed = np.einsum("nuc,u->nc", X.astype(np.float64), w)
    for i in range(0, len(X), 7):  # a plain loop is the oracle
        votes = np.zeros(X.shape[2])
        for u in range(X.shape[1]):
            votes[top[i, u]] += w[u]
        tied = np.flatnonzero(votes == votes.max())
        assert out[i].argmax() == tied[np.argmax(summed[i, tied])]
        np.testing.assert_allclose(out[i], votes / w.sum(), atol=2e-4)


def test_hard_vote_tie_broken_by_summed_probabilities_not_lowest_index():
    # two members vote class 0, two vote class 2: a tie. Summed probabilities favour class 2.
    X = np.array([[[0.50, 0.10, 0.40], [0.45, 0.10, 0.45 - 1e-3], [0.05, 0.05, 0.90], [0.30, 0.10, 0.60]]], dtype=np.float32)
    X[0, 1] /= X[0, 1].sum()
    top = X[0].argmax(axis=1)
    assert sorted(top) == [0, 0, 2, 2]
    # sklearn's VotingClassifier(voting="hard"): argmax(bincount(votes)) -> lowest index on ties
    assert np.argmax(np.bincount(top, minlength=3)) == 0
    out = M.hard(X, np.ones(4))
    assert out[0].argmax() == 2
    assert out[0, 0] < out[0, 2] and abs(out[0, 0] - out[0, 2]) < 1e-3  # still a 50/50 vote share


def test_top_k_keeps_the_best_members(prob):
    X, y = prob
    f1 = [f1_score(y, X[:, u].argmax(1), average="macro") for u in range(X.shape[1])]
    fitted = M.fit("hard", X, y, X.shape[2], M.Spec(top=3))
    assert sorted(fitted.units.tolist()) == sorted(np.argsort(f1)[::-1][:3].tolist())
    np.testing.assert_allclose(M.apply("hard", fitted, X), M.hard(X[:, np.sort(np.argsort(f1)[::-1][:3])], np.ones(3)))


def test_fixed_weights_are_applied_without_fitting(small_tables):
    oof, test, lab, *_ = small_tables
    w = [0.4, 0.3, 0.2, 0.1, 0.0, 0.0]
    r = blend(oof, lab, method="soft", test_tables=test, weights=w, nested=False, n_boot=50)
    expect = np.average(np.stack([t.probs for t in oof]), axis=0, weights=w)
    np.testing.assert_allclose(r.oof.probs, expect, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.test.probs, np.average(np.stack([t.probs for t in test]), axis=0, weights=w), rtol=1e-5, atol=1e-7)
    assert [m.weight for m in r.member_scores] == pytest.approx(w)
    assert r.scores.fitted is False and r.scores.nested is None


def test_seed_average_by_family(small_tables):
    oof, test, lab, *_ = small_tables
    fams = [t.family for t in oof]
    assert len(set(fams)) < len(fams)  # the fixture has seeds sharing a family
    r = blend(oof, lab, method="soft", test_tables=test, seed_average=True, nested=False, n_boot=50)
    assert [u.name for u in r.units] == list(dict.fromkeys(fams))
    means = [np.mean([t.probs for t in oof if t.family == f], axis=0) for f in dict.fromkeys(fams)]
    np.testing.assert_allclose(r.oof.probs, np.mean(means, axis=0), rtol=1e-5, atol=1e-7)


def test_seed_average_is_a_step_before_any_method(small_tables):
    oof, test, lab, *_ = small_tables
    fams = list(dict.fromkeys(t.family for t in oof))
    means = np.stack([np.mean([t.probs for t in oof if t.family == f], axis=0) for f in fams])  # (F, n, C)
    for method in ("soft", "geometric", "hard"):
        r = blend(oof, lab, method=method, seed_average=True, nested=False, n_boot=20)
        assert [u.name for u in r.units] == fams
        expect = M.METHODS.get(method).combine(np.ascontiguousarray(means.transpose(1, 0, 2)), np.ones(len(fams)))
        np.testing.assert_allclose(r.oof.probs, expect, rtol=1e-5, atol=1e-7)


def test_the_stable_api_name_calls_blend(small_tables):
    import ensemble
    import ensemble.blend  # binds the name ensemble.blend to the subpackage: it must still be callable

    oof, test, lab, *_ = small_tables
    r = ensemble.blend(oof, lab, method="soft", nested=False, n_boot=20)
    assert r.method == "soft" and ensemble.blend.blend is ensemble.blend.core.blend
