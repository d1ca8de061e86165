"""`nested.train_first`: the training rows as one contiguous block, moved in place and put back."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.blend import nested


@pytest.mark.parametrize("block", [1, 5, 64, 10_000])
def test_train_first_shows_the_rows_fancy_indexing_would_and_puts_them_back(block, monkeypatch):
    monkeypatch.setattr(nested, "_MOVE_ROWS", block)
    rng = np.random.default_rng(block)
    X = rng.random((300, 4, 3), dtype=np.float32)
    before = X.copy()
    for test in (rng.random(300) < 0.2, np.arange(300) < 60, np.arange(300) >= 240, np.arange(300) % 2 == 0):
        with nested.train_first(X, test) as (tr, te):
            assert tr.flags.c_contiguous and te.flags.c_contiguous and np.shares_memory(tr, X)
            np.testing.assert_array_equal(tr, before[~test])
            np.testing.assert_array_equal(te, before[test])
        np.testing.assert_array_equal(X, before)


def test_train_first_puts_the_rows_back_after_an_error(monkeypatch):
    monkeypatch.setattr(nested, "_MOVE_ROWS", 7)
    X = np.random.default_rng(0).random((100, 2, 3), dtype=np.float32)
    before = X.copy()
    with pytest.raises(RuntimeError), nested.train_first(X, np.arange(100) % 3 == 1):
        raise RuntimeError("a fit failed")
    np.testing.assert_array_equal(X, before)


def test_train_first_copies_a_read_only_stack():
    X = np.random.default_rng(1).random((50, 2, 3), dtype=np.float32)
    X.flags.writeable = False
    test = np.arange(50) < 10
    with nested.train_first(X, test) as (tr, te):
        assert not np.shares_memory(tr, X)
        np.testing.assert_array_equal(tr, X[~test])
        np.testing.assert_array_equal(te, X[test])
