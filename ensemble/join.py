"""`join_labels`: the one join of prediction tables to labels that every use case trusts.

Tables are put in one class order (by column name) and one id order (the labels'); the labels
become indices into that class order. Labels written as class names map by name. Labels written as
class indices need to know which class each index means: an explicit order (`classes`, from
`--classes`/`--classes-file` or a model card), else the class order the tables' sidecars record
when they all agree. A table's column order alone is no evidence (a CSV re-saved with its columns
sorted looks the same), so integer labels against tables without one agreed, recorded order are an
error that names the fix, never a silent guess.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.errors import ClassMismatchError, ConfigError, LabelError, preview
from ensemble.labels import Columns, Labels, encode_labels_how, encode_multilabel, read_labels, refuse_sets
from ensemble.tables import PredTable, align, conform_classes
from ensemble.task import MULTILABEL, common_task


@dataclass(frozen=True)
class Joined:
    """Tables and labels over the same rows and classes.

    Attributes:
        tables: the tables, rows in the labels' id order, columns in `classes` order.
        labels: the labels as read.
        y: int64 class indices into `classes`, shape (n_samples,); multilabel: a uint8 indicator
            matrix of shape (n_samples, n_classes), columns in `classes` order.
        classes: class names in index order.
        task: the tables' task (`multiclass` or `multilabel`), which the labels follow.
    """

    tables: list[PredTable]
    labels: Labels
    y: np.ndarray
    classes: list[str]
    task: str = "multiclass"

    @property
    def folds(self) -> np.ndarray | None:
        """int64 fold of each row, or None without a fold column."""
        return self.labels.folds


def recorded_order(tables: Sequence[PredTable], classes: Sequence[str] | None = None) -> list[str] | None:
    """The explicit class order: `classes` when given, else the one all tables' sidecars record, else None.

    Raises:
        ClassMismatchError: `classes` is not the tables' class set.
    """
    if classes is not None:
        order = [str(c) for c in classes]
        conform_classes(tables[:1], order)  # same set, or an error naming what differs
        return order
    recorded = [t.meta.get("classes") for t in tables]
    if all(isinstance(r, list) for r in recorded) and all([str(c) for c in r] == [str(c) for c in recorded[0]] for r in recorded):
        return [str(c) for c in recorded[0]]
    return None


def join_labels(
    labels: Labels | str | os.PathLike,
    tables: Sequence[PredTable],
    *,
    classes: Sequence[str] | None = None,
    columns: Columns = Columns(),
) -> Joined:
    """Align `tables` to the labels' ids and one class order, and encode the labels in that order.

    Args:
        labels: the labels (a `Labels`, or the CSV path, read with `columns`).
        tables: prediction tables over the labelled ids (any row and column order).
        classes: the class order integer labels refer to (`--classes`); default: the tables' recorded one.
        columns: the labels CSV's columns, when `labels` is a path.

    Raises:
        ConfigError: no tables.
        LabelError: the labels have no label column.
        ClassMismatchError: tables disagree on the class set; labels outside it; integer labels
            with no explicit class order (or tables recording different orders).
        AlignmentError: a table misses labelled ids or has others.
        TableError: the tables mix multiclass and multilabel.
        LabelError: multi-label labels (cells joining several classes) against multiclass tables.
    """
    if not tables:
        raise ConfigError("no prediction tables given; pass at least one OOF table or folder holding oof.csv")
    task = common_task([(t.source, t.task) for t in tables])
    order = recorded_order(tables, classes)
    tables = conform_classes(list(tables), order)  # one column order (by name), or a clear error
    names = list(tables[0].classes)
    lab = labels if isinstance(labels, Labels) else read_labels(labels, classes=names, columns=columns, task=task)
    if lab.y is None:
        raise LabelError(f"{lab.source}: no label column; name it with --label-col")
    y = _encode(lab, names, order, tables, task)
    tables = align(tables, lab.ids, ref_name=str(lab.source))
    return Joined(tables, lab, y, names, task)


def _encode(lab: Labels, names: list[str], order: list[str] | None, tables: list[PredTable], task: str) -> np.ndarray:
    """The labels as indices into `names` (the tables' column order); multilabel: an indicator matrix."""
    raw = lab.raw_labels
    cols = lab.columns
    if raw is None:  # Labels built in memory: trust their classes, mapped by name
        if lab.y.ndim == 2:
            raw = np.array([cols.label_sep.join(np.asarray(lab.classes)[r.astype(bool)]) for r in lab.y], dtype=object)
        else:
            raw = np.asarray(lab.classes, dtype=object)[lab.y]
    if task == MULTILABEL:
        y, _, by_index = encode_multilabel(raw, names, Path(lab.source), cols.label, cols.label_sep)
    else:
        refuse_sets(raw, lab.ids, Path(lab.source), cols)
        y, _, by_index = encode_labels_how(raw, names, Path(lab.source), "label")
    if not by_index:
        return y
    if order is None:
        recorded = {t.source: t.meta.get("classes") for t in tables}
        why = (
            "the tables record different class orders" if all(isinstance(r, list) for r in recorded.values())
            else f"{preview([s for s, r in recorded.items() if not isinstance(r, list)])} has no recorded class order (no sidecar)"
        )
        raise ClassMismatchError(
            f"{lab.source}: labels are class indices but {why}, so which class an index means is ambiguous; "
            "give the order with --classes a,b,c (or --classes-file), or write class names in the label column"
        )
    position = {c: i for i, c in enumerate(names)}
    remap = np.array([position[c] for c in order], dtype=np.int64)  # index in `order` -> column in `names`
    if y.ndim == 2:  # column j of y is class order[j]: move it to column remap[j]
        out = np.zeros_like(y)
        out[:, remap] = y
        return out
    return remap[y]


def conform_tests(tests: Sequence[PredTable], classes: Sequence[str]) -> list[PredTable]:
    """Test tables in one id order (the first's) and the joined class order."""
    return conform_classes(align(list(tests)), classes)


def parse_classes(classes: str | None, classes_file: str | os.PathLike | None) -> list[str] | None:
    """The class order from `--classes a,b,c` or `--classes-file` (one name per line), or None.

    Raises:
        ConfigError: both given, an empty or repeated name, or an unreadable file.
    """
    if classes is not None and classes_file is not None:
        raise ConfigError("--classes and --classes-file both given; give the class order once")
    if classes_file is not None:
        p = Path(classes_file)
        try:
            names = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read the classes file ({e.__class__.__name__}); give a UTF-8 file with one class name per line") from None
        where = str(p)
    elif classes is not None:
        names, where = [c.strip() for c in classes.split(",")], "--classes"
    else:
        return None
    if not names or any(not n for n in names):
        raise ConfigError(f"{where}: empty class name; give every class name in index order, e.g. --classes cat,dog")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: class {preview(dup)} given twice; give each class once, in index order")
    return names
