"""Fold assignment (scikit-learn's splitters) and checks of an existing fold column.

`make_folds` gives every row the fold in which it is validated. `check_folds` reports what makes
OOF scores lie: a group (patient, video, photographer) in two folds leaks between training and
validation (an error-level finding), and folds whose class mix strays from the whole set.

Multi-label labels (sets of classes, an indicator matrix) are split by the `multilabel-*` methods
(iterative stratification, `ensemble.multilabel_folds`) and checked per class: a fold's positive
rows of each class against the class's positive rate over all rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble._io import atomic_outputs, check_writable
from ensemble.errors import ConfigError, LabelError, preview
from ensemble.fold_methods import FOLD_METHODS, FoldMethod
from ensemble.labels import (
    Columns,
    Labels,
    encode_multilabel,
    holds_separator,
    read_labels,
)
from ensemble.task import LABEL_SEP, MULTICLASS, MULTILABEL

__all__ = [
    "FOLD_METHODS", "FoldCheck", "Finding", "FoldMethod", "check_fold_file", "check_folds", "make_folds", "write_folds",
]




def make_folds(
    data: Labels | pd.DataFrame,
    *,
    method: str,
    n_splits: int = 5,
    seed: int = 42,
    group_col: str | None = None,
    label_col: str = "label",
    label_sep: str = LABEL_SEP,
) -> np.ndarray:
    """Assign each row the fold (0..n_splits-1) in which it is validated.

    Args:
        data: a read labels CSV, or a DataFrame with `label_col` (and `group_col`).
        method: a `FOLD_METHODS` name: stratified, group, stratified-group, kfold, or for label
            sets multilabel-stratified, multilabel-stratified-group.
        n_splits: number of folds.
        seed: shuffles rows (groups) before splitting.
        group_col: column holding the group of each row (needed by the group methods).
        label_col: label column of a DataFrame (a `Labels` carries its labels already).
        label_sep: what joins several classes in a DataFrame's label cell (multi-label labels).

    Returns:
        int64 fold numbers, shape (n_samples,).

    Raises:
        ConfigError: n_splits < 2, or a group method without a group column.
        LabelError: missing columns, or fewer rows/groups (stratified: members of a class) than folds;
            label sets given to a method that stratifies one class per row.
    """
    spec = FOLD_METHODS.get(method)
    y, frame, source = _labels_of(data, label_col, required=spec.needs_labels, multilabel=spec.multilabel, sep=label_sep)
    n = len(frame)
    if n_splits < 2:
        raise ConfigError(f"n_splits={n_splits}; cross-validation needs at least 2 folds")
    groups = None
    if spec.needs_groups:
        if group_col is None:
            raise ConfigError(f"method {method!r} needs the group column; pass --group-col (group_col=...)")
        groups = _group_values(frame, group_col, source)
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise LabelError(f"{source}: {n_groups} groups in {group_col!r} cannot fill {n_splits} folds; use --n-splits {max(2, n_groups)} or fewer")
    if n < n_splits:
        raise LabelError(f"{source}: {n} rows cannot fill {n_splits} folds; use fewer folds")
    if spec.needs_labels and y.ndim == 2 and not spec.multilabel:
        raise LabelError(
            f"{source}: --method {method} stratifies one class per row, but the labels are sets of classes; "
            f"use --method multilabel-{method}"
        )
    if spec.multilabel and y.ndim == 1:  # one class per row: its one-hot set
        y = np.eye(int(y.max()) + 1 if len(y) else 1, dtype=np.uint8)[y]
    if spec.needs_labels and y.ndim == 1:
        classes, counts = np.unique(y, return_counts=True)
        if counts.max() < n_splits:
            raise LabelError(
                f"{source}: no class has {n_splits} members (largest: {counts.max()}); "
                "stratification needs one per fold — use fewer folds"
            )
    folds = np.full(n, -1, dtype=np.int64)
    splitter = spec.make(n_splits, seed)
    y_split = y if y is not None else np.zeros(n, dtype=np.int64)
    for k, (_, val) in enumerate(splitter.split(np.zeros(n), y_split, groups)):
        folds[val] = k
    return folds


@dataclass(frozen=True)
class Finding:
    """One problem found: `level` is "error" (scores are not to be trusted) or "warning"."""

    level: str
    kind: str
    message: str


@dataclass
class FoldCheck:
    """What `check_folds` found.

    Attributes:
        folds: the fold numbers, sorted.
        classes: class names (columns of `counts`).
        counts: rows per (fold, class), shape (n_folds, n_classes); for multi-label labels the
            positive rows of each class (a row counts once per class it holds).
        deviation: per fold, the largest |class share in the fold - class share overall| (multi-label:
            the class's positive rate in the fold against its rate over all rows).
        leaked_groups: groups that appear in more than one fold.
        findings: the problems, errors first.
        task: `multiclass` or `multilabel` (the labels').
        rows: rows per fold.
    """

    folds: list[int]
    classes: list[str]
    counts: np.ndarray
    deviation: np.ndarray
    leaked_groups: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    task: str = MULTICLASS
    rows: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error-level finding."""
        return not any(f.level == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "task": self.task,
            "folds": self.folds,
            "rows": self.rows,
            "classes": self.classes,
            "counts": self.counts.tolist(),
            "deviation": self.deviation.tolist(),
            "leaked_groups": self.leaked_groups,
            "findings": [vars(f) for f in self.findings],
        }


def fold_distribution(y: np.ndarray, folds: np.ndarray, n_classes: int) -> tuple[list[int], np.ndarray]:
    """Rows per (fold, class): the sorted folds and an int64 array of shape (n_folds, C).

    `y` is int class indices (n,), or an indicator matrix (n, C) whose positives are counted.
    """
    values, f_idx = np.unique(folds, return_inverse=True)
    if y.ndim == 2:
        counts = np.stack([y[f_idx == k].sum(axis=0, dtype=np.int64) for k in range(len(values))]).reshape(len(values), n_classes)
        return [int(v) for v in values], counts
    counts = np.bincount(f_idx * n_classes + y, minlength=len(values) * n_classes).reshape(len(values), n_classes)
    return [int(v) for v in values], counts


# How to fix leakage or imbalance, by the labels' task.
_REBUILD = {
    MULTICLASS: ("--method group or stratified-group", "--method stratified or stratified-group"),
    MULTILABEL: ("--method multilabel-stratified-group", "--method multilabel-stratified or multilabel-stratified-group"),
}


def check_folds(
    labels: Labels, *, group_col: str | None = None, tolerance: float = 0.2
) -> FoldCheck:
    """Check an existing fold column for group leakage and class imbalance.

    Args:
        labels: a labels CSV read with its fold (and label) column.
        group_col: column holding each row's group; leakage is checked when given.
        tolerance: a fold's class count may stray from its expected count by max(1, tolerance x expected)
            rows before it is reported.

    Raises:
        LabelError: no fold column, or no such group column.
    """
    if labels.folds is None:
        labels.fold_values  # raises the shared "no fold column" error
    if labels.y is None or labels.classes is None:  # no labels: only sizes and groups can be checked
        labels = replace(labels, y=np.zeros(len(labels), dtype=np.int64), classes=["(all rows)"])
    task = labels.task
    regroup, restratify = _REBUILD[task]
    folds, counts = fold_distribution(labels.y, labels.folds, len(labels.classes))
    sizes = np.bincount(np.unique(labels.folds, return_inverse=True)[1])[:, None]  # (F, 1) rows per fold
    findings: list[Finding] = []
    leaked: list[str] = []
    if group_col is not None:
        groups = _group_values(labels.frame, group_col, labels.source)
        per_group = pd.Series(labels.folds).groupby(groups).nunique()
        leaked = [str(g) for g in per_group.index[per_group.to_numpy() > 1]]
        if leaked:
            findings.append(Finding(
                "error", "leakage",
                f"{len(leaked)} groups of {group_col!r} appear in more than one fold ({preview(leaked)}); "
                f"their rows train and validate the same model — rebuild folds with {regroup}",
            ))
    share = counts.sum(axis=0) / sizes.sum()  # (C,) overall class shares (multi-label: positive rates)
    expected = sizes * share
    deviation = np.abs(counts / sizes - share).max(axis=1)
    off = np.abs(counts - expected) > np.maximum(1.0, tolerance * expected)
    for f, c in zip(*np.nonzero(off)):
        findings.append(Finding(
            "warning", "imbalance",
            f"fold {folds[f]} holds {counts[f, c]} rows of class {labels.classes[c]!r}, expected about "
            f"{expected[f, c]:.1f}; stratify ({restratify}) to even it out",
        ))
    if sizes.max() > 1.5 * sizes.min():
        findings.append(Finding(
            "warning", "size", f"fold sizes range from {sizes.min()} to {sizes.max()} rows; folds of unequal size weigh per-fold means unevenly",
        ))
    return FoldCheck(folds, list(labels.classes), counts, deviation, leaked, findings, task, [int(s) for s in sizes[:, 0]])


def _labels_of(
    data: Labels | pd.DataFrame, label_col: str, *, required: bool, multilabel: bool, sep: str
) -> tuple[np.ndarray | None, pd.DataFrame, str]:
    """(int labels (n,) or an indicator matrix (n, C), or None; the frame; a name for messages)."""
    if isinstance(data, Labels):
        if required and data.y is None:
            raise LabelError(f"{data.source}: no label column; stratified folds need one — name it with --label-col")
        return data.y, data.frame, str(data.source)
    if not isinstance(data, pd.DataFrame):
        raise ConfigError(f"make_folds takes Labels or a pandas DataFrame, not {type(data).__name__}")
    if label_col not in data.columns:
        if required:
            raise LabelError(f"data frame: no label column {label_col!r}; stratified folds need one — name it with --label-col")
        return None, data, "data frame"
    raw = data[label_col].fillna("").astype(str).to_numpy(dtype=object)
    if multilabel or holds_separator(raw, sep).any():
        return encode_multilabel(raw, None, Path("data frame"), label_col, sep)[0], data, "data frame"
    return pd.factorize(data[label_col].astype(str), sort=True)[0].astype(np.int64), data, "data frame"


def _group_values(frame: pd.DataFrame, group_col: str, source: object) -> np.ndarray:
    if group_col not in frame.columns:
        raise LabelError(
            f"{source}: no group column {group_col!r} (columns: {', '.join(map(str, frame.columns))}); name it with --group-col"
        )
    return frame[group_col].astype(str).to_numpy(dtype=object)


def write_folds(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str,
    n_splits: int = 5,
    seed: int = 42,
    group_col: str | None = None,
    columns: Columns = Columns(),
    force: bool = False,
) -> FoldCheck:
    """Read a data CSV, assign folds, and write it to `out` with the fold column (atomically).

    Every other column is written back as read (ids stay strings); an existing fold column is
    replaced.

    Returns:
        The check of the new folds (class distribution per fold, and leakage when `group_col`).

    Raises:
        OutputExistsError: `out` exists and `force` is False (checked before any work).
        (and what `make_folds` raises)
    """
    check_writable([out], force=force)
    spec = FOLD_METHODS.get(method)
    # the old fold column is about to be replaced: don't parse it (a broken one must not block this)
    read_cols = replace(columns, fold="\0no fold column")
    labels = read_labels(
        data, columns=read_cols, require=("label",) if spec.needs_labels else (), task=MULTILABEL if spec.multilabel else None
    )
    folds = make_folds(labels, method=method, n_splits=n_splits, seed=seed, group_col=group_col)
    frame = labels.frame.copy()
    frame[columns.fold] = folds
    with atomic_outputs([out], force=force) as (tmp,):
        frame.to_csv(tmp, index=False)
    return check_folds(replace(labels, folds=folds), group_col=group_col)


def check_fold_file(
    data: str | os.PathLike,
    *,
    group_col: str | None = None,
    columns: Columns = Columns(),
    tolerance: float = 0.2,
    task: str | None = None,
) -> FoldCheck:
    """Read a data CSV with a fold column and `check_folds` it (labels are used when present).

    The labels are label sets (checked per class) when `task` is `multilabel`, or (`task` None)
    when any cell holds `columns.label_sep`.
    """
    labels = read_labels(data, columns=columns, require=("fold",), task=task)
    return check_folds(labels, group_col=group_col, tolerance=tolerance)
