"""ROC-AUC and average precision from probabilities, per class, by sorting once and counting.

For one class, AUC = P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney U,
ties counted half, which is the area under sklearn's ROC curve), and average precision (sklearn's
`average_precision_score`, the step integral of the precision-recall curve over its distinct
thresholds) is the mean over the positives of the precision at their score, (positives >= s) /
(rows >= s). Both are counts over the rows sorted by score, tied rows sharing one threshold.

`class_ranking` (the multi-label classes) sorts one integer key per cell: the score's bits shifted
left with the label in the low bit. For scores in [0, 2) (every probability) the bits of the
non-negative floats order as the floats do (-0.0 is made +0.0), so one SIMD sort of a class's keys
orders its rows by score, negatives first within a tie, and one pass over the sorted keys
(`_walk`: compiled, with a vectorised numpy twin) gives both scores exactly. Scores outside
[0, 2) are replaced by their dense ranks first (`np.unique`), which keeps every tie.

`roc_auc` (multiclass) equals `sklearn.metrics.roc_auc_score(y, probs, multi_class="ovr",
average="macro", labels=range(C))`, and for C == 2 `roc_auc_score(y, probs[:, 1])` (class 1 is the
positive), by two sorts and a merge count per class. Where sklearn returns NaN (a class absent
from `y_true` has no positives), this averages over the classes present in `y_true` instead:
folds, nested folds and bootstrap resamples of a rare class would otherwise poison every fit. A
truth with a single class has no AUC at all: MetricError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble import _kernels
from ensemble.errors import MetricError, preview
from ensemble.metrics.classification import _labels, _probs, _same_length

__all__ = ["Ranked", "auc_of_sorted", "binary_auc", "class_ranking", "column_sums", "roc_auc"]

_BLOCK = 4096  # rows transposed at once by the numpy key builder: the block stays in cache


def auc_of_sorted(neg: np.ndarray, pos: np.ndarray) -> float:
    """AUC of positives' scores `pos` against negatives' `neg`, both sorted ascending and non-empty."""
    below = np.searchsorted(neg, pos, side="left").sum(dtype=np.int64)
    at_or_below = np.searchsorted(neg, pos, side="right").sum(dtype=np.int64)
    return float((below + at_or_below) / (2.0 * len(pos) * len(neg)))


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """AUC of `scores` (n,) for the rows where `positive` (bool (n,)) holds against the others.

    Both groups must be non-empty (the caller checks: the result is 0/0 otherwise).
    """
    return auc_of_sorted(np.sort(scores[~positive]), np.sort(scores[positive]))


def class_ranking(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each class's ROC-AUC and average precision, float64 (C,) each.

    AUC is NaN for a class without a positive or without a negative row, AP for a class without a
    positive row (the caller decides what to average).

    Args:
        y: bool indicator matrix (n, C): row i is a positive of class j where y[i, j].
        scores: float32 or float64 scores (n, C), no NaN.
    """
    n, c = scores.shape
    keys = _keys(y, scores)
    auc, ap = np.full(c, np.nan), np.full(c, np.nan)
    walk = _walk_nb if _kernels.HAVE_NUMBA else _walk_np
    for j, n_pos in enumerate(column_sums(y).tolist()):
        row = np.sort(keys[j])
        if n_pos:
            auc2, ap_sum = walk(row, n_pos)
            ap[j] = ap_sum / n_pos
            if n_pos < n:
                auc[j] = auc2 / (2.0 * n_pos * (n - n_pos))
    return auc, ap


