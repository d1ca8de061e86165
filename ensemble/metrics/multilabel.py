"""Multi-label metrics: a uint8 indicator matrix `y` (n, C) against sigmoid probabilities (n, C).

Each entry of `MULTILABEL_METRICS` equals scikit-learn on indicator matrices:

- `macro_f1`, `micro_f1`, `samples_f1`: `f1_score(y, probs > 0.5, average=..., zero_division=0)`
  on the decisions p > 0.5 (`ensemble.task.decisions`; tuned thresholds are moved to 0.5 in the
  tables). sklearn's conventions, kept exactly: a class's (macro) or a row's (samples) F1 is
  2 TP / (true + predicted), and 0 where it has neither true nor predicted positives; the macro
  average runs over all C classes and the samples average over all n rows, those included; micro
  is 2 ΣTP / (Σtrue + Σpredicted), 0 when nothing is true or predicted.
- `map`: `average_precision_score(y, probs, average="macro")`; `roc_auc`:
  `roc_auc_score(y, probs, average="macro")`; both averaged over the classes where the score is
  defined: AP over the classes with a positive row (sklearn scores a class without one 0), AUC
  over the classes with a positive and a negative row (sklearn: NaN). A fold, a nested fold or a
  bootstrap resample of a rare class hits this constantly; a score that no class defines raises
  MetricError.
- `log_loss`: the mean binary cross-entropy over the n·C cells, -(y log p + (1 - y) log(1 - p)),
  p clipped to [eps, 1 - eps] of its dtype as sklearn's `log_loss` clips (the mean of sklearn's
  per-column `log_loss`); its `row_losses` are each row's mean over the classes.

One class (C == 1) is scored as a class, where sklearn reads a one-column indicator as a binary
target (its macro F1 then also averages the F1 of the negatives).

All run vectorised over rows (a loop over classes at most): AUC and AP by one SIMD sort per class
and one compiled pass (`ensemble.metrics.ranking.class_ranking`), the F1s by column/row sums of
the 0/1 matrices, the log loss as a few logs of row products (one log per row for up to 19
classes in float64, 43 in float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ensemble import _kernels
from ensemble._registry import Registry
from ensemble.errors import MetricError, preview
from ensemble.metrics.base import Metric
from ensemble.metrics.classification import _probs
from ensemble.metrics.ranking import Ranked, class_ranking, column_sums
from ensemble.task import DEFAULT_THRESHOLD, MULTILABEL

__all__ = [
    "MULTILABEL_METRICS",
    "ClassMean",
    "LabelCountMetric",
    "bce_rows",
    "check_multilabel",
    "class_average_precision",
    "class_counts",
    "class_roc_auc",
    "class_scores",
    "row_counts",
]

_ROWS = 16384  # rows per block of the log loss: its float64 temporaries stay in cache


def check_multilabel(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one input check of the multi-label metrics.

    Args:
        y: 0/1 indicator matrix (n, C), any integer or bool dtype.
        probs: probabilities (n, C).

    Returns:
        (y as bool (n, C), probs as float32 or float64 (n, C)).

    Raises:
        MetricError: shapes differ, no rows, or `y` holds values other than 0 and 1.
    """
    probs = _probs(probs)
    y = np.asarray(y)
    if y.shape != probs.shape:
        raise MetricError(
            f"y_true has shape {y.shape} but the probabilities have shape {probs.shape}; multi-label labels "
            "are an indicator matrix of shape (n_samples, n_classes), one column per probability column"
        )
    if len(y) == 0:
        raise MetricError("no samples: y_true is empty")
    if y.dtype == np.bool_:
        return y, probs
    if not np.issubdtype(y.dtype, np.number):
        raise MetricError(f"y_true has dtype {y.dtype}; multi-label labels are a 0/1 indicator matrix (uint8)")
    if np.issubdtype(y.dtype, np.integer):
        binary = y.min() >= 0 and y.max() <= 1  # two reductions instead of two comparisons per cell
    else:
        binary = bool(((y == 0) | (y == 1)).all())
    if not binary:
        bad = np.unique(y[(y != 0) & (y != 1)])
        raise MetricError(
            f"y_true holds values other than 0 and 1 ({preview(bad)}); multi-label labels are a 0/1 "
            "indicator matrix (uint8), one column per class"
        )
    return (y.view(np.bool_) if y.dtype.itemsize == 1 and np.issubdtype(y.dtype, np.integer) else y != 0), probs


