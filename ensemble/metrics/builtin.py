"""The built-in metrics: one registry entry per score, each with its direction and capabilities.

Every entry equals scikit-learn (see each class) and runs in one pass over the probabilities where
possible: argmax metrics from the fused argmax + confusion kernel, log loss from one compiled
gather, ROC-AUC from two sorts per class. Consumers pick fast paths by capability, never by name:

- `ConfusionMetric`s are functions of the confusion matrix (`from_confusion`, vectorised over
  resamples); `CountMetric`s, of its diagonal and margins only (`count_code`, compiled).
- `row_losses` is given where the score is a mean of per-row values (log loss, accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble import _kernels
from ensemble._registry import Registry
from ensemble.metrics.base import Metric
from ensemble.metrics.classification import _confusion, argmax, row_log_loss
from ensemble.metrics.kappa import qwk_from_confusion
from ensemble.metrics.ranking import roc_auc

__all__ = ["METRICS", "ConfusionMetric", "CountMetric", "get_metric", "registry"]


@dataclass(frozen=True)
class ConfusionMetric(Metric):
    """An argmax metric that is a function of the (C, C) confusion matrix (rows truth, columns prediction)."""

    argmax_only: bool = True

    def from_confusion(self, cm: np.ndarray) -> np.ndarray:
        """Scores of int confusion matrices (..., C, C), float64 (...)."""
        raise NotImplementedError

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        return float(self.from_confusion(_confusion(y, probs, None, False)))


@dataclass(frozen=True)
class CountMetric(ConfusionMetric):
    """A function of per-class true positives, predicted and true counts: `count_metric(tp, pc, tc, code)`."""

    def from_confusion(self, cm: np.ndarray) -> np.ndarray:
        cm = np.asarray(cm)
        tp = np.diagonal(cm, axis1=-2, axis2=-1)
        return _kernels.count_metric_np(tp, cm.sum(axis=-2), cm.sum(axis=-1), self.count_code)


@dataclass(frozen=True)
class Accuracy(CountMetric):
    """Accuracy, also a mean of per-row hits (what a weighted bootstrap or a per-row fit uses)."""

    def row_losses(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return (argmax(probs) == y).astype(np.float64)


@dataclass(frozen=True)
class QWK(ConfusionMetric):
    """Quadratic weighted kappa on the class-index order (`ensemble.metrics.kappa`)."""

    def from_confusion(self, cm: np.ndarray) -> np.ndarray:
        return qwk_from_confusion(cm)


@dataclass(frozen=True)
class LogLoss(Metric):
    """Mean cross-entropy, as `sklearn.metrics.log_loss(y, probs, labels=range(C))` (clipped to the dtype's eps).

    sklearn computes a float32 input in float32; this takes the logs in float64, so the two agree
    to float32 precision (~1e-7 relative).
    """

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        return float(self.row_losses(y, probs).mean())

    def row_losses(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return row_log_loss(y, probs)


@dataclass(frozen=True)
class RocAuc(Metric):
    """Macro one-vs-rest ROC-AUC; for two classes, class 1's (`ensemble.metrics.ranking`)."""

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        return roc_auc(y, probs)


def _count(name: str, cls: type[CountMetric] = CountMetric) -> CountMetric:
    return cls(name, higher_is_better=True, argmax_only=True, count_code=_kernels.COUNT_METRICS[name])


METRICS: Registry[Metric] = Registry("metric")
for _name in ("macro_f1", "macro_f1_all", "micro_f1", "weighted_f1", "balanced_accuracy"):
    METRICS.add(_name, _count(_name))
METRICS.add("accuracy", _count("accuracy", Accuracy))
METRICS.add("qwk", QWK("qwk", higher_is_better=True))
METRICS.add("log_loss", LogLoss("log_loss", higher_is_better=False))
METRICS.add("roc_auc", RocAuc("roc_auc", higher_is_better=True))


def registry(task: str = "multiclass") -> Registry[Metric]:
    """The built-in metrics of a task: `METRICS` (multiclass) or `ensemble.metrics.multilabel.MULTILABEL_METRICS`."""
    if task == "multilabel":
        from ensemble.metrics.multilabel import MULTILABEL_METRICS

        return MULTILABEL_METRICS
    return METRICS


def get_metric(name_or_metric: str | Metric, task: str = "multiclass") -> Metric:
    """The registry entry of a name for a task; a `Metric` passes through unchanged.

    Raises:
        UnknownNameError: the name is not a built-in of the task (the message lists the choices).
    """
    if isinstance(name_or_metric, Metric):
        return name_or_metric
    return registry(task).get(name_or_metric)
