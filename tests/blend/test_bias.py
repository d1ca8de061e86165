"""Per-class bias tuning: the exact 1-D search against a grid, and the fit never worse than none."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from benchmarks.synthetic import make_problem
from ensemble.blend import _kernels as K
from ensemble.blend.bias import apply_bias, log_scores, tune_bias
from tests.blend.oracles import grid_f1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.integers(0, 3))
def test_bias_search_is_exact(seed, c):
    rng = np.random.default_rng(seed)
    n, C = 120, 4
    y = rng.integers(0, C, n)
    L = np.log(rng.dirichlet(np.ones(C), n))
    amax = L.argmax(1)
    tp, pc, tc = K.class_counts(y, amax, C)
    t, f = K.bias_search(L, amax, c, -2.0, 2.0, y, tp, pc, tc, False)
    shifted = L.copy()
    shifted[:, c] += t
    assert f == pytest.approx(f1_score(y, shifted.argmax(1), average="macro"), abs=1e-12)
    steps = np.append(np.linspace(-2.0, 2.0, 2001), 0.0)
    grid = L[None].repeat(len(steps), axis=0)
    grid[:, :, c] += steps[:, None]
    scores = grid_f1(y, grid, C)
    assert scores[-1] == pytest.approx(f1_score(y, amax, average="macro"), abs=1e-12)  # the oracle agrees
    assert f >= scores.max() - 1e-12


@pytest.fixture(scope="module")
def soft_blend():
    p = make_problem(n_models=5, n_samples=3000, n_classes=8, seed=2)
    return p.probs.mean(axis=0), p.y, p.folds


def test_tuned_bias_is_never_worse_and_reported_exactly(soft_blend):
    probs, y, _ = soft_blend
    bias, f, f0 = tune_bias(probs, y, 8)
    assert f0 == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert f == pytest.approx(f1_score(y, apply_bias(probs, bias).argmax(1), average="macro"), abs=1e-9)
    assert f > f0  # imbalanced classes: the argmax of the mean is not macro-F1's best rule
    assert bias.shape == (8,) and abs(bias.mean()) < 1e-12


def test_bias_applies_to_test_rows_identically(soft_blend):
    probs, y, _ = soft_blend
    bias, _, _ = tune_bias(probs[:2000], y[:2000], 8)
    test = probs[2000:]
    out = apply_bias(test, bias)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out.argmax(1), (np.log(np.maximum(test, 1e-12)) + bias).argmax(1))
    np.testing.assert_allclose(log_scores(out) - log_scores(out).mean(1, keepdims=True),
                               (log_scores(test) + bias) - (log_scores(test) + bias).mean(1, keepdims=True), atol=1e-4)


def test_bias_tuning_with_many_classes_reports_progress_per_class():
    rng = np.random.default_rng(0)
    n, c = 600, 40
    probs = rng.dirichlet(np.ones(c), n).astype(np.float32)
    y = rng.integers(0, c, n)
    heard = []

    class Hook:
        def start(self, description, total):
            heard.append([description, total, 0])

        def advance(self, n=1):
            heard[-1][2] += n

        def stop(self):
            heard.append("stop")

    tune_bias(probs, y, c, progress=Hook())
    sweeps = [h for h in heard if h != "stop"]
    assert sweeps and all(d.startswith("tuning the bias") and t == c and k == c for d, t, k in sweeps)
    assert heard[-1] == "stop"
