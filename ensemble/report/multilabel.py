"""Per-class scores of a multi-label model: ranking quality (AUC, AP), F1 at 0.5 and at the best
threshold, how often each class is true and predicted, and label cardinality.

Everything comes from one sort per class column (vectorised over a block of columns): walking the
rows by falling probability, the cumulative true and false positives at each distinct value give the
ROC curve (AUC by the trapezoid rule, ties counted half, as `sklearn.metrics.roc_auc_score`), the
precision-recall steps (AP as `sklearn.metrics.average_precision_score`), and the F1 of every
threshold that changes a decision (the best of them, in-sample).

A class is predicted when its probability is strictly above the threshold (`ensemble.task.decisions`);
the best threshold reported for a class is the largest probability left unpredicted (0 when every
row is predicted), so `p > t` reproduces its F1 in any float precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ensemble.metrics import PerClass
from ensemble.metrics.multilabel import bce_rows
from ensemble.task import DEFAULT_THRESHOLD, decisions

# cells sorted at once: bounds the working arrays (about ten float64/int64 copies) to ~160 MB
_BLOCK_CELLS = 1 << 21
BEST_THRESHOLD_NOTE = (
    "in-sample: each class's threshold is fitted on the very rows it is scored on, so its F1 is optimistic; "
    "`ens blend --tune-thresholds` fits them nested"
)
MULTILABEL_F1_NOTE = (
    "macro-F1 at p > 0.5 over all classes (sklearn f1_score(average='macro') on indicator matrices; "
    "a class with no positives, true or predicted, scores 0)"
)


@dataclass(frozen=True)
class LabelStats:
    """Per-class scores of one multi-label model, each of shape (C,).

    Attributes:
        auc: ROC-AUC of each class (NaN where the class has no positives or no negatives).
        ap: average precision of each class (NaN where it has no positives).
        at_threshold: precision, recall, F1 and support (positives) at p > `threshold`.
        best_f1: the best F1 over thresholds, fitted in-sample (`BEST_THRESHOLD_NOTE`).
        best_threshold: a threshold reaching it (the largest probability left unpredicted).
        positive_rate: share of rows where the class is true.
        predicted_rate: share of rows where it is predicted at `threshold`.
        cardinality_true: mean number of true classes per row.
        cardinality_pred: mean number of predicted classes per row at `threshold`.
        threshold: the decision threshold of the "at" columns (0.5).
    """

    auc: np.ndarray
    ap: np.ndarray
    at_threshold: PerClass
    best_f1: np.ndarray
    best_threshold: np.ndarray
    positive_rate: np.ndarray
    predicted_rate: np.ndarray
    cardinality_true: float
    cardinality_pred: float
    threshold: float = DEFAULT_THRESHOLD

    @property
    def f1(self) -> np.ndarray:
        """F1 of each class at `threshold`."""
        return self.at_threshold.f1

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "auc": _nulls(self.auc), "ap": _nulls(self.ap),
            **{f"{k}_at_threshold": v for k, v in self.at_threshold.to_dict().items()},
            "best_f1": self.best_f1.tolist(), "best_threshold": self.best_threshold.tolist(),
            "best_threshold_note": BEST_THRESHOLD_NOTE,
            "positive_rate": self.positive_rate.tolist(), "predicted_rate": self.predicted_rate.tolist(),
            "cardinality": {"true": self.cardinality_true, "predicted": self.cardinality_pred},
        }


def label_stats(y: np.ndarray, probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> LabelStats:
    """Per-class scores of multi-label probabilities.

    Args:
        y: uint8 indicator matrix of shape (n_samples, n_classes).
        probs: probabilities of shape (n_samples, n_classes), rows aligned with `y`.
        threshold: the decision threshold of the F1, rates and predicted cardinality.
    """
    y = np.asarray(y, dtype=bool)
    probs = np.asarray(probs)
    n, c = y.shape
    dec = decisions(probs, threshold)
    tp, pred, true = (dec & y).sum(axis=0), dec.sum(axis=0), y.sum(axis=0)
    zeros = np.zeros(c)
    at = PerClass(
        precision=np.divide(tp, pred, out=zeros.copy(), where=pred > 0),
        recall=np.divide(tp, true, out=zeros.copy(), where=true > 0),
        f1=np.divide(2.0 * tp, pred + true, out=zeros.copy(), where=pred + true > 0),
        support=true.astype(np.int64),
    )
    auc, ap, best_f1, best_t = (np.empty(c) for _ in range(4))
    step = max(1, _BLOCK_CELLS // max(n, 1))
    for lo in range(0, c, step):
        cols = slice(lo, lo + step)
        auc[cols], ap[cols], best_f1[cols], best_t[cols] = _ranked(y[:, cols], probs[:, cols])
    return LabelStats(
        auc=auc, ap=ap, at_threshold=at, best_f1=best_f1, best_threshold=best_t,
        positive_rate=true / n, predicted_rate=pred / n,
        cardinality_true=float(true.sum() / n), cardinality_pred=float(pred.sum() / n), threshold=float(threshold),
    )


def _ranked(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AUC, AP, best F1 and its threshold of each column of a block (y bool (n, B), probs (n, B))."""
    n = len(y)
    yt, pt = np.ascontiguousarray(y.T), np.ascontiguousarray(probs.T)  # (B, n): each class one contiguous sort
    # rising probability, read backwards: the order within ties is free (only each run's end counts)
    order = np.argsort(pt, axis=1)[:, ::-1]
    p = np.take_along_axis(pt, order, axis=1).astype(np.float64)  # (B, n), falling
    tps = np.cumsum(np.take_along_axis(yt, order, axis=1), axis=1, dtype=np.int64)  # true positives down to i
    fps = np.arange(1, n + 1) - tps
    # a decision can only change between distinct values: keep the last row of each run of ties
    last = np.ones_like(p, dtype=bool)
    last[:, :-1] = p[:, :-1] != p[:, 1:]
    pos, neg = tps[:, -1].astype(np.float64), fps[:, -1].astype(np.float64)
    # each kept row's predecessor on the curve: the previous kept row's counts (counts only grow, so a running max)
    prev_tp = np.zeros_like(tps)
    prev_fp = np.zeros_like(fps)
    prev_tp[:, 1:] = np.maximum.accumulate(np.where(last, tps, 0), axis=1)[:, :-1]
    prev_fp[:, 1:] = np.maximum.accumulate(np.where(last, fps, 0), axis=1)[:, :-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(last, (fps - prev_fp) * (tps + prev_tp), 0).sum(axis=1) / (2.0 * pos * neg)
        ap = np.where(last, (tps - prev_tp) * (tps / (tps + fps)), 0).sum(axis=1) / pos
        f1 = np.where(last, 2.0 * tps / (pos[:, None] + tps + fps), -1.0)  # predicting the rows down to i
    auc[(pos == 0) | (neg == 0)] = np.nan
    ap[pos == 0] = np.nan
    # the threshold of row i: the next distinct value below (0 past the end); unreachable when that is p itself
    below = np.zeros_like(p)
    below[:, :-1] = p[:, 1:]
    f1[~last | (below >= p)] = -1.0  # `below >= p`: every row predicted needs t < min p, impossible at p == 0
    k = np.argmax(f1, axis=1)  # the first best: the highest threshold, fewest predicted
    rows = np.arange(len(p))
    best = f1[rows, k]
    none = best <= 0  # nothing beats predicting no row (no positives): F1 0 at t = the largest probability
    return auc, ap, np.where(none, 0.0, best), np.where(none, p[:, 0], below[rows, k])


def _nulls(a: np.ndarray) -> list[float | None]:
    """A float array as a JSON list, NaN (undefined) as null."""
    return [None if np.isnan(v) else float(v) for v in a]


def usual_scores(y: np.ndarray, probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> tuple[float, float, float]:
    """The usual scores beside the report's metric, for multi-label probabilities.

    Returns:
        macro-F1 at p > `threshold` over all classes (`MULTILABEL_F1_NOTE`), subset accuracy (rows whose
        whole set of classes is right: sklearn `accuracy_score` on indicator matrices), and the mean
        binary cross-entropy over all cells (the multi-label `log_loss`, `ensemble.metrics.multilabel.bce_rows`).
    """
    y = np.asarray(y, dtype=bool)
    dec = decisions(probs, threshold)
    tp, pred, true = (dec & y).sum(axis=0), dec.sum(axis=0), y.sum(axis=0)
    f1 = np.divide(2.0 * tp, pred + true, out=np.zeros(len(tp)), where=pred + true > 0)
    return float(f1.mean()), float((dec == y).all(axis=1).mean()), float(bce_rows(y, probs).mean())


@dataclass(frozen=True)
class ThresholdCurve:
    """Macro- and micro-F1 of one model when every class is decided at one global threshold.

    Attributes:
        model: the model scored.
        thresholds: the global thresholds, increasing.
        macro_f1, micro_f1: the F1s at each threshold (p > t), same shape.
    """

    model: str
    thresholds: np.ndarray
    macro_f1: np.ndarray
    micro_f1: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "thresholds": self.thresholds.tolist(), "macro_f1": self.macro_f1.tolist(),
                "micro_f1": self.micro_f1.tolist()}


def threshold_curve(model: str, y: np.ndarray, probs: np.ndarray, grid: np.ndarray | None = None) -> ThresholdCurve:
    """F1 against one global threshold (default 0.01, 0.02, ..., 0.99), from one sort per class."""
    grid = np.round(np.arange(1, 100) / 100, 2) if grid is None else np.asarray(grid, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    probs = np.asarray(probs)
    c = y.shape[1]
    tp, pred = np.empty((len(grid), c)), np.empty((len(grid), c))
    for j in range(c):  # counts above each threshold: two binary searches per class
        col = probs[:, j].astype(np.float64)
        every, positives = np.sort(col), np.sort(col[y[:, j]])
        pred[:, j] = len(every) - np.searchsorted(every, grid, side="right")
        tp[:, j] = len(positives) - np.searchsorted(positives, grid, side="right")
    true = y.sum(axis=0)
    denom = pred + true
    macro = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean(axis=1)
    micro_d = denom.sum(axis=1)
    micro = np.divide(2 * tp.sum(axis=1), micro_d, out=np.zeros(len(grid)), where=micro_d > 0)
    return ThresholdCurve(model, grid, macro, micro)
