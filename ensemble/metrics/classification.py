"""Classification metrics on int64 labels and float32 (n, C) probabilities, fast and sklearn-exact.

`macro_f1` equals `sklearn.metrics.f1_score(y, pred, average="macro")` bit for bit: the average runs
over the classes present in the truth or the prediction (what Kaggle's macro-F1 computes), and a
class's F1 is 2·TP / (support + predicted), 0 when both are 0 (sklearn's `zero_division` default).
`all_classes=True` averages over all C classes instead (absent classes count as 0).

From probabilities, the argmax and the confusion counting run fused in one compiled pass
(`ensemble._kernels`): blending calls this thousands of times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble import _kernels
from ensemble.errors import MetricError, preview

__all__ = [
    "PerClass",
    "accuracy",
    "argmax",
    "confusion_matrix",
    "f1_from_confusion",
    "f1_from_counts",
    "log_loss",
    "macro_f1",
    "per_class",
    "per_class_from_confusion",
    "row_log_loss",
    "top_confused",
]


def argmax(probs: np.ndarray) -> np.ndarray:
    """Row argmax of probabilities of shape (n, C): int64 of shape (n,), first maximum on ties."""
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise MetricError(f"probabilities have shape {probs.shape}; expected (n_samples, n_classes)")
    return _kernels.argmax(probs)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix by one `np.bincount`: rows are the truth, columns the prediction.

    Args:
        y_true: labels in 0..C-1, shape (n,).
        y_pred: predicted labels in 0..C-1, shape (n,).
        n_classes: C.

    Returns:
        int64 array of shape (C, C).
    """
    y, p = _labels(y_true, "y_true", n_classes), _labels(y_pred, "y_pred", n_classes)
    _same_length(y, p)
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def f1_from_counts(tp: np.ndarray, pred: np.ndarray, true: np.ndarray, *, all_classes: bool = False) -> np.ndarray:
    """Macro-F1 from per-class counts, vectorised over leading axes.

    Args:
        tp: true positives, shape (..., C).
        pred: predicted counts per class, shape (..., C).
        true: true counts (support) per class, shape (..., C).
        all_classes: average over all C classes instead of those present in truth or prediction.

    Returns:
        float64 array of shape (...).
    """
    denom = (true + pred).astype(np.float64)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    if all_classes:
        return f1.mean(axis=-1)
    present = denom > 0
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def f1_from_confusion(cm: np.ndarray, *, all_classes: bool = False) -> float:
    """Macro-F1 of a (C, C) confusion matrix (rows truth, columns prediction)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise MetricError(f"confusion matrix has shape {cm.shape}; expected (n_classes, n_classes)")
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0).astype(np.float64) + cm.sum(axis=1)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
    if all_classes:
        return float(f1.mean()) if len(f1) else 0.0
    present = denom > 0
    # the same array sklearn averages, in the same order, so the float result is identical
    return float(f1[present].mean()) if present.any() else 0.0


def macro_f1(
    y_true: np.ndarray, y_pred_or_proba: np.ndarray, *, n_classes: int | None = None, all_classes: bool = False
) -> float:
    """Macro-F1, equal to `sklearn.metrics.f1_score(y_true, y_pred, average="macro")`.

    Args:
        y_true: int labels, shape (n,).
        y_pred_or_proba: int predicted labels of shape (n,), or probabilities/scores of shape (n, C)
            whose row argmax is the prediction.
        n_classes: C; taken from the probabilities, else from the largest label.
        all_classes: average over all C classes (absent ones score 0) instead of the classes present
            in truth or prediction (sklearn's and Kaggle's macro-F1). Needs `n_classes` or probabilities.

    Raises:
        MetricError: lengths differ, labels outside 0..C-1, or `all_classes` without a class count.
    """
    return f1_from_confusion(_confusion(y_true, y_pred_or_proba, n_classes, all_classes), all_classes=all_classes)


def accuracy(y_true: np.ndarray, y_pred_or_proba: np.ndarray, *, n_classes: int | None = None) -> float:
    """Fraction of rows whose prediction (label, or argmax of (n, C) probabilities) equals the truth."""
    cm = _confusion(y_true, y_pred_or_proba, n_classes, False)
    return float(np.trace(cm) / cm.sum())


def log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy, as `sklearn.metrics.log_loss(y_true, probs, labels=range(C))`.

    Probabilities are clipped to [eps, 1 - eps] with eps of their own dtype, as sklearn does.

    Args:
        y_true: int labels in 0..C-1, shape (n,).
        probs: probabilities of shape (n, C).
    """
    return float(row_log_loss(y_true, probs).mean())


