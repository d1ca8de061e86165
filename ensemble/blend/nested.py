"""Honest scores: nested cross-validation of everything a blend fits, and the noise verdict.

An OOF score of weights tuned on those same OOF rows is optimistic. The nested estimate fits the
whole blend (member choice, weights, bias) on K-1 folds of the OOF rows, predicts the held-out
fold, and scores the predictions pooled over the folds. Choosing "the best single model" is a fit
too, so its nested estimate is computed the same way, and the verdict compares like with like: a
paired bootstrap of the two pooled predictions says whether the gain is outside noise.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ensemble._progress import NoProgress, Progress
from ensemble.blend import methods as M
from ensemble.bootstrap import bootstrap_metric
from ensemble.errors import LabelError
from ensemble.memory import release_freed_memory
from ensemble.metrics.base import Metric
from ensemble.task import MULTICLASS, MULTILABEL

N_SPLITS = 5
# the seeded split of labels without folds, per task: `ens folds`' stratified split of one class per
# row, or Sechidis et al.'s iterative stratification of label sets (the iterative-stratification package)
NESTED_SPLIT = {MULTICLASS: "stratified", MULTILABEL: "multilabel-stratified"}


def nested_folds(folds: np.ndarray | None, y: np.ndarray, seed: int, *, source: str = "the labels") -> tuple[np.ndarray, str]:
    """The outer folds of the nested CV: the labels' fold column, else `ens folds`' seeded split
    (`NESTED_SPLIT`: stratified for one class per row, multilabel-stratified for an indicator matrix y).

    Returns:
        int64 folds of shape (n_samples,) and where they came from ("labels" or e.g. "stratified(seed=S)").

    Raises:
        LabelError: the fold column holds a single fold (nothing to fit on outside it).
    """
    if folds is not None:
        folds = np.asarray(folds, dtype=np.int64)
        if len(np.unique(folds)) < 2:
            raise LabelError(
                f"{source}: the fold column holds a single fold, so no blend can be fitted outside it; "
                "make folds with `ens folds`, or pass --no-nested"
            )
        return folds, "labels"
    from ensemble.folds import FOLD_METHODS

    out = np.empty(len(y), dtype=np.int64)
    name = NESTED_SPLIT[MULTILABEL if y.ndim == 2 else MULTICLASS]
    splitter = FOLD_METHODS.get(name).make(N_SPLITS, seed)
    with warnings.catch_warnings():  # a class rarer than the split count only gets fewer folds
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, test) in enumerate(splitter.split(np.zeros((len(y), 1)), y)):
            out[test] = k
    return out, f"{name}(seed={seed})"


def nested_predictions(
    method: str,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    spec: M.Spec,
    folds: np.ndarray,
    progress: Progress | None = None,
    *,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """Pooled held-out probabilities of the blend fitted on the other folds.

    Args:
        method: a METHODS key.
        X: unit probabilities, float32 of shape (n_samples, n_units, n_classes).
        y: int64 labels of shape (n_samples,), or a uint8 indicator matrix (n_samples, n_classes).
        n_classes: C.
        spec: what the blend fits (its metric included).
        folds: int64 fold of each row, shape (n_samples,).
        progress: told about each outer fold.
        stop: once set, folds not yet begun are not fitted (a caller that no longer needs the
            result; what is returned then is incomplete).

    Returns:
        float32 probabilities of shape (n_samples, n_classes): row i blended by a fit that never saw it.
    """
    progress = progress or NoProgress()
    values = np.unique(folds)
    progress.start("nested CV", len(values))
    out = np.empty(X.shape[::2], dtype=np.float32)
    rows = np.arange(len(y))
    workers = fold_workers(X, spec, len(values))
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        def one(k: int) -> tuple[np.ndarray, np.ndarray] | None:
            if stop is not None and stop.is_set():
                return None
            test = folds == k
            train = ~test
            fitted = M.fit(method, np.ascontiguousarray(X[train]), y[train], n_classes, spec, index=rows[train])
            return test, M.apply(method, fitted, X, rows=test)

        with ThreadPoolExecutor(workers) as pool:
            for done in pool.map(one, values):
                if done is not None:
                    out[done[0]] = done[1]
                progress.advance()
        progress.stop()
        return out
    for k in values:
        if stop is not None and stop.is_set():
            break
        test = folds == k
        train = ~test
        with train_first(X, test) as (X_train, X_test):
            fitted = M.fit(method, X_train, y[train], n_classes, spec, index=rows[train])
            out[test] = M.apply(method, fitted, X_test)
        release_freed_memory()  # the fold's work arrays, before the next fold allocates its own
        progress.advance()
    progress.stop()
    return out


# Stacks up to this size fit their outer folds side by side in threads, each on its own copy of the
# training rows (at most `workers` copies of 80% of the stack); larger ones in turn, in place
# (`train_first`), where the kernels split each pass's rows across the cores instead.
_PARALLEL_BYTES = 64 << 20


def fold_workers(X: np.ndarray, spec: M.Spec, n_folds: int) -> int:
    """Threads the outer folds are fitted in: the usable cores for a small stack and a built-in
    metric (`Metric.thread_safe`: a metric file's Python would only queue for the interpreter lock,
    and a caller's own metric object may keep state), else 1."""
    from ensemble._kernels import threads

    if X.nbytes > _PARALLEL_BYTES or not spec.metric.thread_safe:
        return 1
    return max(1, min(threads(), n_folds))


_MOVE_ROWS = 1 << 14  # rows moved at a time by `train_first` (its temporary copies stay ~10 MB)


@contextmanager
def train_first(X: np.ndarray, test: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`X[~test]` and `X[test]` as contiguous views, without a copy of the training rows.

    The kernels fit on contiguous rows, and `X[~test]` would copy 80% of the stack for every outer
    fold (0.55 GB for 10 members x 1M x 18). Instead X's rows are moved in place, a block at a
    time, so the training rows come first in their order and the held-out rows last (only those
    are copied aside); the fit sees exactly the array `X[~test]` would be. X's order is restored on
    leaving the block, also on an error inside it. X is shared with the members' tables (the stack
    they were read into), which is why the order must come back. A read-only or non-contiguous X is
    copied as before.

    Yields:
        (train rows, held-out rows), float32 of shapes (n_train, U, C) and (n_test, U, C).
    """
    train, held = np.flatnonzero(~test), np.flatnonzero(test)
    if not (X.flags.writeable and X.flags.c_contiguous):
        yield np.ascontiguousarray(X[train]), np.ascontiguousarray(X[held])
        return
    aside = X[held]  # the held-out rows, copied
    n = len(train)
    for lo in range(0, n, _MOVE_ROWS):  # forwards: a block's source rows lie at or after its destination
        src = train[lo:lo + _MOVE_ROWS]
        X[lo:lo + len(src)] = X[src]
    X[n:] = aside
    try:
        yield X[:n], X[n:]
    finally:
        for hi in range(n, 0, -_MOVE_ROWS):  # backwards: a block's destination rows lie at or after its source
            lo = max(0, hi - _MOVE_ROWS)
            X[train[lo:hi]] = X[lo:hi].copy()
        X[held] = aside


def nested_best_single(X: np.ndarray, y: np.ndarray, metric: Metric, folds: np.ndarray) -> np.ndarray:
    """Pooled held-out probabilities of "the best single member", chosen by the metric on the other folds."""
    from ensemble.metrics.builtin import ConfusionMetric
    from ensemble.metrics.classification import argmax, confusion_matrix

    out = np.empty(X.shape[::2], dtype=np.float32)
    rows = np.arange(len(y))
    # a confusion metric (macro-F1, QWK, ...) of a member's training rows is that of its argmax
    # there: each member's argmax is taken once, not once per fold (0.09 s -> 0.02 s for 20 members
    # x 20k rows), and each fold's confusion counted from it; the same integer counts as `score`'s
    C = X.shape[2]
    preds = [argmax(X[:, u]) for u in range(X.shape[1])] if isinstance(metric, ConfusionMetric) else None
    for k in np.unique(folds):
        test = folds == k
        train = rows[~test]
        if preds is not None:
            yt = y[train]
            scores = np.array([float(metric.from_confusion(confusion_matrix(yt, p[train], C))) for p in preds])
        else:
            # one member's training rows at a time, not every member's at once (a metric reads rows
            # whatever their layout: the scores are bit for bit those of `X[~test][:, u]`)
            scores = np.array([metric.score(y[train], X[train, u], train) for u in range(X.shape[1])])
        out[test] = X[test, metric.best(scores)]
    return out


def paired_gain_ci(
    y: np.ndarray, probs: np.ndarray, ref: np.ndarray, metric: Metric, *, n_boot: int, seed: int,
    groups: np.ndarray | None = None, progress: Progress | None = None,
) -> tuple[float, float]:
    """95% bootstrap interval of the gain of `probs` over `ref` (oriented: > 0 is better), on the same resamples."""
    s = bootstrap_metric(metric, y, np.stack([probs, ref]), n_boot=n_boot, seed=seed, groups=groups, progress=progress)
    lo, hi = np.quantile(metric.oriented(s[0] - s[1]), [0.025, 0.975])
    return float(lo), float(hi)
