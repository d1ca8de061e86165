"""`methods.apply` blends rows a block at a time: the same bits as one whole-array pass."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.synthetic import make_multilabel_problem, make_problem
from ensemble.blend import methods as M
from ensemble.blend.assemble import stack_units
from ensemble.blend.units import build_units

FITS = {
    "plain": {},
    "bias": {"bias": np.linspace(-0.3, 0.4, 5)},
    "temperature": {"temperature": 1.7, "bias": np.linspace(0.2, -0.1, 5)},
    "log pool": {"pool": "log"},
}


def _whole(method: str, fitted: M.Fitted, X: np.ndarray, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(M, "APPLY_ROWS", len(X) + 1)
        return M.apply(method, fitted, X)


@pytest.mark.parametrize("method", list(M.METHODS))
@pytest.mark.parametrize("fit", list(FITS))
@pytest.mark.parametrize("block", [1, 7, 256])
def test_apply_by_blocks_gives_the_bits_of_one_pass(method, fit, block, monkeypatch):
    p = make_problem(n_models=4, n_samples=1000, n_classes=5, seed=1)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))  # (n, U, C)
    weights = np.array([0.5, 0.0, 0.3, 0.2])  # a dropped unit too
    fitted = M.Fitted(np.arange(4), weights, **FITS[fit])
    whole = _whole(method, fitted, X, monkeypatch)
    monkeypatch.setattr(M, "APPLY_ROWS", block)
    got = M.apply(method, fitted, X)
    assert got.dtype == whole.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), whole.view(np.uint32))
    rows = np.flatnonzero(p.folds != 2)
    np.testing.assert_array_equal(M.apply(method, fitted, X, rows=rows), _whole(method, fitted, X[rows], monkeypatch))
    np.testing.assert_array_equal(M.apply(method, fitted, X, rows=p.folds != 2), M.apply(method, fitted, X, rows=rows))


@pytest.mark.parametrize("block", [1, 33])
def test_apply_by_blocks_keeps_multilabel_thresholds_bit_for_bit(block, monkeypatch):
    p = make_multilabel_problem(n_models=3, n_samples=800, n_classes=6, seed=2)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    for method in ("soft", "hard", "geometric"):
        fitted = M.Fitted(np.arange(3), np.array([0.2, 0.5, 0.3]), thresholds=np.linspace(0.2, 0.6, 6),
                          temperature=0.8, task="multilabel")
        whole = _whole(method, fitted, X, monkeypatch)
        with monkeypatch.context() as m:
            m.setattr(M, "APPLY_ROWS", block)
            got = M.apply(method, fitted, X)
        np.testing.assert_array_equal(got.view(np.uint32), whole.view(np.uint32))


def test_stack_units_returns_the_members_stack_without_a_copy(small_tables):
    oof, test, *_ = small_tables  # read by `read_members`: each kind into one stack
    X = stack_units(build_units(oof, seed_average=False), oof)
    assert all(np.shares_memory(X[:, i], t.probs) for i, t in enumerate(oof))
    assert np.shares_memory(stack_units(build_units(test, seed_average=False), test), test[0].probs)
    expected = np.stack([t.probs for t in oof], axis=1)
    np.testing.assert_array_equal(X, expected)
    fam = stack_units(build_units(oof, seed_average=True), oof)  # families averaged: a new array
    assert not np.shares_memory(fam, X) and fam.shape[1] < X.shape[1]
