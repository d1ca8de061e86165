"""Prediction tables: the interchange format of DESIGN.md.

A table is a CSV whose first column is `id` (always a string) followed by one float column per class,
named by class name in class-index order; rows are probabilities. A sidecar `<stem>.json` records
what made it, and per-view TTA probabilities, when kept, live in `<stem>.views.npz`.

`check_probs` is the one checker: every table, read or built in memory, passes through it, and
everything downstream trusts its output.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble._io import atomic_outputs, check_writable, csv_shape_problem, first_line, read_json_object, sha256_file
from ensemble.errors import AlignmentError, ClassMismatchError, TableError, preview

SUM_ATOL = 1e-4
FLOAT_FORMAT = "%.9g"  # 9 significant digits: every float32 survives the round trip exactly


@dataclass(eq=False)
class PredTable:
    """Class probabilities for a set of ids.

    Attributes:
        ids: string ids, shape (n_samples,), unique.
        classes: class names in class-index order.
        probs: float32 probabilities of shape (n_samples, n_classes); rows sum to 1.
        meta: what made the table (the sidecar JSON).
        views: optional per-view TTA probabilities, view name -> (n_samples, n_classes).
        path: the file it was read from, if any.
    """

    ids: np.ndarray
    classes: list[str]
    probs: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    views: dict[str, np.ndarray] | None = None
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def name(self) -> str:
        """The model (or blend) name: the sidecar's, else the folder of `oof.csv`/`test.csv`, else the stem."""
        if self.meta.get("model"):
            return str(self.meta["model"])
        if self.path is None:
            return "table"
        if self.path.stem.startswith(("oof", "test")) and self.path.parent.name:
            return self.path.parent.name
        return self.path.stem

    @property
    def family(self) -> str:
        """The seed family (several seeds of one config share it); the name when not recorded."""
        return str(self.meta.get("family") or self.name)

    @property
    def source(self) -> str:
        """Where the table came from, for messages."""
        return str(self.path) if self.path is not None else f"table {self.name!r}"

    def take(self, index: np.ndarray) -> PredTable:
        """Rows `index` (an integer array) of this table, views included."""
        views = None if self.views is None else {k: v[index] for k, v in self.views.items()}
        return replace(self, ids=self.ids[index], probs=self.probs[index], views=views)

    def file_sha256(self) -> str | None:
        """SHA-256 of the CSV the table was read from (None for an in-memory table)."""
        return sha256_file(self.path) if self.path is not None else None


def make_table(
    ids: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    probs: np.ndarray,
    *,
    meta: dict[str, Any] | None = None,
    views: dict[str, np.ndarray] | None = None,
    from_logits: bool = False,
    source: str = "table",
) -> PredTable:
    """Build a checked table from arrays.

    Args:
        ids: one id per row; converted to strings.
        classes: class names, in column order.
        probs: array of shape (n_samples, n_classes): probabilities, or logits with `from_logits`.
        meta: sidecar metadata.
        views: per-view probabilities, each of shape (n_samples, n_classes).
        from_logits: apply a softmax to `probs` (and to `views`) first.
        source: name used in error messages.

    Raises:
        TableError: duplicate or empty ids, wrong shapes, NaN/inf, negative values, rows not summing to 1.
    """
    ids = check_ids(np.asarray(ids).astype(str).astype(object), source)
    classes = check_classes_list(classes, source)
    probs = check_probs(probs, len(ids), classes, source, from_logits=from_logits)
    if views is not None:
        views = {
            str(k): check_probs(v, len(ids), classes, f"{source} view {k!r}", from_logits=from_logits)
            for k, v in views.items()
        }
    return PredTable(ids, classes, probs, dict(meta or {}), views)


def check_ids(ids: np.ndarray, source: str) -> np.ndarray:
    """Refuse empty and duplicate ids; return them as an object array of str."""
    empty = np.flatnonzero(pd.isna(ids) | (ids == ""))
    if len(empty):
        raise TableError(f"{source}: {len(empty)} rows have an empty id (rows {preview(empty)}); every row needs an id")
    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise TableError(
            f"{source}: duplicate ids {preview(np.unique(ids[dup]))}; each id must appear once — "
            "drop the repeated rows"
        )
    return ids


def check_classes_list(classes: Sequence[str], source: str) -> list[str]:
    classes = [str(c) for c in classes]
    if not classes:
        raise TableError(f"{source}: no class columns; a table needs `id` then one column per class")
    dup = pd.Index(classes).duplicated()
    if dup.any():
        raise TableError(f"{source}: class column(s) {preview(np.array(classes)[dup])} appear twice; rename them")
    return classes


