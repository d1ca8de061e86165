"""The competition's submission CSV: one row per test id, the predicted class (or classes) by name or index.

A multiclass table writes each row's argmax. A multi-label table writes each row's predicted
classes, those with p > 0.5 (`ensemble.task.decisions`; a blend with tuned thresholds has moved
them to 0.5 already), joined by `SubmissionFormat.label_sep` (a space by default, as most
multi-label competitions ask), in class-index order. A row with no class above 0.5 gets its top
class, unless `allow_empty`: then its target cell is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble._io import atomic_outputs, read_string_csv
from ensemble.errors import ConfigError, LabelError, preview, unknown_name
from ensemble.tables import FLOAT_FORMAT, PredTable, check_ids
from ensemble.target_format import TargetFormat
from ensemble.task import MULTICLASS, MULTILABEL, check_task, decisions

TARGET_FORMATS = tuple(f.value for f in TargetFormat)
SUBMISSION_LABEL_SEP = " "  # what joins a multi-label row's classes in most competitions' files


@dataclass(frozen=True)
class SubmissionFormat:
    """How the competition wants the file (`--submission-id-col`, `--target-col`, `--target-format`,
    `--submission-label-sep`, `--allow-empty`).

    `target_format` is a `TargetFormat` or its value; it is stored as the value ("name", "index").
    `label_sep` joins the classes of a multi-label row; `allow_empty` lets a multi-label row with no
    class above its threshold be written (and read back) with an empty target instead of its top class.
    """

    id_col: str = "id"
    target_col: str = "label"
    target_format: str = TargetFormat.NAME.value
    label_sep: str = SUBMISSION_LABEL_SEP
    allow_empty: bool = False

    def __post_init__(self) -> None:
        value = self.target_format.value if isinstance(self.target_format, TargetFormat) else self.target_format
        if value not in TARGET_FORMATS:
            raise unknown_name("target format", value, TARGET_FORMATS)
        object.__setattr__(self, "target_format", value)
        if self.id_col == self.target_col:
            raise ConfigError(
                f"--submission-id-col and --target-col are both {self.id_col!r}; give two different column names"
            )
        if not self.label_sep:
            raise ConfigError(
                "--submission-label-sep is empty; give what joins a multi-label row's classes (a space, as most competitions ask)"
            )

    @property
    def as_index(self) -> bool:
        """Targets are written as class indices (else as class names)."""
        return self.target_format == TargetFormat.INDEX


def predicted_labels(table: PredTable, fmt: SubmissionFormat) -> np.ndarray:
    """Each row's target as written (strings), shape (n_samples,): the argmax class (multiclass), or
    the predicted classes joined by `fmt.label_sep` (multi-label), as class names or indices.

    Raises:
        ConfigError: a multi-label table whose class names hold the separator (the file could not
            be read back).
    """
    if table.task != MULTILABEL:
        pred = table.probs.argmax(axis=1)
        if fmt.as_index:
            return pred.astype(str).astype(object)
        return np.asarray(table.classes, dtype=object)[pred]
    names = np.array([str(i) for i in range(len(table.classes))] if fmt.as_index else table.classes, dtype=object)
    clash = [c for c in names if fmt.label_sep in c]
    if clash:
        raise ConfigError(
            f"{table.source}: class names {preview(clash)} hold the submission's label separator {fmt.label_sep!r}; "
            "pick another --submission-label-sep, or write --target-format index"
        )
    chosen = predicted_sets(table, allow_empty=fmt.allow_empty)  # (n, C) bool
    rows, cols = np.nonzero(chosen)  # row-major: each row's classes in class-index order
    parts = np.split(names[cols], np.cumsum(np.bincount(rows, minlength=len(table)))[:-1]) if len(table) else []
    return np.array([fmt.label_sep.join(p) for p in parts], dtype=object)


def predicted_sets(table: PredTable, *, allow_empty: bool = False) -> np.ndarray:
    """A multi-label table's predicted classes, bool (n, C): p > 0.5, and a row with none gets its top
    class unless `allow_empty`."""
    chosen = decisions(table.probs)
    if not allow_empty:
        none = np.flatnonzero(~chosen.any(axis=1))
        chosen[none, table.probs[none].argmax(axis=1)] = True
    return chosen


def write_submission(
    table: PredTable, path: str | os.PathLike, fmt: SubmissionFormat = SubmissionFormat(), *, force: bool = False
) -> Path:
    """Atomically write the submission CSV for `table`, ids in the table's order.

    The target is each row's argmax (class name or index), or a multi-label row's predicted
    classes joined (module docstring), or with `probs` one probability column per class (the
    table's columns, written losslessly).
    """
    if fmt.target_format == TargetFormat.PROBS:
        df = pd.DataFrame(table.probs, columns=table.classes)
        df.insert(0, fmt.id_col, table.ids)
    else:
        df = pd.DataFrame({fmt.id_col: table.ids, fmt.target_col: predicted_labels(table, fmt)})
    with atomic_outputs([path], force=force) as (tmp,):
        df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
    return Path(path)


def read_submission(
    path: str | os.PathLike, fmt: SubmissionFormat = SubmissionFormat(), *, task: str = MULTICLASS
) -> pd.DataFrame:
    """Read a submission CSV as strings: columns `id` and `target`, sorted by id.

    A multi-label submission (`task="multilabel"`) has as `target` each row's set of classes as
    written: a tuple of the distinct tokens between `fmt.label_sep`s, sorted (empty when the cell is,
    which `fmt.allow_empty` must allow); `attrs["task"]` says which task was read.

    Raises:
        LabelError: missing file or columns, ragged rows, no rows, empty or duplicate ids, empty targets.
    """
    task = check_task(task, "read_submission")
    p = Path(path)
    df = read_string_csv(p, LabelError, missing="no such submission file; give the CSV you would upload")
    if fmt.target_format == TargetFormat.PROBS:
        out = _read_probs(df, p, fmt, task)
    else:
        for col, flag in ((fmt.id_col, "--submission-id-col"), (fmt.target_col, "--target-col")):
            if col not in df.columns:
                raise LabelError(f"{p}: no column {col!r} (columns: {', '.join(df.columns)}); name it with {flag}")
        ids = check_ids(df[fmt.id_col].to_numpy(dtype=object), str(p))
        target = df[fmt.target_col].to_numpy(dtype=object)
        empty = np.array([not str(t).strip() for t in target], dtype=bool) if task == MULTILABEL else target == ""
        if empty.any() and not (task == MULTILABEL and fmt.allow_empty):
            fix = (
                "pass --allow-empty if the competition accepts a row with no class" if task == MULTILABEL
                else "every id needs a prediction"
            )
            raise LabelError(f"{p}: {int(empty.sum())} rows have an empty {fmt.target_col!r}; {fix}")
        if task == MULTILABEL:
            target = _label_sets(target, fmt.label_sep)
        out = pd.DataFrame({"id": ids, "target": target}).sort_values("id", kind="stable").reset_index(drop=True)
    out.attrs["task"] = task
    return out


def _label_sets(cells: np.ndarray, sep: str) -> np.ndarray:
    """Each cell's distinct classes between `sep`s (blanks around them dropped), as a sorted tuple."""
    out = np.empty(len(cells), dtype=object)
    out[:] = [tuple(sorted({t.strip() for t in str(c).split(sep)} - {""})) for c in cells]
    return out


def _read_probs(df: pd.DataFrame, p: Path, fmt: SubmissionFormat, task: str) -> pd.DataFrame:
    """A probability submission as the ledger compares it: each row's decisions as `target` (the argmax
    class; multi-label: the sorted tuple of classes above 0.5).

    `attrs["digest"]` hashes the ids and the probabilities (as float32), so two files are the same
    submission exactly when their probabilities are; their agreement is that of their decisions.
    """
    from ensemble._io import sha256_bytes
    from ensemble.tables import check_probs

    if fmt.id_col not in df.columns:
        raise LabelError(f"{p}: no column {fmt.id_col!r} (columns: {', '.join(df.columns)}); name it with --submission-id-col")
    classes = [c for c in df.columns if c != fmt.id_col]
    if not classes:
        raise LabelError(f"{p}: no probability columns beside {fmt.id_col!r}; a probs submission has one column per class")
    ids = check_ids(df[fmt.id_col].to_numpy(dtype=object), str(p))
    try:
        values = df[classes].to_numpy(dtype=np.float64)
    except ValueError:
        raise LabelError(f"{p}: a probability column holds a non-number; a probs submission holds numbers only") from None
    probs = check_probs(values, len(ids), classes, str(p), task=task)
    order = np.argsort(ids, kind="stable")
    names = np.asarray(classes, dtype=object)
    if task == MULTILABEL:
        chosen = decisions(probs[order])
        target = np.empty(len(ids), dtype=object)
        target[:] = [tuple(sorted(names[row])) for row in chosen]
    else:
        target = names[probs[order].argmax(axis=1)]
    out = pd.DataFrame({"id": ids[order], "target": target})
    out.attrs["digest"] = sha256_bytes("\x1f".join(ids[order]).encode() + probs[order].astype(np.float32).tobytes())
    return out
