"""Labels / data CSVs: `id`, `path`, `label`, `fold` (names configurable), ids always strings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble._io import read_string_csv
from ensemble.columns import Columns
from ensemble.errors import ClassMismatchError, LabelError, preview
from ensemble.tables import check_ids
from ensemble.task import MULTICLASS, MULTILABEL


@dataclass(eq=False)
class Labels:
    """A labels or data CSV, checked and normalised.

    Attributes:
        ids: string ids, shape (n_samples,).
        classes: class names in index order (None when the CSV has no labels and none were given).
        y: int64 class indices, shape (n_samples,); for multi-label labels a uint8 indicator matrix
            of shape (n_samples, n_classes); None without a label column.
        folds: int64 fold numbers, shape (n_samples,), or None without a fold column.
        paths: image paths resolved against the CSV's folder (or `root`), or None.
        frame: the CSV as read (every column a string), for extra columns such as groups.
        source: the CSV's path.
        raw_labels: the label column as written (strings), or None; `ensemble.join.join_labels`
            maps them through the tables' class order.
        by_index: the labels were class indices (not class names) and were read as such.
        columns: the column names it was read with.
    """

    ids: np.ndarray
    classes: list[str] | None
    y: np.ndarray | None
    folds: np.ndarray | None
    paths: np.ndarray | None
    frame: pd.DataFrame
    source: Path
    raw_labels: np.ndarray | None = None
    by_index: bool = False
    columns: Columns = Columns()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def task(self) -> str:
        """`multilabel` when the labels are sets of classes (an indicator matrix), else `multiclass`."""
        return MULTILABEL if self.y is not None and self.y.ndim == 2 else MULTICLASS

    def groups(self, col: str | None) -> np.ndarray | None:
        """Each row's group in column `col` (`--group-col`: studies, patients), or None without `col`.

        Raises:
            LabelError: the CSV has no such column.
        """
        if col is None:
            return None
        if col not in self.frame.columns:
            raise LabelError(
                f"{self.source}: no group column {col!r} (columns: {', '.join(map(str, self.frame.columns))}); "
                "name it with --group-col"
            )
        return self.frame[col].to_numpy(dtype=object)

    @property
    def fold_values(self) -> list[int]:
        """The distinct folds, sorted."""
        if self.folds is None:
            raise LabelError(f"{self.source}: no fold column; add one with `ens folds` or name it with --fold-col")
        return sorted(int(f) for f in np.unique(self.folds))


def read_labels(
    path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    columns: Columns = Columns(),
    root: str | os.PathLike | None = None,
    require: Sequence[str] = ("label",),
    task: str | None = None,
) -> Labels:
    """Read and check a labels / data CSV.

    A label cell holds one class, or for multi-label labels several joined by `columns.label_sep`
    (an empty cell: no class). The labels are multi-label when `task` says so, or (`task` None) when
    any cell holds the separator. Labels may be class names or class indices, never a mix. With `classes` given, labels that are
    all class names map by name, else labels that are all integers in 0..C-1 are indices into
    `classes` (which must then be the real class order: `ensemble.join.join_labels` checks that);
    without `classes`, integer labels give classes "0".."max" and names give their sorted set.

    Args:
        path: the CSV.
        classes: the known classes (e.g. a prediction table's), in index order.
        columns: column names.
        root: folder that image paths are relative to (default: the CSV's folder).
        require: which of "label", "fold", "path" must be present.
        task: `multiclass`, `multilabel`, or None to tell by the separator.

    Raises:
        LabelError: missing file or column, empty/duplicate ids, labels outside the classes, bad
            folds, several classes in one cell where the task is multiclass.
    """
    p = Path(path)
    frame = read_string_csv(p, LabelError, missing="no such labels CSV; give the file with id/label/fold columns")
    role_of = {"id": columns.id, "label": columns.label, "fold": columns.fold, "path": columns.path}
    for role in ("id", *require):
        col = role_of[role]
        if col not in frame.columns:
            raise LabelError(
                f"{p}: no {role} column {col!r} (columns: {', '.join(map(str, frame.columns))}); "
                f"name it with --{role}-col"
            )
    ids = check_ids(frame[columns.id].to_numpy(dtype=object), str(p))

    y = raw_labels = None
    by_index = False
    if columns.label in frame.columns:
        raw_labels = frame[columns.label].to_numpy(dtype=object)
        if task == MULTILABEL or (task is None and holds_separator(raw_labels, columns.label_sep).any()):
            y, classes, by_index = encode_multilabel(raw_labels, classes, p, columns.label, columns.label_sep)
        else:
            refuse_sets(raw_labels, ids, p, columns)
            y, classes, by_index = encode_labels_how(raw_labels, classes, p, columns.label)
    elif classes is not None:
        classes = [str(c) for c in classes]

    folds = None
    if columns.fold in frame.columns:
        folds = _parse_folds(frame[columns.fold].to_numpy(dtype=object), p, columns.fold)

    paths = None
    if columns.path in frame.columns:
        base = Path(root) if root is not None else p.parent
        raw = frame[columns.path].to_numpy(dtype=object)
        empty = np.flatnonzero(raw == "")
        if len(empty):
            raise LabelError(f"{p}: {len(empty)} rows have an empty {columns.path!r} (ids {preview(ids[empty])})")
        paths = np.array([str(base / r) for r in raw], dtype=object)
    return Labels(ids, classes, y, folds, paths, frame, p, raw_labels, by_index, columns)


def encode_labels(raw: np.ndarray, classes: Sequence[str] | None, p: Path, col: str) -> tuple[np.ndarray, list[str]]:
    """Map labels (all class names, or all class indices) to int64 indices; returns them and the classes."""
    y, classes, _ = encode_labels_how(raw, classes, p, col)
    return y, classes


def encode_labels_how(
    raw: np.ndarray, classes: Sequence[str] | None, p: Path, col: str
) -> tuple[np.ndarray, list[str], bool]:
    """Map labels (all names, or all indices) to int64 indices, saying which they were.

    Returns:
        (y, classes, by_index): the indices, the classes, and whether the labels were indices.
    """
    empty = raw == ""
    if empty.any():
        raise LabelError(f"{p}: {int(empty.sum())} rows have an empty {col!r} (rows {preview(np.flatnonzero(empty))})")
    values, inverse = np.unique(raw.astype(str), return_inverse=True)
    is_int = np.array([v.lstrip("-").isdigit() for v in values])
    if classes is None:
        if is_int.all():
            ints = values.astype(np.int64)
            if ints.min() < 0:
                raise LabelError(f"{p}: negative label {ints.min()} in {col!r}; class indices start at 0")
            classes = [str(i) for i in range(int(ints.max()) + 1)]
            return ints[inverse].astype(np.int64), classes, True
        return inverse.astype(np.int64), [str(v) for v in values], False
    classes = [str(c) for c in classes]
    lookup = {c: i for i, c in enumerate(classes)}
    if all(v in lookup for v in values):  # class names (numeric names such as "3" included)
        return np.array([lookup[v] for v in values], dtype=np.int64)[inverse], classes, False
    if is_int.all() and all(0 <= int(v) < len(classes) for v in values):
        return values.astype(np.int64)[inverse], classes, True
    unknown = values[[v not in lookup and not (is_int[j] and 0 <= int(v) < len(classes)) for j, v in enumerate(values)]]
    if not len(unknown):  # some names, some indices: which one a "2" means is a guess
        raise ClassMismatchError(
            f"{p}: {col!r} mixes class names and class indices; write every label as a class name "
            f"({preview(classes)}) or every label as an index 0..{len(classes) - 1}"
        )
    raise ClassMismatchError(
        f"{p}: labels {preview(unknown)} in {col!r} are not among the {len(classes)} classes "
        f"({preview(classes)}); labels must be class names or indices 0..{len(classes) - 1}"
    )


def holds_separator(raw: np.ndarray, sep: str) -> np.ndarray:
    """bool (n,): which label cells hold the separator (several classes)."""
    return np.array([sep in str(v) for v in raw], dtype=bool)


def refuse_sets(raw: np.ndarray, ids: np.ndarray, p: Path, columns: Columns) -> None:
    """Refuse label cells holding several classes where one class per row is expected.

    Raises:
        LabelError: names the rows (their ids).
    """
    rows = np.flatnonzero(holds_separator(raw, columns.label_sep))
    if len(rows):
        raise LabelError(
            f"{p}: {len(rows)} rows of {columns.label!r} hold several classes joined by {columns.label_sep!r} "
            f"(ids {preview(ids[rows])}) but the task is multiclass (one class per row); predict with a "
            "multilabel model card (task = \"multilabel\"), or pick another --label-sep if a class name holds it"
        )


def encode_multilabel(
    raw: np.ndarray, classes: Sequence[str] | None, p: Path, col: str, sep: str
) -> tuple[np.ndarray, list[str], bool]:
    """Map label sets (`a|b`, empty for none) to a uint8 indicator matrix (n, C).

    The classes of every cell follow `encode_labels_how`'s rules together (all names or all
    indices); without `classes`, they are the names seen (sorted) or 0..max.

    Returns:
        (Y, classes, by_index).
    """
    cells = [str(v).split(sep) if str(v).strip() else [] for v in raw]
    tokens = np.array([t.strip() for c in cells for t in c], dtype=object)
    if (tokens == "").any():
        bad = [i for i, c in enumerate(cells) if any(not t.strip() for t in c)]
        raise LabelError(
            f"{p}: {len(bad)} rows of {col!r} hold an empty class between separators {sep!r} "
            f"(rows {preview(bad)}); write `a{sep}b`, or an empty cell for no class"
        )
    rows = np.repeat(np.arange(len(cells)), [len(c) for c in cells])
    if len(tokens):
        idx, classes, by_index = encode_labels_how(tokens, classes, p, col)
    elif classes is None:
        raise LabelError(f"{p}: every {col!r} cell is empty; multi-label labels need some positive classes")
    else:
        idx, classes, by_index = np.zeros(0, np.int64), [str(c) for c in classes], False
    Y = np.zeros((len(cells), len(classes)), dtype=np.uint8)
    Y[rows, idx] = 1
    return Y, classes, by_index


def _parse_folds(raw: np.ndarray, p: Path, col: str) -> np.ndarray:
    try:
        folds = pd.to_numeric(pd.Series(raw), errors="raise")
    except (ValueError, TypeError):
        bad = [v for v in raw if not str(v).lstrip("-").isdigit()]
        raise LabelError(
            f"{p}: fold column {col!r} holds non-integer values {preview(np.unique(bad))}; "
            "folds are finite integers (make them with `ens folds`)"
        ) from None
    arr = folds.to_numpy()
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
        raise LabelError(
            f"{p}: fold column {col!r} holds non-integer values {preview(np.unique(np.asarray(raw)[bad]))}; "
            "folds are finite integers (make them with `ens folds`)"
        )
    return arr.astype(np.int64)
