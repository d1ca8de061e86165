"""How each task scores a model beside the report's metric, and what the report keeps of the focus model.

- multiclass: argmax predictions: macro-F1, accuracy, cross-entropy, per-class F1, the confusion
  matrix and its top confused pairs, argmax agreement between models;
- multilabel: decisions p > 0.5: macro-F1, subset accuracy, mean binary cross-entropy, per-class
  `LabelStats`, the F1 against a global threshold, agreement over (row, class) cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ensemble.metrics import (
    argmax,
    f1_from_confusion,
    log_loss,
    per_class_from_confusion,
    top_confused,
)
from ensemble.report.multilabel import (
    LabelStats,
    label_stats,
    threshold_curve,
    usual_scores,
)
from ensemble.report.similarity import argmax_agreement
from ensemble.tables import PredTable
from ensemble.task import MULTICLASS, MULTILABEL, decisions

Usual = tuple[float, float, float, np.ndarray, LabelStats | None]


@dataclass(frozen=True)
class TaskScoring:
    """How a task scores a model beside the metric (`score`), and what the report keeps of the focus model
    and of the tables' agreement (`focus(tables, y, name, usual, confusion, probs, top_k)`: Report fields)."""

    score: Callable[[np.ndarray, np.ndarray, int, bool], tuple[Usual, np.ndarray | None]]
    focus: Callable[[list[PredTable], np.ndarray, str, Usual, np.ndarray | None, np.ndarray, int], dict[str, Any]]
    all_classes: bool  # whether `--all-classes` (macro-F1 over absent classes too) is a choice: multi-label always is


def _multiclass(y: np.ndarray, probs: np.ndarray, c: int, all_classes: bool) -> tuple[Usual, np.ndarray]:
    """Macro-F1, accuracy, cross-entropy and per-class F1 of argmax predictions, and their confusion matrix."""
    cm = np.bincount(y * c + argmax(probs), minlength=c * c).reshape(c, c)
    usual = (f1_from_confusion(cm, all_classes=all_classes), float(np.trace(cm) / len(y)), log_loss(y, probs),
             per_class_from_confusion(cm).f1, None)
    return usual, cm


def _multiclass_focus(
    tables: list[PredTable], y: np.ndarray, name: str, usual: Usual, cm: np.ndarray, probs: np.ndarray, top_k: int
) -> dict[str, Any]:
    preds = np.stack([argmax(t.probs) for t in tables])
    return dict(per_class=per_class_from_confusion(cm), confusion=cm, top_confused=top_confused(cm, top_k),
                agreement=argmax_agreement(preds))


def _multilabel(y: np.ndarray, probs: np.ndarray, c: int, all_classes: bool) -> tuple[Usual, None]:
    """Macro-F1 at 0.5, subset accuracy, mean binary cross-entropy, per-class F1 at 0.5 and `LabelStats`."""
    stats = label_stats(y, probs)
    f1, acc, ll = usual_scores(y, probs)
    return (f1, acc, ll, stats.f1, stats), None


def _multilabel_focus(
    tables: list[PredTable], y: np.ndarray, name: str, usual: Usual, cm: None, probs: np.ndarray, top_k: int
) -> dict[str, Any]:
    """No confusion between classes; agreement over the decisions of every (row, class) cell."""
    cells = np.stack([decisions(t.probs).ravel() for t in tables])
    return dict(per_class=usual[4].at_threshold, confusion=None, top_confused=[],
                agreement=argmax_agreement(cells), threshold_curve=threshold_curve(name, y, probs))


# what each task scores beside the metric, and keeps of the focus model
TASKS = {
    MULTICLASS: TaskScoring(_multiclass, _multiclass_focus, all_classes=True),
    MULTILABEL: TaskScoring(_multilabel, _multilabel_focus, all_classes=False),
}
