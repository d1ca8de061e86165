"""Quadratic weighted kappa (QWK), the agreement metric of ordinal competitions (APTOS, PANDA).

Equal to `sklearn.metrics.cohen_kappa_score(y, pred, weights="quadratic", labels=range(C))`: the
classes are ordered by their index, and a miss by d classes costs d**2. It is undefined when the
expected disagreement is 0 (truth and prediction both a single, same class); sklearn then returns
its `replace_undefined_by` default, NaN, and so does this (a finite stand-in would rank a trivial
subset as perfect or as chance without saying so).
"""

from __future__ import annotations

import numpy as np

from ensemble.metrics.classification import _confusion

__all__ = ["qwk", "qwk_from_confusion"]


def qwk_from_confusion(cm: np.ndarray) -> np.ndarray:
    """QWK of confusion matrices, vectorised over leading axes.

    Args:
        cm: counts of shape (..., C, C), rows the truth, columns the prediction.

    Returns:
        float64 of shape (...); NaN where the expected disagreement is 0.
    """
    cm = np.asarray(cm, dtype=np.float64)
    c = cm.shape[-1]
    ranks = np.arange(c, dtype=np.float64)
    w = (ranks[:, None] - ranks[None, :]) ** 2  # (C, C)
    true, pred = cm.sum(axis=-1), cm.sum(axis=-2)  # (..., C)
    n = true.sum(axis=-1)
    observed = np.einsum("...ij,ij->...", cm, w)
    expected = np.divide(np.einsum("...i,ij,...j->...", true, w, pred), n, out=np.zeros(n.shape), where=n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1.0 - observed / expected, np.nan)


def qwk(y_true: np.ndarray, y_pred_or_proba: np.ndarray, *, n_classes: int | None = None) -> float:
    """Quadratic weighted kappa of labels (n,) or the argmax of probabilities (n, C) against `y_true`.

    Args:
        y_true: int labels in 0..C-1, shape (n,).
        y_pred_or_proba: int predicted labels (n,), or probabilities (n, C) whose row argmax is the prediction.
        n_classes: C; taken from the probabilities, else from the largest label (empty classes
            beyond it change nothing).

    Raises:
        MetricError: lengths differ or labels outside 0..C-1.
    """
    return float(qwk_from_confusion(_confusion(y_true, y_pred_or_proba, n_classes, False)))
