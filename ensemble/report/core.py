"""`oof_report`: everything `ens oof-report` shows about a set of OOF prediction tables.

Multiclass tables get argmax scores, a confusion matrix and argmax agreement; multi-label tables
(`Joined.task`) get decisions at p > 0.5: per-class AUC, AP, F1 at 0.5 and at the best (in-sample)
threshold, positive vs predicted rates and label cardinality (`ensemble.report.multilabel`), and
agreement over (row, class) decisions. Each task's scoring lives in `ensemble.report.scoring.TASKS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ensemble._progress import NoProgress, Progress
from ensemble.bootstrap import bootstrap_metric_ci
from ensemble.errors import ConfigError, unknown_name
from ensemble.join import join_labels
from ensemble.labels import Labels
from ensemble.metrics import (
    PerClass,
)
from ensemble.metrics.base import Metric
from ensemble.metrics.choice import MetricChoice
from ensemble.naming import unique_names
from ensemble.report.multilabel import (
    MULTILABEL_F1_NOTE,
    LabelStats,
    ThresholdCurve,
)
from ensemble.report.scoring import TASKS
from ensemble.report.similarity import prob_correlation
from ensemble.report.tta import TTAScore, score_tta
from ensemble.tables import PredTable
from ensemble.task import MULTICLASS

METRIC_NOTE = {
    False: "macro-F1 over the classes present in truth or prediction (sklearn average='macro', Kaggle's)",
    True: "macro-F1 over all classes, absent ones scoring 0 (sklearn labels=range(C))",
}


@dataclass
class ModelScore:
    """One row of the summary: a model, or the seed average of a family.

    Attributes:
        name: model name (`<family>:seed-avg` for a seed average).
        family: seed family.
        kind: "model" or "seed-avg".
        members: the tables averaged (the model itself for a single table).
        score: OOF score in the report's metric.
        macro_f1, accuracy, log_loss: the usual OOF scores beside it.
        ci: bootstrap percentile interval of the metric, or None without bootstrap.
        fold_scores: the metric per fold, or None without folds.
        per_class_f1: F1 of each class, shape (C,) (multi-label: at p > 0.5).
        per_label: multi-label only: per-class AUC, AP, F1 at 0.5 and best, rates, cardinality.

    Multi-label: `macro_f1` is at p > 0.5 over all classes, `accuracy` the subset accuracy (whole
    sets right), `log_loss` the mean binary cross-entropy over (row, class) cells.
    """

    name: str
    family: str
    kind: str
    members: list[str]
    score: float
    macro_f1: float
    accuracy: float
    log_loss: float
    per_class_f1: np.ndarray
    ci: tuple[float, float] | None = None
    fold_scores: dict[int, float] | None = None
    per_label: LabelStats | None = None

    @property
    def fold_mean(self) -> float | None:
        return None if not self.fold_scores else float(np.mean(list(self.fold_scores.values())))

    @property
    def cardinality(self) -> float | None:
        """Multi-label: mean predicted classes per row at p > 0.5 (None for multiclass)."""
        return None if self.per_label is None else self.per_label.cardinality_pred

    @property
    def fold_std(self) -> float | None:
        """Population std (ddof=0) of the per-fold scores."""
        return None if not self.fold_scores else float(np.std(list(self.fold_scores.values())))

    def to_dict(self) -> dict[str, Any]:
        extra = {} if self.per_label is None else {"per_label": self.per_label.to_dict()}
        return {
            "name": self.name, "family": self.family, "kind": self.kind, "members": self.members,
            "score": self.score, "macro_f1": self.macro_f1, "ci": list(self.ci) if self.ci else None,
            "fold_mean": self.fold_mean, "fold_std": self.fold_std,
            "fold_scores": {str(k): v for k, v in self.fold_scores.items()} if self.fold_scores else None,
            "accuracy": self.accuracy, "log_loss": self.log_loss, "per_class_f1": self.per_class_f1.tolist(), **extra,
        }


@dataclass
class Report:
    """The OOF report.

    Attributes:
        classes: class names in index order.
        n_samples: labelled rows scored.
        all_classes: which macro-F1 variant the macro-F1 column is (see `METRIC_NOTE`).
        metric, higher_is_better: the metric the rows are scored and sorted by, and its direction.
        n_boot, alpha, seed: bootstrap settings (n_boot 0: no intervals).
        models: summary rows, best first in the metric's direction.
        focus: the model whose per-class scores and confusion matrix are shown.
        per_class: that model's per-class precision, recall, F1, support (multi-label: at p > 0.5).
        confusion: that model's confusion matrix, shape (C, C), rows truth (None for multi-label).
        top_confused: its largest off-diagonal cells (true, predicted, count, share of the true class).
        names: the input tables' model names (rows/columns of the similarity matrices).
        correlation: Pearson correlation of their probabilities (all cells), shape (k, k).
        agreement: share of rows with the same argmax (multi-label: of (row, class) cells with the
            same decision at p > 0.5), shape (k, k).
        tta: per table with TTA views, its views and merges scored, best first.
        task: `multiclass` or `multilabel`.
        threshold_curve: multi-label only: the focus model's F1 against one global threshold.
    """

    classes: list[str]
    n_samples: int
    all_classes: bool
    metric: str
    higher_is_better: bool
    n_boot: int
    alpha: float
    seed: int
    models: list[ModelScore]
    focus: str
    per_class: PerClass
    confusion: np.ndarray | None
    top_confused: list[tuple[int, int, int, float]]
    names: list[str]
    correlation: np.ndarray
    agreement: np.ndarray
    tta: dict[str, list[TTAScore]] = field(default_factory=dict)
    task: str = MULTICLASS
    threshold_curve: ThresholdCurve | None = None

    @property
    def per_label(self) -> LabelStats | None:
        """The focus model's multi-label per-class scores (None for multiclass)."""
        return self.model(self.focus).per_label

    @property
    def best(self) -> ModelScore:
        return self.models[0]

    def model(self, name: str) -> ModelScore:
        for m in self.models:
            if m.name == name:
                return m
        raise unknown_name("model", name, [m.name for m in self.models])

    def to_dict(self) -> dict[str, Any]:
        out = self._common_dict()
        if self.task == MULTICLASS:  # multiclass JSON keeps its keys; multi-label adds its own
            return out
        return {
            "task": self.task, **out, "macro_f1_note": MULTILABEL_F1_NOTE, "threshold": self.per_label.threshold,
            "cardinality": {"true": self.per_label.cardinality_true, "predicted": self.per_label.cardinality_pred},
            "per_label": self.per_label.to_dict(),
            "threshold_curve": self.threshold_curve.to_dict() if self.threshold_curve else None,
            "agreement_of": "decisions p > 0.5 per (row, class) cell",
        }

    def _common_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes, "n_samples": self.n_samples,
            "metric": self.metric, "higher_is_better": self.higher_is_better,
            "macro_f1_note": METRIC_NOTE[self.all_classes], "all_classes": self.all_classes,
            "bootstrap": {"n_boot": self.n_boot, "alpha": self.alpha, "seed": self.seed},
            "models": [m.to_dict() for m in self.models],
            "focus": self.focus,
            "per_class": {"classes": self.classes, **self.per_class.to_dict()},
            "confusion": None if self.confusion is None else self.confusion.tolist(),
            "top_confused": [
                {"true": self.classes[t], "pred": self.classes[p], "count": n, "share": s}
                for t, p, n, s in self.top_confused
            ],
            "similarity": {"models": self.names, "correlation": self.correlation.tolist(),
                           "agreement": self.agreement.tolist()},
            "tta": {k: [s.to_dict() for s in v] for k, v in self.tta.items()},
        }


