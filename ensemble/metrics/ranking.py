"""ROC-AUC from probabilities: one-vs-rest per class, by two sorts and a merge count per class.

For one class, AUC = P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney U,
ties counted half, which is the area under sklearn's ROC curve). Sorting the positives' and the
negatives' scores apart and counting, for each positive, the negatives below and at its score
(`np.searchsorted` left/right) gives it exactly in integers; numpy's SIMD sorts make this ~20x
faster than sklearn's `roc_curve` per class.

Equal to `sklearn.metrics.roc_auc_score(y, probs, multi_class="ovr", average="macro",
labels=range(C))`, and for C == 2 to `roc_auc_score(y, probs[:, 1])` (class 1 is the positive).
Where sklearn returns NaN (a class absent from `y_true` has no positives), this averages over the
classes present in `y_true` instead: folds, nested folds and bootstrap resamples of a rare class
would otherwise poison every fit. A truth with a single class has no AUC at all: MetricError.
"""

from __future__ import annotations

import numpy as np

from ensemble.errors import MetricError, preview
from ensemble.metrics.classification import _labels, _probs, _same_length

__all__ = ["binary_auc", "roc_auc"]


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """AUC of `scores` (n,) for the rows where `positive` (bool (n,)) holds against the others.

    Both groups must be non-empty (the caller checks: the result is 0/0 otherwise).
    """
    pos = np.sort(scores[positive])
    neg = np.sort(scores[~positive])
    below = np.searchsorted(neg, pos, side="left").sum(dtype=np.int64)
    at_or_below = np.searchsorted(neg, pos, side="right").sum(dtype=np.int64)
    return float((below + at_or_below) / (2.0 * len(pos) * len(neg)))


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC over the classes present in `y_true`; for C == 2, class 1's AUC.

    Args:
        y_true: int labels in 0..C-1, shape (n,).
        probs: probabilities or scores of shape (n, C), C >= 2.

    Raises:
        MetricError: fewer than 2 columns, labels outside 0..C-1, or a single class in `y_true`.
    """
    probs = _probs(probs)
    c = probs.shape[1]
    if c < 2:
        raise MetricError(f"ROC-AUC needs scores of at least 2 classes; the probabilities have {c} column")
    y = _labels(y_true, "y_true", c)
    _same_length(y, probs)
    support = np.bincount(y, minlength=c)
    scored = np.flatnonzero((support > 0) & (support < len(y)))
    if len(scored) == 0:
        raise MetricError(
            f"ROC-AUC is undefined: every row of y_true is class {preview([y[0]])}; "
            "score rows of at least two classes (a larger subset, or group the folds by class)"
        )
    if c == 2:
        return binary_auc(y == 1, probs[:, 1])
    cols = np.ascontiguousarray(probs.T)  # (C, n): one contiguous read per class
    return float(np.mean([binary_auc(y == j, cols[j]) for j in scored]))
