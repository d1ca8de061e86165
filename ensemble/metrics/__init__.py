"""Metrics: the `Metric` shape every consumer relies on, the built-in registry `METRICS`, and the
functions behind it (sklearn-exact macro-F1, confusion matrices, per-class scores, QWK, ROC-AUC).

Names load on first access: `ensemble.metrics.base` (the `Metric` shape, imported by the CLI's
modules for their choices) must not pull the compiled kernels (numba) in with it.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the submodule of ensemble.metrics that defines it
_LAZY = {
    "Metric": "base",
    **dict.fromkeys(("METRICS", "ConfusionMetric", "CountMetric", "get_metric", "registry"), "builtin"),
    "MULTILABEL_METRICS": "multilabel",
    **dict.fromkeys(
        (
            "PerClass", "accuracy", "argmax", "confusion_matrix", "f1_from_confusion", "f1_from_counts", "log_loss",
            "macro_f1", "per_class", "per_class_from_confusion", "row_log_loss", "top_confused",
        ),
        "classification",
    ),
    "qwk": "kappa", "qwk_from_confusion": "kappa",
    "binary_auc": "ranking", "roc_auc": "ranking",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"ensemble.metrics.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ensemble.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
