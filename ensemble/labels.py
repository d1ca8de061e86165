"""Labels / data CSVs: `id`, `path`, `label`, `fold` (names configurable), ids always strings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble._io import read_string_csv
from ensemble.errors import ClassMismatchError, LabelError, preview
from ensemble.tables import check_ids


@dataclass(frozen=True)
class Columns:
    """Column names of a labels / data CSV (`--id-col`, `--path-col`, `--label-col`, `--fold-col`)."""

    id: str = "id"
    path: str = "path"
    label: str = "label"
    fold: str = "fold"


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
    """

    ids: np.ndarray
    classes: list[str] | None
    y: np.ndarray | None
    folds: np.ndarray | None
    paths: np.ndarray | None
    frame: pd.DataFrame
    source: Path

    def __len__(self) -> int:
        return len(self.ids)

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

    Labels may be class names or class indices. With `classes` given, a label that is a class name
    maps to its index, otherwise an integer label is taken as an index; without `classes`, integer
    labels give classes "0".."max" and names give their sorted set.

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

    y = None
    if columns.label in frame.columns:
        y, classes = encode_labels(frame[columns.label].to_numpy(dtype=object), classes, p, columns.label)
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
    return Labels(ids, classes, y, folds, paths, frame, p)


def encode_labels(
    raw: np.ndarray, classes: Sequence[str] | None, p: Path, col: str
) -> tuple[np.ndarray, list[str]]:
    """Map labels (names or indices) to int64 indices; returns them and the classes."""
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
            return ints[inverse].astype(np.int64), classes
        return inverse.astype(np.int64), [str(v) for v in values]
    classes = [str(c) for c in classes]
    lookup = {c: i for i, c in enumerate(classes)}
    codes = np.full(len(values), -1, dtype=np.int64)
    for j, v in enumerate(values):
        if v in lookup:
            codes[j] = lookup[v]
        elif is_int[j] and 0 <= int(v) < len(classes):
            codes[j] = int(v)
    unknown = values[codes < 0]
    if len(unknown):
        raise ClassMismatchError(
            f"{p}: labels {preview(unknown)} in {col!r} are not among the {len(classes)} classes "
            f"({preview(classes)}); labels must be class names or indices 0..{len(classes) - 1}"
        )
    return codes[inverse], classes


def _parse_folds(raw: np.ndarray, p: Path, col: str) -> np.ndarray:
    try:
        folds = pd.to_numeric(pd.Series(raw), errors="raise")
    except (ValueError, TypeError):
        bad = [v for v in raw if not str(v).lstrip("-").isdigit()]
        raise LabelError(
            f"{p}: fold column {col!r} holds non-integer values {preview(np.unique(bad))}; "
            "folds are integers (make them with `ens folds`)"
        ) from None
    arr = folds.to_numpy()
    if not np.all(arr == np.round(arr)):
        raise LabelError(f"{p}: fold column {col!r} holds non-integer values; folds are integers")
    return arr.astype(np.int64)