def class_counts(y: np.ndarray, decided: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, predicted and true counts, int64 (C,) each, of bool (n, C) matrices."""
    return column_sums(y & decided), column_sums(decided), column_sums(y)


def row_counts(y: np.ndarray, decided: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row true positives, predicted and true counts (n,) each, of bool (n, C) matrices."""
    return _row_sums(y & decided), _row_sums(decided), _row_sums(y)


def class_scores(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each class's ROC-AUC and average precision, float64 (C,) each, from one sort per class.

    AUC is NaN where the class lacks a positive or a negative row, AP where it has no positive row.

    Raises:
        MetricError: the inputs' shapes or values (`check_multilabel`), or NaN probabilities.
    """
    return class_ranking(*_checked_scores(y, probs))


def class_roc_auc(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each class's ROC-AUC (float64 (C,)), NaN where the class lacks positive or negative rows."""
    return class_scores(y, probs)[0]


def class_average_precision(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each class's average precision (float64 (C,)), NaN where the class has no positive row."""
    return class_scores(y, probs)[1]


def bce_rows(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each row's binary cross-entropy averaged over its classes, float64 (n,).

    p is clipped to [eps, 1 - eps] in its own dtype (sklearn's clip), then the logs are taken in
    float64 of products of up to `group` cells (never below 2**-1000, so never subnormal): one log
    per row and group instead of one per cell, and a rounding error of a few 1e-16.
    """
    y, probs = check_multilabel(y, probs)
    n, c = probs.shape
    eps = np.finfo(probs.dtype).eps
    lo, hi = probs.dtype.type(eps), probs.dtype.type(1) - probs.dtype.type(eps)
    group = max(1, int(1000 // -np.log2(eps)))  # 43 classes for float32, 19 for float64
    if _kernels.HAVE_NUMBA:
        return _bce_rows_nb(np.ascontiguousarray(y).view(np.uint8), probs, lo, hi, group)
    out = np.empty(n)
    for a in range(0, n, _ROWS):
        p = np.clip(probs[a : a + _ROWS], lo, hi).astype(np.float64)
        q = np.where(y[a : a + _ROWS], p, 1.0 - p)  # the probability of each cell's truth
        total = np.zeros(len(q))
        for g in range(0, c, group):
            total += np.log(_row_products(q[:, g : g + group]))
        out[a : a + _ROWS] = total
    return out / -c


# --- the registry entries --------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelCountMetric(Metric):
    """An F1 of the decisions p > 0.5 that is a function of per-class counts (`from_counts`).

    Threshold fits and bootstraps score candidates from counts without the probabilities.
    """

    argmax_only: bool = True
    task: str = MULTILABEL

    def from_counts(self, tp: np.ndarray, pc: np.ndarray, tc: np.ndarray) -> np.ndarray:
        """Scores of per-class counts (..., C) each, vectorised over the leading axes: float64 (...)."""
        raise NotImplementedError

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The decisions the counts are taken of: bool (n, C), p > 0.5."""
        return _decisions(np.asarray(probs))

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        y, probs = check_multilabel(y, probs)
        return float(self.from_counts(*class_counts(y, self.decide(probs))))


@dataclass(frozen=True)
class MacroF1(LabelCountMetric):
    """The mean over all C classes of 2 TP / (true + predicted), 0 for a class with neither."""

    threshold_sweep: ClassVar[str | None] = "macro_f1"

    def from_counts(self, tp: np.ndarray, pc: np.ndarray, tc: np.ndarray) -> np.ndarray:
        return _f1(tp, pc, tc).mean(axis=-1)


@dataclass(frozen=True)
class MicroF1(LabelCountMetric):
    """2 ΣTP / (Σtrue + Σpredicted) over every cell, 0 when nothing is true or predicted."""

    threshold_sweep: ClassVar[str | None] = "micro_f1"

    def from_counts(self, tp: np.ndarray, pc: np.ndarray, tc: np.ndarray) -> np.ndarray:
        return _f1(tp.sum(axis=-1), pc.sum(axis=-1), tc.sum(axis=-1))


@dataclass(frozen=True)
class SamplesF1(Metric):
    """The mean over all n rows of each row's 2 TP / (true + predicted), 0 for a row with neither: a row mean."""

    threshold_sweep: ClassVar[str | None] = "samples_f1"

    argmax_only: bool = True
    task: str = MULTILABEL

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        return float(self.row_losses(y, probs).mean())

    def row_losses(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
        y, probs = check_multilabel(y, probs)
        decided = _decisions(probs)
        if _kernels.HAVE_NUMBA:
            return _row_f1_nb(np.ascontiguousarray(y).view(np.uint8), decided.view(np.uint8))
        return _f1(*row_counts(y, decided))


@dataclass(frozen=True)
class ClassMean(Metric):
    """A per-class rank score (`class_scores` part 0: ROC-AUC, 1: average precision) averaged over the
    classes that define it; `ranked` and `from_ranked` score many row reweightings from one sort."""

    task: str = MULTILABEL
    part: int = 0
    undefined: str = ""  # the MetricError text when no class defines the score

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        return float(self._mean(class_scores(y, probs)[self.part][None])[0])

    def ranked(self, y: np.ndarray, probs: np.ndarray) -> Ranked:
        """Every class's rows sorted once, for `from_ranked` (checked as `score` checks)."""
        y, probs = _checked_scores(y, probs)
        return Ranked.of(y, probs)

    def from_ranked(self, ranked: Ranked, weights: np.ndarray) -> np.ndarray:
        """Scores under row weights (b, n) (a row of weight w counts w times), float64 (b,)."""
        return self._mean(ranked.weighted(weights)[self.part])

    def _mean(self, values: np.ndarray) -> np.ndarray:
        defined = ~np.isnan(values)  # (b, C)
        if not defined.any(axis=1).all():
            raise MetricError(self.undefined)
        return np.where(defined, values, 0.0).sum(axis=1) / defined.sum(axis=1)


@dataclass(frozen=True)
class BinaryLogLoss(Metric):
    """The mean binary cross-entropy over all cells; `row_losses`: each row's mean over its classes."""

    task: str = MULTILABEL

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        return float(self.row_losses(y, probs).mean())

    def row_losses(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return bce_rows(y, probs)


MULTILABEL_METRICS: Registry[Metric] = Registry("multi-label metric")
MULTILABEL_METRICS.add("macro_f1", MacroF1("macro_f1", higher_is_better=True))
MULTILABEL_METRICS.add("micro_f1", MicroF1("micro_f1", higher_is_better=True))
MULTILABEL_METRICS.add("samples_f1", SamplesF1("samples_f1", higher_is_better=True))
MULTILABEL_METRICS.add("map", ClassMean(
    "map", higher_is_better=True, part=1,
    undefined="average precision is undefined: no class has a positive row in y_true; score rows that hold "
    "some positive labels (a larger subset, or folds stratified by label)",
))
MULTILABEL_METRICS.add("roc_auc", ClassMean(
    "roc_auc", higher_is_better=True, part=0,
    undefined="ROC-AUC is undefined: no class has both a positive and a negative row in y_true; score more "
    "rows (a larger subset, or folds stratified by label)",
))
MULTILABEL_METRICS.add("log_loss", BinaryLogLoss("log_loss", higher_is_better=False))


# --- helpers ---------------------------------------------------------------------------------------


def _checked_scores(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, probs = check_multilabel(y, probs)
    if np.isnan(probs.min()):
        rows = np.flatnonzero(np.isnan(probs).any(axis=1))
        raise MetricError(f"probabilities hold NaN (rows {preview(rows)}); rank scores need finite probabilities")
    return y, probs


def _decisions(probs: np.ndarray) -> np.ndarray:
    # `ensemble.task.decisions` with the threshold as a Python float: a float32 table is compared
    # in float32 (exactly the same answer, 0.5 being exact) instead of being cast to float64 first
    return probs > DEFAULT_THRESHOLD


def _f1(tp: np.ndarray, pc: np.ndarray, tc: np.ndarray) -> np.ndarray:
    """2 tp / (pc + tc) elementwise, 0 where pc + tc is 0 (sklearn's zero_division=0), float64."""
    denom = np.asarray(pc + tc, dtype=np.float64)
    return np.divide(2.0 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)


if _kernels.NUMBA_INSTALLED:
    from numba import njit

    @njit(cache=True, nogil=True)
    def _row_f1_nb(y, decided):  # pragma: no cover - compiled
        # each row's 2 TP / (true + predicted), 0 where both are 0, in one pass (numpy: three row sums)
        n, c = y.shape
        out = np.zeros(n)
        for i in range(n):
            both = 0
            total = 0
            for j in range(c):
                both += y[i, j] & decided[i, j]
                total += y[i, j] + decided[i, j]
            if total:
                out[i] = 2.0 * both / total
        return out


    @njit(cache=True, nogil=True)
    def _bce_rows_nb(y, probs, lo, hi, group):  # pragma: no cover - compiled
        # `bce_rows` in one pass: clip in the dtype, product of each group's cells in float64, one log per group
        n, c = y.shape
        out = np.empty(n)
        for i in range(n):
            total = 0.0
            for start in range(0, c, group):
                prod = 1.0
                for j in range(start, min(c, start + group)):
                    q = np.float64(min(max(probs[i, j], lo), hi))
                    prod *= q if y[i, j] else 1.0 - q
                total += np.log(prod)
            out[i] = -total / c
        return out


def _row_products(q: np.ndarray) -> np.ndarray:
    """Row products of a float64 matrix (n, k), by halving the columns (vectorised, no per-row loop)."""
    while q.shape[1] > 1:
        half = q.shape[1] // 2
        head = q[:, :half] * q[:, half : 2 * half]
        if q.shape[1] % 2:
            head[:, 0] *= q[:, -1]
        q = head
    return q[:, 0]


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Row sums of a bool matrix (n, C), by halving the columns in small integers: int64 (n,)."""
    q = a.view(np.uint8) if a.shape[1] < 256 else a.astype(np.int64)
    while q.shape[1] > 1:
        half = q.shape[1] // 2
        head = q[:, :half] + q[:, half : 2 * half]
        if q.shape[1] % 2:
            head[:, 0] += q[:, -1]
        q = head
    return q[:, 0].astype(np.int64)
