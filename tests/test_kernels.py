from __future__ import annotations

import numpy as np
import pytest

from ensemble import _kernels


def numpy_confusion(y, probs, c):
    return np.bincount(y * c + np.argmax(probs, axis=1), minlength=c * c).reshape(c, c)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 16383, 16385, 40_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_confusion_matches_numpy_across_tile_and_block_edges(rng, n, dtype):
    c = 7
    probs = rng.random((n, c)).astype(dtype)
    probs[::5, 2] = probs[::5, 4] = 2.0  # ties every fifth row: the first maximum wins
    y = rng.integers(0, c, n)
    cm, bad = _kernels.confusion_from_probs(y, probs, c)
    np.testing.assert_array_equal(cm, numpy_confusion(y, probs, c))
    assert bad == 0
    np.testing.assert_array_equal(_kernels.argmax(probs), np.argmax(probs, axis=1))


def test_many_classes(rng):
    n, c = 50_000, 300  # large C takes the few-big-blocks path
    probs = rng.random((n, c), dtype=np.float32)
    y = rng.integers(0, c, n)
    cm, bad = _kernels.confusion_from_probs(y, probs, c)
    np.testing.assert_array_equal(cm, numpy_confusion(y, probs, c))
    assert bad == 0


def test_labels_outside_the_classes_are_counted_not_scored(rng):
    probs = rng.random((100, 3), dtype=np.float32)
    y = rng.integers(0, 3, 100)
    y[[3, 50]] = [-1, 3]
    cm, bad = _kernels.confusion_from_probs(y, probs, 3)
    ok = (y >= 0) & (y < 3)
    assert bad == 2
    np.testing.assert_array_equal(cm, numpy_confusion(y[ok], probs[ok], 3))


def test_numpy_fallback_agrees_with_the_compiled_kernels(rng, monkeypatch):
    n, c, k = 5000, 6, 3
    probs = rng.random((n, c), dtype=np.float32)
    y = rng.integers(0, c, n)
    preds = rng.integers(0, c, (k, n))
    weights = rng.integers(0, 3, (20, n))
    inv = rng.integers(0, 50, n).astype(np.int32)  # 50 row types
    rows = rng.integers(0, n, (7, n))

    def run():
        return (_kernels.argmax(probs), _kernels.confusion_from_probs(y, probs, c), _kernels.boot_counts(y, preds, weights, c),
                _kernels.boot_rows(inv, y[:50], preds[:, :50], rows, c))

    compiled = run()
    monkeypatch.setattr(_kernels, "HAVE_NUMBA", False)
    fallback = run()
    np.testing.assert_array_equal(compiled[0], fallback[0])
    np.testing.assert_array_equal(compiled[1][0], fallback[1][0])
    for a, b in [*zip(compiled[2], fallback[2]), *zip(compiled[3], fallback[3])]:
        np.testing.assert_array_equal(a, b)


def test_boot_counts_against_explicit_resamples(rng):
    n, c = 200, 4
    y = rng.integers(0, c, n)
    preds = rng.integers(0, c, (2, n))
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(5)])
    tp, pc, tc = _kernels.boot_counts(y, preds, weights, c)
    for b in range(5):
        rows = np.repeat(np.arange(n), weights[b])  # the resample, materialised
        np.testing.assert_array_equal(tc[b], np.bincount(y[rows], minlength=c))
        for q in range(2):
            np.testing.assert_array_equal(pc[q, b], np.bincount(preds[q, rows], minlength=c))
            hit = rows[preds[q, rows] == y[rows]]
            np.testing.assert_array_equal(tp[q, b], np.bincount(y[hit], minlength=c))
