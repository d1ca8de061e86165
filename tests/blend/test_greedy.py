"""Caruana selection against a plain implementation scored by sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from benchmarks.synthetic import make_problem
from ensemble.blend.greedy import caruana


def plain_caruana(X, y, rounds):
    """The textbook loop: try every member, keep the best sum; history of (counts, score)."""
    S = np.zeros(X.shape[::2])
    counts = np.zeros(X.shape[1], dtype=int)
    history = []
    for _ in range(rounds):
        scores = [f1_score(y, (S + X[:, m]).argmax(1), average="macro") for m in range(X.shape[1])]
        m = int(np.argmax(scores))
        S = S + X[:, m]
        counts[m] += 1
        history.append((counts.copy(), scores[m]))
    return history


@pytest.fixture(scope="module")
def prob():
    p = make_problem(n_models=6, n_samples=1200, n_classes=5, seed=8)
    return np.ascontiguousarray(p.probs.transpose(1, 0, 2)), p.y


def test_same_choices_as_the_plain_loop(prob):
    X, y = prob
    history = plain_caruana(X, y, 15)
    counts, f = caruana(X, y, 5, rounds=15, use_best=False)
    np.testing.assert_array_equal(counts, history[-1][0])
    assert f == pytest.approx(history[-1][1], abs=1e-12)
    best = max(range(15), key=lambda r: (history[r][1], -r))  # first round reaching the best score
    counts, f = caruana(X, y, 5, rounds=15, use_best=True)
    np.testing.assert_array_equal(counts, history[best][0])
    assert f == pytest.approx(history[best][1], abs=1e-12)


def test_one_round_is_the_best_single_member(prob):
    X, y = prob
    counts, f = caruana(X, y, 5, rounds=1)
    singles = [f1_score(y, X[:, m].argmax(1), average="macro") for m in range(X.shape[1])]
    assert counts.sum() == 1 and int(np.argmax(counts)) == int(np.argmax(singles))
    assert f == pytest.approx(max(singles))


def test_use_best_never_below_the_last_round(prob):
    X, y = prob
    _, last = caruana(X, y, 5, rounds=40, use_best=False)
    counts, best = caruana(X, y, 5, rounds=40, use_best=True)
    assert best >= last and counts.sum() <= 40
