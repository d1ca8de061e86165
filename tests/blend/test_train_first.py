"""`nested.train_first`: the training rows as one contiguous block, moved in place and put back; and
small stacks' outer folds fitted side by side in threads, each on its own copy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.synthetic import make_problem
from ensemble import _kernels
from ensemble.blend import methods as M
from ensemble.blend import nested
from ensemble.blend import blend
from ensemble.labels import Labels, read_labels
from ensemble.metrics import get_metric
from ensemble.metrics.builtin import LogLoss
from ensemble.metrics.file import resolve_metric
from ensemble.tables import make_table


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


@pytest.mark.parametrize("method,spec", [
    ("weighted", M.Spec(tune_bias=True)),
    ("greedy", M.Spec(rounds=15)),
    ("soft", M.Spec(top=2)),
])
@pytest.mark.parametrize("parallel", [True, False])
def test_nested_folds_in_threads_or_in_turn_are_the_fits_on_each_folds_training_rows(method, spec, parallel, monkeypatch):
    # the oracle: each outer fold fitted on its own copy of the other folds' rows, one after another
    monkeypatch.setattr(_kernels, "threads", lambda: 2)
    if not parallel:
        monkeypatch.setattr(nested, "_PARALLEL_BYTES", 0)
    p = make_problem(n_models=5, n_samples=900, n_classes=4, seed=3)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    before = X.copy()
    expected = np.empty((900, 4), dtype=np.float32)
    for k in np.unique(p.folds):
        test = p.folds == k
        fitted = M.fit(method, X[~test].copy(), p.y[~test], 4, spec, index=np.flatnonzero(~test))
        expected[test] = M.apply(method, fitted, X[test].copy())
    assert nested.fold_workers(X, spec, 5) == (2 if parallel else 1)
    got = nested.nested_predictions(method, X, p.y, 4, spec, p.folds)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(X, before)


def test_a_metric_file_fits_its_folds_in_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(_kernels, "threads", lambda: 4)
    (tmp_path / "metric.py").write_text("higher_is_better = True\n\n\ndef score(solution, submission, row_id_column_name):\n    return 0.0\n")
    pd.DataFrame({"id": ["a", "b", "c"], "label": ["x", "y", "x"]}).to_csv(tmp_path / "l.csv", index=False)
    metric = resolve_metric(str(tmp_path / "metric.py"), labels=read_labels(tmp_path / "l.csv"))
    assert metric.runs_user_code
    X = np.zeros((10, 2, 3), dtype=np.float32)
    assert nested.fold_workers(X, M.Spec(metric=metric), 5) == 1
    assert nested.fold_workers(X, M.Spec(), 5) == 4
    assert nested.fold_workers(X, M.Spec(metric=get_metric("log_loss")), 5) == 4


class _Scratch(LogLoss):
    """A caller's own metric that keeps scratch state between calls: never called from two threads."""

    def score(self, y, probs, index=None):
        self.__dict__.setdefault("calls", []).append(threading.current_thread().name)
        return super().score(y, probs, index)


def test_a_callers_own_metric_object_fits_its_folds_in_turn(monkeypatch):
    monkeypatch.setattr(_kernels, "threads", lambda: 4)
    metric = _Scratch("mine", higher_is_better=False)  # fits call its score (no compiled count code)
    assert not metric.thread_safe and get_metric("macro_f1").thread_safe
    p = make_problem(n_models=4, n_samples=400, n_classes=3, seed=2)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    assert nested.fold_workers(X, M.Spec(metric=metric), 5) == 1
    ids = np.array([str(i) for i in range(400)], dtype=object)
    lab = Labels(ids, list("abc"), p.y, p.folds, None, pd.DataFrame(), Path("train.csv"))
    blend([make_table(ids, list("abc"), p.probs[m], meta={"model": f"m{m}"}) for m in range(4)], lab,
          method="greedy", metric=metric, n_boot=50)
    assert set(metric.calls) == {threading.main_thread().name}
    assert nested.fold_workers(X, M.Spec(), 3) == 3


def test_a_full_fit_that_fails_stops_the_nested_folds_not_yet_begun(monkeypatch):
    monkeypatch.setattr(_kernels, "threads", lambda: 2)
    real, begun = M.fit, []

    def fit(*args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            raise RuntimeError("the full fit failed")
        begun.append(1)
        time.sleep(0.5)  # the folds in the pool take a while: the failure arrives while they run
        return real(*args, **kwargs)

    monkeypatch.setattr(M, "fit", fit)
    p = make_problem(n_models=3, n_samples=300, n_classes=3, seed=5)
    ids = np.array([str(i) for i in range(300)], dtype=object)
    lab = Labels(ids, list("abc"), p.y, p.folds, None, pd.DataFrame(), Path("train.csv"))
    with pytest.raises(RuntimeError, match="the full fit failed"):
        blend([make_table(ids, list("abc"), p.probs[m], meta={"model": f"m{m}"}) for m in range(3)], lab, method="weighted")
    for t in threading.enumerate():  # the folds' threads, once they have ended
        if t is not threading.main_thread() and t.name.startswith("ThreadPoolExecutor"):
            t.join(timeout=30)
    assert len(begun) <= 2  # the two folds already running; the other three were skipped


def test_a_stopped_nested_run_fits_nothing_more(monkeypatch):
    stop = threading.Event()
    stop.set()
    monkeypatch.setattr(M, "fit", lambda *a, **k: pytest.fail("fitted after the stop"))
    p = make_problem(n_models=3, n_samples=200, n_classes=3, seed=5)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    for limit in (0, 64 << 20):  # in turn, in place; and in threads
        monkeypatch.setattr(nested, "_PARALLEL_BYTES", limit)
        nested.nested_predictions("weighted", X, p.y, 3, M.Spec(), p.folds, stop=stop)
