"""The competition's submission CSV: one row per test id, the predicted class by name or index."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble._io import atomic_outputs, read_string_csv
from ensemble.errors import ConfigError, LabelError, unknown_name
from ensemble.tables import FLOAT_FORMAT, PredTable, check_ids
from ensemble.target_format import TargetFormat  # light: the CLI's choices import it alone



TARGET_FORMATS = tuple(f.value for f in TargetFormat)


@dataclass(frozen=True)
class SubmissionFormat:
    """How the competition wants the file (`--submission-id-col`, `--target-col`, `--target-format`).

    `target_format` is a `TargetFormat` or its value; it is stored as the value ("name", "index").
    """

    id_col: str = "id"
    target_col: str = "label"
    target_format: str = TargetFormat.NAME.value

    def __post_init__(self) -> None:
        value = self.target_format.value if isinstance(self.target_format, TargetFormat) else self.target_format
        if value not in TARGET_FORMATS:
            raise unknown_name("target format", value, TARGET_FORMATS)
        object.__setattr__(self, "target_format", value)
        if self.id_col == self.target_col:
            raise ConfigError(
                f"--submission-id-col and --target-col are both {self.id_col!r}; give two different column names"
            )


def predicted_labels(table: PredTable, fmt: SubmissionFormat) -> np.ndarray:
    """Argmax of each row as class names or indices (strings), shape (n_samples,)."""
    pred = table.probs.argmax(axis=1)
    if fmt.target_format == TargetFormat.INDEX:
        return pred.astype(str).astype(object)
    return np.asarray(table.classes, dtype=object)[pred]


def write_submission(
    table: PredTable, path: str | os.PathLike, fmt: SubmissionFormat = SubmissionFormat(), *, force: bool = False
) -> Path:
    """Atomically write the submission CSV for `table`, ids in the table's order.

    The target is each row's argmax (class name or index), or with `probs` one probability column
    per class (the table's columns, written losslessly).
    """
    if fmt.target_format == TargetFormat.PROBS:
        df = pd.DataFrame(table.probs, columns=table.classes)
        df.insert(0, fmt.id_col, table.ids)
    else:
        df = pd.DataFrame({fmt.id_col: table.ids, fmt.target_col: predicted_labels(table, fmt)})
    with atomic_outputs([path], force=force) as (tmp,):
        df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
    return Path(path)


def read_submission(path: str | os.PathLike, fmt: SubmissionFormat = SubmissionFormat()) -> pd.DataFrame:
    """Read a submission CSV as strings: columns `id` and `target`, sorted by id.

    Raises:
        LabelError: missing file or columns, ragged rows, no rows, empty or duplicate ids, empty targets.
    """
    p = Path(path)
    df = read_string_csv(p, LabelError, missing="no such submission file; give the CSV you would upload")
    if fmt.target_format == TargetFormat.PROBS:
        return _read_probs(df, p, fmt)
    for col, flag in ((fmt.id_col, "--submission-id-col"), (fmt.target_col, "--target-col")):
        if col not in df.columns:
            raise LabelError(f"{p}: no column {col!r} (columns: {', '.join(df.columns)}); name it with {flag}")
    ids = check_ids(df[fmt.id_col].to_numpy(dtype=object), str(p))
    target = df[fmt.target_col].to_numpy(dtype=object)
    if (target == "").any():
        raise LabelError(f"{p}: {int((target == '').sum())} rows have an empty {fmt.target_col!r}; every id needs a prediction")
    out = pd.DataFrame({"id": ids, "target": target}).sort_values("id", kind="stable").reset_index(drop=True)
    return out


def _read_probs(df: pd.DataFrame, p: Path, fmt: SubmissionFormat) -> pd.DataFrame:
    """A probability submission as the ledger compares it: each row's argmax class as `target`.

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
    probs = check_probs(values, len(ids), classes, str(p))
    order = np.argsort(ids, kind="stable")
    out = pd.DataFrame({"id": ids[order], "target": np.asarray(classes, dtype=object)[probs[order].argmax(axis=1)]})
    out.attrs["digest"] = sha256_bytes("\x1f".join(ids[order]).encode() + probs[order].astype(np.float32).tobytes())
    return out
