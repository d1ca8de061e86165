"""Metrics: the `Metric` shape every consumer relies on, the built-in registry, and the classification
helpers (sklearn-exact macro-F1, confusion matrices, per-class scores)."""

from ensemble.metrics.base import Metric
from ensemble.metrics.classification import (
    METRICS,
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
    top_confused,
)

__all__ = [
    "METRICS", "Metric", "PerClass", "accuracy", "argmax", "confusion_matrix", "f1_from_confusion",
    "f1_from_counts", "log_loss", "macro_f1", "per_class", "per_class_from_confusion", "top_confused",
]
