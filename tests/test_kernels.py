from __future__ import annotations

import numpy as np
import pytest

from ensemble import _kernels


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    """Every size takes the compiled kernels (small inputs take their numpy twins otherwise)."""
    monkeypatch.setattr(_kernels, "_COMPILE_FROM", 0)
    monkeypatch.setattr(_kernels, "_BOOT_COMPILE_FROM", 0)


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


_FALLBACK_SCRIPT = """
import numpy as np, sys
from ensemble import _kernels
assert not _kernels.HAVE_NUMBA
d = np.load(sys.argv[1])
probs, y, preds, weights, inv, rows = (d[k] for k in ("probs", "y", "preds", "weights", "inv", "rows"))
c = probs.shape[1]
cm = _kernels.confusion_from_probs(y, probs, c)[0]
bc = _kernels.boot_counts(y, preds, weights, c)
br = _kernels.boot_rows(inv, y[:50], preds[:, :50], rows, c)
np.savez(sys.argv[2], argmax=_kernels.argmax(probs), cm=cm, *bc, *br)
import ensemble.blend.weighted  # the blend optimisers still import (they need numba, not the fallback flag)
"""


def test_numpy_fallback_in_a_fresh_process_agrees_with_the_compiled_kernels(rng, tmp_path):
    import os
    import subprocess
    import sys

    n, c, k = 3000, 5, 2
    data = {
        "probs": rng.random((n, c), dtype=np.float32), "y": rng.integers(0, c, n), "preds": rng.integers(0, c, (k, n)),
        "weights": rng.integers(0, 3, (10, n)), "inv": rng.integers(0, 50, n).astype(np.int32),
        "rows": rng.integers(0, n, (4, n)),
    }
    np.savez(tmp_path / "in.npz", **data)
    env = {**os.environ, "ENS_NO_NUMBA": "1"}
    subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, env=env, capture_output=True)
    out = np.load(tmp_path / "out.npz")
    d = data
    np.testing.assert_array_equal(out["argmax"], _kernels.argmax(d["probs"]))
    np.testing.assert_array_equal(out["cm"], _kernels.confusion_from_probs(d["y"], d["probs"], c)[0])
    expect = [*_kernels.boot_counts(d["y"], d["preds"], d["weights"], c),
              *_kernels.boot_rows(d["inv"], d["y"][:50], d["preds"][:, :50], d["rows"], c)]
    for i, e in enumerate(expect):
        np.testing.assert_array_equal(out[f"arr_{i}"], e)


def sk_counts_oracle(name, y, pred, c):
    """scikit-learn's value of a count metric on labels (the counts' independent oracle)."""
    import warnings

    from sklearn import metrics as skm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "macro_f1": lambda: skm.f1_score(y, pred, average="macro"),
            "macro_f1_all": lambda: skm.f1_score(y, pred, average="macro", labels=np.arange(c)),
            "micro_f1": lambda: skm.f1_score(y, pred, average="micro"),
            "weighted_f1": lambda: skm.f1_score(y, pred, average="weighted"),
            "accuracy": lambda: skm.accuracy_score(y, pred),
            "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, pred),
        }[name]()


@pytest.mark.parametrize("name", list(_kernels.COUNT_METRICS))
def test_count_metric_compiled_and_numpy_agree_with_sklearn(rng, name):
    from numba import njit

    code = _kernels.COUNT_METRICS[name]

    @njit
    def inlined(tp, pc, tc, code):  # how the blend kernels call it: from compiled code
        return _kernels.count_metric(tp, pc, tc, code)

    c = 6
    batch = []
    for trial in range(30):
        y = rng.choice(rng.choice(c, rng.integers(1, c + 1), replace=False), 50)  # classes absent from truth
        pred = np.where(rng.random(50) < 0.5, y, rng.integers(0, c - trial % 3, 50))  # ... and from prediction
        cm = numpy_confusion(y, np.eye(c)[pred], c)
        tp, pc, tc = np.diag(cm).copy(), cm.sum(axis=0), cm.sum(axis=1)
        expected = sk_counts_oracle(name, y, pred, c)
        assert _kernels.count_metric(tp, pc, tc, code) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert inlined(tp, pc, tc, code) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        batch.append((tp, pc, tc, expected))
    tp, pc, tc, expected = (np.stack(a) for a in zip(*batch))
    vec = _kernels.count_metric_np(tp.reshape(5, 6, c), pc.reshape(5, 6, c), tc.reshape(5, 6, c), code)
    assert vec.shape == (5, 6)
    np.testing.assert_allclose(vec.ravel(), expected, rtol=1e-12, atol=1e-15)