def check_probs(
    probs: np.ndarray, n: int, classes: list[str], source: str, *, from_logits: bool = False
) -> np.ndarray:
    """The one probability checker: shape, finiteness, sign and row sums; returns float32."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape != (n, len(classes)):
        raise TableError(f"{source}: probabilities have shape {arr.shape}, expected ({n}, {len(classes)})")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        col = classes[int(np.argmax(~np.isfinite(arr[i])))]
        raise TableError(
            f"{source}: {int(bad.sum())} rows hold NaN or inf (first: row {i}, column {col!r}); "
            "fix the model output or drop those rows"
        )
    if from_logits:
        arr = np.exp(arr - arr.max(axis=1, keepdims=True))
        arr /= arr.sum(axis=1, keepdims=True)
    neg = (arr < 0).any(axis=1)
    if neg.any():
        i = int(np.argmax(neg))
        raise TableError(
            f"{source}: {int(neg.sum())} rows hold negative values (first: row {i}); "
            "probabilities must be >= 0 — pass --from-logits if these are logits"
        )
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_ATOL
    if off.any():
        i = int(np.argmax(off))
        raise TableError(
            f"{source}: {int(off.sum())} rows do not sum to 1 (first: row {i} sums to {sums[i]:.6g}); "
            f"rows must sum to 1 within {SUM_ATOL:g} — pass --from-logits if these are logits"
        )
    return arr.astype(np.float32)


def sidecar_path(path: str | os.PathLike) -> Path:
    """`preds/m/oof.csv` -> `preds/m/oof.json`."""
    return Path(path).with_suffix(".json")


def views_path(path: str | os.PathLike) -> Path:
    """`preds/m/oof.csv` -> `preds/m/oof.views.npz`."""
    p = Path(path)
    return p.with_name(p.stem + ".views.npz")


def resolve_table_path(path: str | os.PathLike, kind: str = "oof") -> Path:
    """A table path as given, or `<dir>/<kind>.csv` when `path` is a folder."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{kind}.csv"
    if not p.is_file():
        raise TableError(f"{p}: no such prediction table; give a CSV or a folder holding {kind}.csv")
    return p


