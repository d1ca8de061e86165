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


@dataclass(eq=False)
class Labels:
    """A labels or data CSV, checked and normalised.

    Attributes:
        ids: string ids, shape (n_samples,).
        classes: class names in index order (None when the CSV has no labels and none were given).
        y: int64 class indices, shape (n_samples,), or None without a label column.
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
) -> Labels:
    """Read and check a labels / data CSV.

    Labels may be class names or class indices, never a mix. With `classes` given, labels that are
    all class names map by name, else labels that are all integers in 0..C-1 are indices into
    `classes` (which must then be the real class order: `ensemble.join.join_labels` checks that);
    without `classes`, integer labels give classes "0".."max" and names give their sorted set.

    Args:
        path: the CSV.
        classes: the known classes (e.g. a prediction table's), in index order.
        columns: column names.
        root: folder that image paths are relative to (default: the CSV's folder).
        require: which of "label", "fold", "path" must be present.

    Raises:
        LabelError: missing file or column, empty/duplicate ids, labels outside the classes, bad folds.
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
