"""Score every TTA view, and merges of views, on OOF: choose TTA by the metric instead of by guess."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ensemble import _kernels
from ensemble.metrics import f1_from_confusion, log_loss
from ensemble.metrics.base import Metric
from ensemble.report.multilabel import usual_scores
from ensemble.tables import PredTable
from ensemble.task import MULTICLASS, MULTILABEL

# exhaustive search over merges up to this many views (2**(V-1) subsets that keep the identity view)
MAX_EXHAUSTIVE = 6
IDENTITY_NAMES = ("identity", "none", "orig", "original")


@dataclass(frozen=True)
class TTAScore:
    """One view, or the mean-merge of several, scored on OOF.

    Attributes:
        views: the views merged (one for a single view), in the table's order.
        score: the report's metric of the merged probabilities.
        macro_f1, accuracy, log_loss: the usual scores beside it (multi-label: macro-F1 at p > 0.5, subset
            accuracy, mean binary cross-entropy).
        current: this is the merge the table holds (its sidecar's `tta` views, merged by mean).
    """

    views: tuple[str, ...]
    score: float
    macro_f1: float
    accuracy: float
    log_loss: float
    current: bool

    @property
    def name(self) -> str:
        return "+".join(self.views)

    def to_dict(self) -> dict:
        return {"views": list(self.views), "name": self.name, "score": self.score, "macro_f1": self.macro_f1,
                "accuracy": self.accuracy, "log_loss": self.log_loss, "current": self.current}


def view_order(table: PredTable) -> list[str]:
    """The table's views in sidecar order, the identity view first."""
    names = list(table.views or {})
    listed = (table.meta.get("tta") or {}).get("views") if isinstance(table.meta.get("tta"), dict) else None
    if isinstance(listed, list) and sorted(map(str, listed)) == sorted(names):
        names = [str(v) for v in listed]
    ident = next((v for v in names if v.lower() in IDENTITY_NAMES), None)
    if ident is not None:
        names.remove(ident)
        names.insert(0, ident)
    return names


def score_tta(
    table: PredTable, y: np.ndarray, metric: Metric | str = "macro_f1", *, all_classes: bool = False
) -> list[TTAScore]:
    """Score each view alone and mean-merges of views, best first in the metric's direction.

    With V <= 6 views every subset that includes the identity view (the first) is scored; beyond
    that, a greedy forward selection from the identity view adds the view that helps the metric
    most until none helps.

    Args:
        table: a table with `views` (view -> (n, C) probabilities), rows aligned with `y`.
        y: int64 labels of shape (n,); for a multi-label table, a uint8 indicator matrix (n, C).
        metric: what chooses the views.
        all_classes: the macro-F1 column over all classes (see `metrics.macro_f1`).
    """
    from ensemble.metrics import get_metric

    metric = get_metric(metric, table.task)
    usual = _USUAL[table.task]
    names = view_order(table)
    if not names:
        return []
    views = {v: np.asarray(table.views[v], dtype=np.float32) for v in names}
    c = len(table.classes)
    # the merge the table holds: its sidecar's views (all views when not recorded), if merged by mean
    tta = table.meta.get("tta") if isinstance(table.meta.get("tta"), dict) else {}
    held = set(map(str, tta.get("views") or names))
    current = tuple(v for v in names if v in held) if tta.get("merge", "mean") == "mean" else ()
    cache: dict[tuple[str, ...], TTAScore] = {}

    def score(subset: tuple[str, ...]) -> TTAScore:
        if subset not in cache:
            probs = views[subset[0]] if len(subset) == 1 else np.mean([views[v] for v in subset], axis=0, dtype=np.float32)
            cache[subset] = TTAScore(subset, metric.score(y, probs), *usual(y, probs, c, all_classes), subset == current)
        return cache[subset]

    ident, others = names[0], names[1:]
    for v in names:
        score((v,))
    if len(names) <= MAX_EXHAUSTIVE:
        for r in range(1, len(others) + 1):
            for combo in combinations(others, r):
                score((ident, *combo))
    else:
        chosen = [ident]
        best = metric.oriented(score((ident,)).score)
        while True:
            trials = [(metric.oriented(score(tuple(v for v in names if v in {*chosen, o})).score), o) for o in others if o not in chosen]
            if not trials or max(trials)[0] <= best:
                break
            best, pick = max(trials)
            chosen.append(pick)
    if current and current not in cache:
        score(current)
    return sorted(cache.values(), key=lambda s: (-metric.oriented(s.score), s.log_loss, len(s.views)))


def _multiclass(y: np.ndarray, probs: np.ndarray, c: int, all_classes: bool) -> tuple[float, float, float]:
    cm, _ = _kernels.confusion_from_probs(y, probs, c)
    return f1_from_confusion(cm, all_classes=all_classes), float(np.trace(cm) / len(y)), log_loss(y, probs)


def _multilabel(y: np.ndarray, probs: np.ndarray, c: int, all_classes: bool) -> tuple[float, float, float]:
    return usual_scores(y, probs)


# the usual scores beside the metric, per task
_USUAL = {MULTICLASS: _multiclass, MULTILABEL: _multilabel}