def read_table(path: str | os.PathLike, *, kind: str = "oof", from_logits: bool = False) -> PredTable:
    """Read and check a prediction table and its sidecar.

    Args:
        path: a table CSV, or a folder holding `<kind>.csv`.
        kind: which table to take from a folder (`oof` or `test`).
        from_logits: the columns hold logits; apply a softmax instead of rejecting them.

    Raises:
        TableError: unreadable file, no `id` column, non-numeric values, and everything `make_table` checks.
        ClassMismatchError: the sidecar's classes disagree with the columns.
    """
    p = resolve_table_path(path, kind)
    source = str(p)
    classes = _read_header(p)
    try:
        df = pd.read_csv(
            p,
            dtype={"id": str},  # class columns: inferred, so a `True` stays text and is refused below
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN", "NA"] for c in classes},
            index_col=False,
        )
    except pd.errors.ParserError as e:  # a long row further down
        problem = csv_shape_problem(p) or f"not a readable CSV ({first_line(e)})"
        raise TableError(f"{source}: {problem}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise TableError(f"{source}: not a readable CSV ({first_line(e)}); write it with ens or pandas.to_csv") from None
    if len(df) == 0:
        raise TableError(f"{source}: no rows (only a header); a table needs one row per sample")
    probs = _numbers(df, classes, source)
    if np.isnan(probs).any() and (problem := csv_shape_problem(p)):  # a short row reads as NaN
        raise TableError(f"{source}: {problem}")
    meta = _read_sidecar(p)
    if "classes" in meta and [str(c) for c in meta["classes"]] != classes:
        raise ClassMismatchError(
            f"{source}: columns {preview(classes)} disagree with the sidecar's classes {preview(meta['classes'])}; "
            f"rewrite the table or delete {sidecar_path(p).name}"
        )
    table = make_table(
        df["id"].to_numpy(dtype=object), classes, probs, meta=meta, views=_read_views(p),
        from_logits=from_logits, source=source,
    )
    table.path = p
    return table


def _read_header(p: Path) -> list[str]:
    """The class names from the header, after checking the header and the first row's shape."""
    source = str(p)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:  # a BOM is accepted, as labels CSVs do
            header = next(csv.reader(f), [])  # not pandas: it renames a repeated column silently
    except (UnicodeDecodeError, csv.Error) as e:
        raise TableError(f"{source}: not a readable CSV ({first_line(e)}); write it with ens or pandas.to_csv") from None
    if not header:
        raise TableError(f"{source}: not a readable CSV (the file is empty); write it with ens or pandas.to_csv")
    if header[0] != "id":
        raise TableError(f"{source}: first column is {header[0]!r}, expected 'id' followed by one column per class")
    # a long first row would silently lose its last field: look at it, and at every row when it is off
    if csv_shape_problem(p, head=1) and (problem := csv_shape_problem(p)):
        raise TableError(f"{source}: {problem}")
    unnamed = [i + 1 for i, c in enumerate(header) if not c.strip()]
    if unnamed:
        raise TableError(f"{source}: header column {unnamed[0]} has no name; name every class column")
    return check_classes_list(header[1:], source)


def _numbers(df: pd.DataFrame, classes: list[str], source: str) -> np.ndarray:
    """The class columns as float64 (n_samples, n_classes); numbers only (`True`, `0x10` refused)."""
    for c in classes:
        col = df[c]
        if col.dtype.kind in "fiu":
            continue
        texts = col[col.notna()].astype(str)
        bad = texts[pd.to_numeric(texts, errors="coerce").isna()]
        at = bad if len(bad) else texts
        raise TableError(
            f"{source}: class column {c!r} holds a non-numeric value (row {at.index[0] + 1}: {at.iloc[0]!r}); "
            "probabilities are numbers only — fix that cell"
        )
    return df[classes].to_numpy(dtype=np.float64)


def _read_views(p: Path) -> dict[str, np.ndarray] | None:
    vp = views_path(p)
    if not vp.is_file():
        return None
    try:
        with np.load(vp, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}
    except Exception as e:  # noqa: BLE001 - a corrupt zip, a pickled array, garbage: numpy raises many kinds
        raise TableError(
            f"{vp}: per-view probabilities are unreadable ({type(e).__name__}: {first_line(e)}); "
            "delete the file (the table itself is kept) or predict again"
        ) from None


def write_table(table: PredTable, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Atomically write a table, its sidecar JSON and (if any) its per-view probabilities.

    Args:
        table: the table to write.
        path: the CSV path; the sidecar goes beside it.
        force: overwrite existing files; otherwise `OutputExistsError` before anything is written.

    Returns:
        The CSV path.
    """
    from ensemble import __version__

    p = Path(path)
    meta = {
        **table.meta,
        "classes": list(table.classes),
        "n_rows": len(table),
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if table.views:
        meta["views_file"] = views_path(p).name
    outputs = [sidecar_path(p)] + ([views_path(p)] if table.views else []) + [p]
    if not force and not table.views:
        check_writable([views_path(p)], force=False)  # a stale views file would be read as this table's
    with atomic_outputs(outputs, force=force) as temps:
        temps[0].write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        if table.views:
            with open(temps[1], "wb") as f:
                np.savez(f, **table.views)
        df = pd.DataFrame(table.probs, columns=table.classes)
        df.insert(0, "id", table.ids)
        df.to_csv(temps[-1], index=False, float_format=FLOAT_FORMAT)
    if force and not table.views:
        views_path(p).unlink(missing_ok=True)
    table.path = p
    return p


def _read_sidecar(p: Path) -> dict[str, Any]:
    sp = sidecar_path(p)
    if not sp.is_file():
        return {}
    meta = read_json_object(sp, TableError, what="sidecar", fix="fix or delete it")
    return meta


def conform_classes(tables: Sequence[PredTable], classes: Sequence[str] | None = None) -> list[PredTable]:
    """Put every table's columns in one class order (the first table's, or `classes`).

    Raises:
        ClassMismatchError: a table's class set differs; the message names what is missing and extra.
    """
    ref = list(classes) if classes is not None else list(tables[0].classes)
    out = []
    for t in tables:
        if t.classes == ref:
            out.append(t)
            continue
        missing = [c for c in ref if c not in t.classes]
        extra = [c for c in t.classes if c not in ref]
        if missing or extra:
            parts = ([f"lacks {preview(missing)}"] if missing else []) + ([f"has extra {preview(extra)}"] if extra else [])
            raise ClassMismatchError(
                f"{t.source}: classes differ from the reference ({' and '.join(parts)}); "
                "all tables must be predictions over the same classes"
            )
        order = np.array([t.classes.index(c) for c in ref])
        views = None if t.views is None else {k: v[:, order] for k, v in t.views.items()}
        out.append(replace(t, classes=ref, probs=t.probs[:, order], views=views))
    return out


def align_ids(ids: np.ndarray, ref: np.ndarray, *, source: str, ref_name: str) -> np.ndarray | None:
    """Index that puts `ids` in the order of `ref` (None when they already are); both must hold the same set.

    Raises:
        AlignmentError: naming a few missing and extra ids and how many.
    """
    if len(ids) == len(ref) and np.array_equal(ids, ref):
        return None
    index = pd.Index(ids).get_indexer(pd.Index(ref))
    missing = ref[index < 0]
    extra = np.setdiff1d(ids, ref) if len(ids) + len(missing) != len(ref) else np.array([], dtype=object)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"{len(missing)} ids of {ref_name} are missing ({preview(missing)})")
        if len(extra):
            parts.append(f"{len(extra)} ids are not in {ref_name} ({preview(extra)})")
        raise AlignmentError(
            f"{source}: {'; '.join(parts)}; predict on exactly the rows of {ref_name}"
        )
    return index


def align(tables: Sequence[PredTable], ids: np.ndarray | None = None, *, ref_name: str | None = None) -> list[PredTable]:
    """Reorder tables to one id order (`ids`, or the first table's) and one class order.

    Raises:
        AlignmentError: a table covers other ids.
        ClassMismatchError: a table has other classes.
    """
    if not tables:
        return []
    tables = conform_classes(tables)
    ref = tables[0].ids if ids is None else np.asarray(ids, dtype=object)
    ref_name = ref_name or (tables[0].source if ids is None else "the labels")
    out = []
    for t in tables:
        index = align_ids(t.ids, ref, source=t.source, ref_name=ref_name)
        out.append(t if index is None else t.take(index))
    return out