@dataclass(frozen=True)
class Ranked:
    """Each class's rows in score order, to score many reweightings of the rows (bootstrap resamples)
    without sorting again: a resample is the weight of each row, how often it was drawn.

    Attributes:
        keys: per class, the sorted keys (score bits or rank times 2, plus the label), int (n,).
        order: per class, the rows in that order, int64 (n,).
    """

    keys: list[np.ndarray]
    order: list[np.ndarray]

    @classmethod
    def of(cls, y: np.ndarray, scores: np.ndarray) -> Ranked:
        """Sort the rows of every class of `y` (bool (n, C)) by `scores` (float (n, C), no NaN)."""
        keys = _keys(y, scores)
        orders = [np.argsort(k, kind="stable") for k in keys]
        return cls([k[o] for k, o in zip(keys, orders)], orders)

    def weighted(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ROC-AUC and average precision of every class under row weights (b, n): float64 (b, C) each.

        A row of weight w counts as w copies of it (ties as in `class_ranking`); NaN where a
        class has no weighted positive (AP, AUC) or no weighted negative (AUC).
        """
        weights = np.asarray(weights)
        exact = np.float32 if weights.max(initial=0) < 2**24 else np.float64  # half the memory the walk reads
        wt = np.ascontiguousarray(weights.T, dtype=exact)  # (n, b): a row's weights in every resample side by side
        walk = _weighted_walk_nb if _kernels.HAVE_NUMBA else _weighted_walk_np
        c = len(self.keys)
        if _kernels.threads() > 1 and c > 1:  # classes are independent and the compiled walk frees the GIL
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(c, _kernels.threads())) as pool:
                parts = list(pool.map(lambda j: walk(self.keys[j], self.order[j], wt), range(c)))
        else:
            parts = [walk(self.keys[j], self.order[j], wt) for j in range(c)]
        return np.stack([a for a, _ in parts], axis=1), np.stack([p for _, p in parts], axis=1)


def column_sums(a: np.ndarray) -> np.ndarray:
    """int64 (C,) column sums of a 0/1 matrix (n, C), bool or uint8.

    `a.sum(axis=0)` runs a C-element inner loop per row; folding blocks of rows into one long row
    first lets numpy add ~4,096 elements at a time (~5x faster at 1M x 20).
    """
    n, c = a.shape
    m = max(1, 4096 // c)
    k = n // m * m
    a = a.view(np.uint8)
    acc = a[:k].reshape(-1, m * c).sum(axis=0, dtype=np.uint32 if n < 2**32 else np.uint64)
    return acc.reshape(m, c).sum(axis=0, dtype=np.int64) + a[k:].sum(axis=0, dtype=np.int64)


def _keys(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Sort keys (C, n): each score's bits (or dense rank, for scores outside [0, 2)) times 2 plus the label."""
    n, c = scores.shape
    if not (scores.min() >= 0 and scores.max() < 2):  # ranks keep the order and every tie of any floats
        ranks = np.stack([np.unique(scores[:, j], return_inverse=True)[1].ravel() for j in range(c)])  # (C, n)
        return (ranks << 1) | y.T.astype(np.int64)
    itype = np.int32 if scores.dtype == np.float32 else np.int64
    bits = np.ascontiguousarray(scores).view(itype)
    mask = itype(np.iinfo(itype).max)  # clears the sign bit: -0.0 becomes +0.0, the only negative >= 0
    out = np.empty((c, n), dtype=itype)
    flags = np.ascontiguousarray(y).view(np.uint8)
    if _kernels.HAVE_NUMBA:
        _keys_nb(bits, flags, mask, out)
        return out
    for a in range(0, n, _BLOCK):
        out[:, a : a + _BLOCK] = (((bits[a : a + _BLOCK] & mask) << 1) | flags[a : a + _BLOCK]).T
    return out


def _walk_np(row: np.ndarray, n_pos: int) -> tuple[float, float]:
    """(2 * AUC * P * N, AP * P) of one class's sorted keys, by groups of tied scores (numpy twin of `_walk_nb`)."""
    score, label = row >> 1, (row & 1).astype(bool)
    start = np.ones(len(row), dtype=bool)
    start[1:] = score[1:] != score[:-1]
    group = np.cumsum(start) - 1
    pos = np.bincount(group, weights=label)  # positives per tie group, ascending score
    neg = np.bincount(group) - pos
    neg_below = np.cumsum(neg) - neg
    pos_at_or_above = n_pos - (np.cumsum(pos) - pos)
    neg_at_or_above = (len(row) - n_pos) - neg_below
    auc2 = float(np.dot(pos, 2 * neg_below + neg))
    hit = pos > 0
    ap_sum = float(np.sum(pos[hit] * (pos_at_or_above[hit] / (pos_at_or_above[hit] + neg_at_or_above[hit]))))
    return auc2, ap_sum


def _weighted_walk_np(keys: np.ndarray, order: np.ndarray, wt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUC (b,), AP (b,)) of one class's sorted keys under row weights wt (n, b) (numpy twin of `_weighted_walk_nb`)."""
    score, label = keys >> 1, (keys & 1).astype(bool)
    start = np.ones(len(keys), dtype=bool)
    start[1:] = score[1:] != score[:-1]
    at = np.flatnonzero(start)
    w = wt[order].astype(np.float64)  # (n, b) in score order, summed in float64 as the compiled walk does
    pos = np.add.reduceat(w * label[:, None], at, axis=0)[::-1]  # (G, b) per tie group, descending score
    neg = np.add.reduceat(w * ~label[:, None], at, axis=0)[::-1]
    pos_ge, neg_ge = np.cumsum(pos, axis=0), np.cumsum(neg, axis=0)
    n_pos, n_neg = pos_ge[-1], neg_ge[-1]
    s = np.sum(pos * (2.0 * neg_ge - neg), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.sum(np.where(pos > 0, pos * (pos_ge / (pos_ge + neg_ge)), 0.0), axis=0) / n_pos
        auc = (2.0 * n_pos * n_neg - s) / (2.0 * n_pos * n_neg)
    return np.where(n_pos * n_neg > 0, auc, np.nan), np.where(n_pos > 0, ap, np.nan)


if _kernels.NUMBA_INSTALLED:
    from numba import njit

    @njit(cache=True, nogil=True)
    def _keys_nb(bits, flags, mask, out):  # pragma: no cover - compiled
        n, c = bits.shape
        for i in range(n):
            for j in range(c):
                out[j, i] = ((bits[i, j] & mask) << 1) | flags[i, j]

    @njit(cache=True, nogil=True)
    def _walk_nb(row, n_pos):  # pragma: no cover - compiled
        n = len(row)
        n_neg = n - n_pos
        auc2 = 0.0
        ap_sum = 0.0
        pos_below = 0
        neg_below = 0
        i = 0
        while i < n:
            score = row[i] >> 1
            pos = 0
            neg = 0
            while i < n and (row[i] >> 1) == score:
                if row[i] & 1:
                    pos += 1
                else:
                    neg += 1
                i += 1
            if pos:
                auc2 += pos * (2.0 * neg_below + neg)
                at_or_above = n_pos - pos_below
                ap_sum += pos * (at_or_above / (at_or_above + n_neg - neg_below))
            pos_below += pos
            neg_below += neg
        return auc2, ap_sum

    @njit(cache=True, nogil=True)
    def _weighted_walk_nb(keys, order, wt):  # pragma: no cover - compiled
        # From the top score down, every resample side by side. Within a tie group the positives come
        # first (descending), so the negatives seen when its first positive arrives are those above it:
        # AUC = 1 - sum(pos * (neg_above + neg_at_or_above)) / (2 P N), AP as in `_walk_nb`.
        n, b = wt.shape
        pos_ge = np.zeros(b)
        neg_ge = np.zeros(b)
        above = np.zeros(b)
        s = np.zeros(b)
        ap_sum = np.zeros(b)
        pos = np.zeros(b)
        i = n - 1
        while i >= 0:
            score = keys[i] >> 1
            has_pos = False
            while i >= 0 and (keys[i] >> 1) == score:
                row = order[i]
                if keys[i] & 1:
                    if not has_pos:
                        for r in range(b):
                            pos[r] = 0.0
                            above[r] = neg_ge[r]
                        has_pos = True
                    for r in range(b):
                        pos[r] += wt[row, r]
                else:
                    for r in range(b):
                        neg_ge[r] += wt[row, r]
                i -= 1
            if has_pos:
                for r in range(b):
                    if pos[r] > 0:
                        pos_ge[r] += pos[r]
                        s[r] += pos[r] * (above[r] + neg_ge[r])
                        ap_sum[r] += pos[r] * (pos_ge[r] / (pos_ge[r] + neg_ge[r]))
        auc = np.full(b, np.nan)
        ap = np.full(b, np.nan)
        for r in range(b):
            if pos_ge[r] > 0:
                ap[r] = ap_sum[r] / pos_ge[r]
                if neg_ge[r] > 0:
                    auc[r] = (2.0 * pos_ge[r] * neg_ge[r] - s[r]) / (2.0 * pos_ge[r] * neg_ge[r])
        return auc, ap


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