def test_true_class_nll_clips_like_sklearn(rng):
    from sklearn.metrics import log_loss

    for dtype in (np.float32, np.float64):
        probs = rng.dirichlet(np.ones(4), 100).astype(dtype)
        y = rng.integers(0, 4, 100)
        probs[:3] = np.eye(4, dtype=dtype)[(y[:3] + 1) % 4]  # confident misses: the clip decides
        probs[3] = np.eye(4, dtype=dtype)[y[3]]  # a confident hit: clipped at 1 - eps
        rows = _kernels.true_class_nll(y, probs)
        expected = [log_loss(y[i : i + 1], probs[i : i + 1], labels=np.arange(4)) for i in range(100)]
        np.testing.assert_allclose(rows, expected, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_row_split_across_threads_equals_numpy(rng, monkeypatch):
    monkeypatch.setattr(_kernels, "_SPLIT_ROWS", 1000)  # split even a small table into one part per core
    monkeypatch.setattr(_kernels, "threads", lambda: 3)
    n, c = 7001, 5
    probs = rng.random((n, c), dtype=np.float32)
    probs[::7, 1] = probs[::7, 3]  # ties: the first maximum wins
    y = rng.integers(0, c, n)
    assert len(_kernels._row_parts(n)) == 3
    np.testing.assert_array_equal(_kernels.argmax(probs), probs.argmax(1))
    cm, bad = _kernels.confusion_from_probs(y, probs, c)
    np.testing.assert_array_equal(cm, np.bincount(y * c + probs.argmax(1), minlength=c * c).reshape(c, c))
    assert bad == 0
    expect = -np.log(np.clip(probs[np.arange(n), y].astype(np.float64), np.finfo(np.float32).eps, 1 - np.finfo(np.float32).eps))
    np.testing.assert_allclose(_kernels.true_class_nll(y, probs), expect, rtol=1e-12)


def test_small_inputs_take_the_numpy_twins_with_the_same_results(rng, monkeypatch):
    n, c = 2000, 6
    probs = rng.random((n, c), dtype=np.float32)
    probs[::4, 0] = probs[::4, 5] = 2.0  # ties: the first maximum wins on both paths
    y = rng.integers(0, c, n)
    y[7] = c  # outside the classes: counted, not scored, on both paths
    preds = rng.integers(0, c, (3, n))
    weights = rng.integers(0, 3, (9, n))
    inv, rows = rng.integers(0, 40, n).astype(np.int32), rng.integers(0, n, (4, n))
    calls = {
        "argmax": lambda: _kernels.argmax(probs),
        "confusion": lambda: _kernels.confusion_from_probs(y, probs, c),
        "boot_counts": lambda: _kernels.boot_counts(y[y < c][:1000], preds[:, :1000], weights[:, :1000], c),
        "boot_rows": lambda: _kernels.boot_rows(inv, y[:40] % c, preds[:, :40], rows, c),
    }
    kernels = {name: call() for name, call in calls.items()}
    monkeypatch.setattr(_kernels, "_COMPILE_FROM", 1 << 20)
    monkeypatch.setattr(_kernels, "_BOOT_COMPILE_FROM", 1 << 24)
    assert not _kernels._compiled(probs.size) and not _kernels._compiled(weights.size * 3, _kernels._BOOT_COMPILE_FROM)
    for name, call in calls.items():
        got, expected = call(), kernels[name]
        for g, e in zip(got if isinstance(got, tuple) else (got,), expected if isinstance(expected, tuple) else (expected,)):
            np.testing.assert_array_equal(g, e, err_msg=name)
            assert np.asarray(g).dtype == np.asarray(e).dtype, name


def blend_inputs(rng, n=400, M=4, C=5, quantise=True):
    """A fit's state: members X (n, M, C) float32, labels, a blend B, its argmax, margins and counts."""
    from ensemble.blend import _kernels as K

    X = rng.dirichlet(np.ones(C), (n, M)).astype(np.float32)
    if quantise:  # coarse probabilities: ties in scores, switch points and margins
        X = (np.round(X * 8) / 8).astype(np.float32)
    y = rng.integers(0, C, n)
    B = np.einsum("nmc,m->nc", X, np.array([0.5, 0.25, 0.125, 0.125])[:M], dtype=np.float64)
    amax, margin = K.argmax_margin(B)
    return X, y, B, amax, margin, K.class_counts(y, amax, C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [1, 2, 7])
def test_blend_argmax_margin_twin_matches_the_kernel_bit_for_bit(rng, dtype, c):
    from ensemble.blend import _kernels as K
    from ensemble.blend import _twins

    scores = (np.round(rng.random((999, c)) * 4) / 4).astype(dtype)  # ties: the first maximum wins, margins 0
    amax, margin = np.empty(999, np.int64), np.empty(999)
    K._argmax_margin(scores, amax, margin)  # the kernel, at any size
    got = _twins.argmax_margin(scores)
    np.testing.assert_array_equal(got[0], amax)
    assert got[1].dtype == np.float64 and got[1].tobytes() == margin.tobytes()
    np.testing.assert_array_equal(amax, scores.argmax(1))


def test_line_search_refills_a_full_event_buffer(rng, monkeypatch):
    from ensemble.blend import _kernels as K

    X, y, B, amax, margin, (tp, pc, tc) = blend_inputs(rng)
    hi, lo = K.row_extremes(X)
    args = (B, amax, margin, X, hi, lo, 1, -0.5, 2.0, y, tp, pc, tc, _kernels.MACRO_F1)
    expected = K.line_search(*args)
    monkeypatch.setattr(K, "_events_cap", lambda n: 1)  # every search overflows its first buffer
    assert K.line_search(*args) == expected


def test_warm_compiles_every_signature_a_fit_calls(rng):
    """After `warm()`, fits of every searching kind compile nothing more: the warm-up's types are the fits'."""
    from ensemble.blend import _kernels as K
    from ensemble.blend.bias import tune_bias
    from ensemble.blend.greedy import caruana
    from ensemble.blend.weighted import optimise_weights

    names = list(K.warm())
    assert names == ["row_extremes", "eval_adds", "line_search", "bias_search"]
    kernels = [K._row_extremes, K._eval_adds, K._line_events, K._sweep, K._bias_events, K.count_compiled]
    before = {k: list(k.signatures) for k in kernels}
    X, y, *_ = blend_inputs(rng, quantise=False)
    w, _, _ = optimise_weights(X, y, 5)
    caruana(X, y, 5, rounds=5, code=_kernels.ACCURACY)
    tune_bias(np.einsum("nmc,m->nc", X, w).astype(np.float32), y, 5)
    assert {k: list(k.signatures) for k in kernels} == before
