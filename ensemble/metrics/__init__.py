"""Metrics: the `Metric` shape every consumer relies on, the built-in registry `METRICS`, and the
functions behind it (sklearn-exact macro-F1, confusion matrices, per-class scores, QWK, ROC-AUC)."""

from ensemble.metrics.base import Metric
from ensemble.metrics.builtin import METRICS, ConfusionMetric, CountMetric, get_metric
from ensemble.metrics.classification import (
    PerClass,
    accuracy,
    argmax,
    confusion_matrix,
    f1_from_confusion,
    f1_from_counts,
    log_loss,
    macro_f1,
    per_class,
    per_class_from_confusion,
    row_log_loss,
    top_confused,
)
from ensemble.metrics.kappa import qwk, qwk_from_confusion
from ensemble.metrics.ranking import binary_auc, roc_auc

__all__ = [
    "METRICS", "ConfusionMetric", "CountMetric", "Metric", "PerClass", "accuracy", "argmax",
    "binary_auc", "confusion_matrix", "f1_from_confusion", "f1_from_counts", "get_metric", "log_loss", "macro_f1",
    "per_class", "per_class_from_confusion", "qwk", "qwk_from_confusion", "roc_auc", "row_log_loss", "top_confused",
]
