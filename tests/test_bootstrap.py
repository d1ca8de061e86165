from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ensemble.bootstrap import bootstrap_ci, bootstrap_scores
from ensemble.errors import MetricError


def sk_f1(y, p, c=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f1_score(y, p, average="macro", labels=None if c is None else np.arange(c))


def noisy(rng, y, c, acc):
    return np.where(rng.random(len(y)) < acc, y, rng.integers(0, c, len(y)))


def test_few_types_follow_the_documented_multinomial_and_are_paired(rng):
    # 2000 rows, 4 classes, 2 models: at most 64 types <= n/16, so type counts are drawn by multinomial
    n, c = 2000, 4
    y = rng.integers(0, c, n)
    preds = np.stack([noisy(rng, y, c, 0.7), noisy(rng, y, c, 0.6)])
    scores = bootstrap_scores(y, preds, n_classes=c, n_boot=30, seed=7)
    assert scores.shape == (2, 30)
    types, freq = np.unique(np.column_stack([y, *preds]), axis=0, return_counts=True)
    counts = np.random.default_rng(7).multinomial(n, freq / n, size=30)
    for b in range(30):
        rows = np.repeat(types, counts[b], axis=0)  # the resample, materialised: one for both models
        for q in range(2):
            assert scores[q, b] == pytest.approx(sk_f1(rows[:, 0], rows[:, 1 + q]), abs=1e-12)


def test_many_types_resample_rows_with_the_documented_indices(rng):
    # 5 random models on 300 rows: types near n, so rows are drawn as indices
    n, c = 300, 6
    y = rng.integers(0, c, n)
    preds = rng.integers(0, c, (5, n))
    scores = bootstrap_scores(y, preds, n_classes=c, n_boot=20, seed=3, all_classes=True)
    hand = np.random.default_rng(3)
    for b in range(20):
        rows = hand.integers(0, n, size=n)
        for q in range(5):
            assert scores[q, b] == pytest.approx(sk_f1(y[rows], preds[q, rows], c), abs=1e-12)


def test_ci_brackets_the_estimate_and_is_seeded(rng):
    n, c = 5000, 8
    y = rng.integers(0, c, n)
    pred = noisy(rng, y, c, 0.75)
    point = sk_f1(y, pred)
    lo, hi = bootstrap_ci(y, pred, n_classes=c, n_boot=500)
    assert lo < point < hi and hi - lo < 0.1
    assert (lo, hi) == bootstrap_ci(y, pred, n_classes=c, n_boot=500)
    assert (lo, hi) != bootstrap_ci(y, pred, n_classes=c, n_boot=500, seed=1)
    lo90, hi90 = bootstrap_ci(y, pred, n_classes=c, n_boot=500, alpha=0.1)
    assert lo < lo90 < hi90 < hi
    # the distribution is centred on the estimate (the bootstrap's own sanity check)
    assert np.mean(bootstrap_scores(y, pred, n_classes=c, n_boot=500)) == pytest.approx(point, abs=0.01)


def test_probabilities_are_reduced_to_their_argmax(rng):
    y = rng.integers(0, 3, 400)
    probs = rng.dirichlet(np.ones(3), 400)
    a = bootstrap_scores(y, probs, n_classes=3, n_boot=10)
    np.testing.assert_array_equal(a, bootstrap_scores(y, probs.argmax(1), n_classes=3, n_boot=10))
    lo, hi = bootstrap_ci(y, np.stack([probs, probs]), n_classes=3, n_boot=10)
    assert lo.shape == hi.shape == (2,) and lo[0] == lo[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preds": np.array([0, 1])}, r"y_true has shape \(3,\) and predictions \(2,\)"),
        ({"preds": np.array([0, 1, 5])}, "predictions hold labels outside 0..2"),
        ({"preds": np.array([0, 1, 2]), "n_boot": 0}, "n_boot=0; the bootstrap needs at least 1 resample"),
        ({"preds": np.ones((3, 2))}, r"probabilities have shape \(3, 2\); expected \(n, 3\)"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(MetricError, match=message):
        bootstrap_scores(np.array([0, 1, 2]), n_classes=3, **kwargs)
    with pytest.raises(MetricError, match="alpha=1.5"):
        bootstrap_ci(np.array([0, 1]), np.array([0, 1]), n_classes=2, alpha=1.5)


@pytest.mark.parametrize("k", [1, 6])  # one model: type counts; six random models: drawn rows
def test_chunking_does_not_change_the_resamples(rng, monkeypatch, k):
    import ensemble.bootstrap as boot

    y = rng.integers(0, 5, 500)
    preds = rng.integers(0, 5, (k, 500))
    whole = bootstrap_scores(y, preds, n_classes=5, n_boot=37)
    monkeypatch.setattr(boot, "_CHUNK", 1000)  # a few resamples per chunk
    np.testing.assert_array_equal(whole, bootstrap_scores(y, preds, n_classes=5, n_boot=37))