def oof_report(
    labels: Labels,
    tables: Sequence[PredTable],
    *,
    n_boot: int | None = None,
    seed: int = 42,
    all_classes: bool = False,
    progress: Progress | None = None,
    model: str | None = None,
    per_fold: bool = True,
    alpha: float = 0.05,
    top_k: int = 10,
    classes: Sequence[str] | None = None,
    metric: str | Metric | MetricChoice = "macro_f1",
) -> Report:
    """Score OOF prediction tables against the labels.

    Checks first: every labelled id has exactly one row in every table, the labels are classes of
    the tables, and (with `per_fold`) the labels carry folds.

    Args:
        labels: the labels CSV, read (ideally with `classes=` the tables' classes).
        tables: OOF prediction tables; two or more sharing a `family` also get a seed-average row.
        n_boot: bootstrap resamples for the metric's interval (0: none; default 1000, 200 for a metric file).
        seed: seeds the bootstrap.
        all_classes: macro-F1 over all classes instead of those present (see `metrics.macro_f1`); multiclass only.
        progress: hook told about each model scored.
        model: the model whose per-class table and confusion matrix are kept (default: the best).
        per_fold: score each fold (needs the labels' fold column).
        alpha: 0.05 gives 95% intervals.
        top_k: confused class pairs kept.
        classes: the class order integer labels refer to (default: the tables' recorded order).
        metric: what the rows are scored, sorted and bootstrapped by (TTA views too): a registry name,
            a `Metric`, or a `MetricChoice` (a metric file, its solution, `--group-col`).

    Multi-label tables (their sidecars' task) are scored on the labels' sets (`Joined.y`, an indicator
    matrix), the metric looked up in the multi-label registry; every model also gets `per_label`.

    Raises:
        ConfigError: no tables, n_boot < 0, or `all_classes` with multi-label tables.
        TableError: the tables mix multiclass and multi-label.
        AlignmentError: a table misses labelled ids or has extra ones (a few named, all counted).
        ClassMismatchError: tables disagree on classes, or labels outside them.
        LabelError: no label column, or no fold column with `per_fold`.
        UnknownNameError: `model` is not one of the rows.
    """
    if n_boot is not None and n_boot < 0:
        raise ConfigError(f"n_boot={n_boot}; give 0 (no intervals) or more resamples")
    if per_fold and labels.folds is None:
        labels.fold_values  # raises the shared "no fold column" error
    joined = join_labels(labels, _distinct(tables), classes=classes)
    tables, classes, y, task = joined.tables, joined.classes, joined.y, joined.task
    scoring = TASKS[task]
    if all_classes and not scoring.all_classes:
        raise ConfigError(
            "--all-classes picks a multiclass macro-F1 variant; multi-label macro-F1 always averages over all "
            "classes: drop --all-classes"
        )
    progress = progress or NoProgress()
    choice = metric if isinstance(metric, MetricChoice) else MetricChoice(metric, all_classes=all_classes)
    scorer = choice.resolve(labels, classes, task=task)
    n_boot = scorer.resamples(n_boot, 1000)
    groups = labels.groups(choice.group_col)

    rows: list[tuple[str, str, str, list[str], np.ndarray]] = [
        (t.name, t.family, "model", [t.name], t.probs) for t in tables
    ]
    families: dict[str, list[PredTable]] = {}
    for t in tables:
        families.setdefault(t.family, []).append(t)
    for fam, members in families.items():
        if len(members) > 1:
            mean = np.mean([t.probs for t in members], axis=0, dtype=np.float32)
            rows.append((f"{fam}:seed-avg", fam, "seed-avg", [t.name for t in members], mean))

    fold_rows = None
    if per_fold:
        fold_rows = {int(v): np.flatnonzero(labels.folds == v) for v in np.unique(labels.folds)}

    progress.start("scoring models", len(rows))
    scores, cms, probs_of, usual_of = [], {}, {}, {}
    for name, fam, kind, members, probs in rows:
        usual, cm = scoring.score(y, probs, len(classes), all_classes)
        f1, acc, ll, per_class_f1, per_label = usual
        s = ModelScore(name, fam, kind, members, scorer.score(y, probs), f1, acc, ll, per_class_f1, per_label=per_label)
        if n_boot:
            lo, hi = bootstrap_metric_ci(scorer, y, probs, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups)
            s.ci = (float(lo), float(hi))
        if fold_rows is not None:
            s.fold_scores = {k: scorer.score(y[r], probs[r], r) for k, r in fold_rows.items()}
        scores.append(s)
        cms[name], probs_of[name], usual_of[name] = cm, probs, usual
        progress.advance()
    progress.stop()
    scores.sort(key=lambda s: (-scorer.oriented(s.score), s.log_loss))

    focus = scores[0].name if model is None else model
    if focus not in cms:
        raise unknown_name("model (--model)", focus, [s.name for s in scores])
    tta = {t.name: score_tta(t, y, scorer, all_classes=all_classes) for t in tables if t.views}
    common = dict(
        classes=classes, n_samples=len(y), all_classes=all_classes, metric=scorer.name,
        higher_is_better=scorer.higher_is_better, n_boot=n_boot, alpha=alpha, seed=seed,
        models=scores, focus=focus, names=[t.name for t in tables],
        correlation=prob_correlation([t.probs for t in tables]), tta=tta, task=task,
    )
    return Report(**common, **scoring.focus(tables, y, focus, usual_of[focus], cms[focus], probs_of[focus], top_k))


def _distinct(tables: Sequence[PredTable]) -> list[PredTable]:
    """Tables whose names repeat (two folders called `m`) become `m`, `m#2`, ...: rows must be told apart."""
    names = unique_names([t.name for t in tables], lambda _, n: "" if n == 1 else f"#{n}")
    return [t if t.name == n else replace(t, meta={**t.meta, "model": n}) for t, n in zip(tables, names)]