def row_log_loss(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each row's cross-entropy (float64 (n,)): the terms `log_loss` averages."""
    probs = _probs(probs)
    y = _labels(y_true, "y_true", probs.shape[1])
    _same_length(y, probs)
    return _kernels.true_class_nll(y, probs)


@dataclass(frozen=True)
class PerClass:
    """Per-class scores, each of shape (C,); 0 where undefined (sklearn's zero_division default)."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    def to_dict(self) -> dict[str, list]:
        return {k: getattr(self, k).tolist() for k in ("precision", "recall", "f1", "support")}


def per_class(y_true: np.ndarray, y_pred_or_proba: np.ndarray, n_classes: int) -> PerClass:
    """Precision, recall, F1 and support of every class, as sklearn's
    `precision_recall_fscore_support(y, pred, labels=range(C), average=None)`."""
    cm = _confusion(y_true, y_pred_or_proba, n_classes, True)
    return per_class_from_confusion(cm)


def per_class_from_confusion(cm: np.ndarray) -> PerClass:
    """`PerClass` of a (C, C) confusion matrix (rows truth, columns prediction)."""
    tp = np.diag(cm).astype(np.float64)
    pred, true = cm.sum(axis=0), cm.sum(axis=1)
    zeros = np.zeros(len(tp))
    return PerClass(
        precision=np.divide(tp, pred, out=zeros.copy(), where=pred > 0),
        recall=np.divide(tp, true, out=zeros.copy(), where=true > 0),
        f1=np.divide(2 * tp, pred + true, out=zeros.copy(), where=pred + true > 0),
        support=true.astype(np.int64),
    )


def top_confused(cm: np.ndarray, k: int = 10) -> list[tuple[int, int, int, float]]:
    """The k largest off-diagonal cells: (true class, predicted class, count, share of the true class)."""
    off = np.array(cm, dtype=np.int64)
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    support = cm.sum(axis=1)
    out = []
    for f in flat:
        t, p = divmod(int(f), off.shape[1])
        if off[t, p] == 0:
            break
        out.append((t, p, int(off[t, p]), float(off[t, p] / support[t])))
    return out


# --- input normalisation: the one checker every metric goes through -------------------------------


def _confusion(y_true: np.ndarray, pred: np.ndarray, n_classes: int | None, need_c: bool) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim == 2:
        probs = _probs(pred)
        c = probs.shape[1]
        if n_classes is not None and n_classes != c:
            raise MetricError(f"n_classes={n_classes} but the probabilities have {c} columns; give one class count")
        y = np.asarray(y_true)
        _check_y_shape(y, "y_true")
        _same_length(y, probs)
        if y.size == 0:
            raise MetricError("no samples: y_true is empty")
        cm, bad = _kernels.confusion_from_probs(y.astype(np.int64, copy=False), probs, c)
        if bad:
            _labels(y, "y_true", c)  # raises, naming the bad labels
        return cm
    if pred.ndim != 1:
        raise MetricError(f"predictions have shape {pred.shape}; expected labels (n,) or probabilities (n, C)")
    y = np.asarray(y_true)
    if n_classes is None:
        if need_c:
            raise MetricError("all_classes needs the class count: pass n_classes or probabilities")
        _check_y_shape(y, "y_true")
        _check_y_shape(pred, "y_pred")
        if y.size == 0:
            raise MetricError("no samples: y_true is empty")
        n_classes = int(max(y.max(), pred.max())) + 1
    return confusion_matrix(y, pred, n_classes)


def _probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] == 0:
        raise MetricError(f"probabilities have shape {probs.shape}; expected (n_samples, n_classes)")
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float64)
    return probs


def _check_y_shape(y: np.ndarray, name: str) -> None:
    if y.ndim != 1:
        raise MetricError(f"{name} has shape {y.shape}; expected labels of shape (n_samples,)")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise MetricError(f"{name} has dtype {y.dtype}; labels are integer class indices (int64)")


def _labels(y: np.ndarray, name: str, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    _check_y_shape(y, name)
    if y.size == 0:
        raise MetricError(f"no samples: {name} is empty")
    y = y.astype(np.int64, copy=False)
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise MetricError(
            f"{name} holds labels outside 0..{n_classes - 1}: {preview(np.unique(y[bad]))} "
            f"(rows {preview(np.flatnonzero(bad))}); labels are class indices of the {n_classes} classes"
        )
    return y


def _same_length(y: np.ndarray, other: np.ndarray) -> None:
    if len(y) != len(other):
        raise MetricError(f"y_true has {len(y)} rows but the predictions have {len(other)}; give one per row")
