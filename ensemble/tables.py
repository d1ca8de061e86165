"""Prediction tables: the interchange format of DESIGN.md.

A table is a CSV (or a Parquet file: `TABLE_FORMATS`, chosen by the suffix) whose first column is `id`
(always a string) followed by one float column per class, named by class name in class-index order;
rows are probabilities. A sidecar `<stem>.json` records what made it, and per-view TTA
probabilities, when kept, live in `<stem>.views.npz`. The formats' parsing lives in `_csv_table`
and `_parquet_table` (pyarrow, imported on first use).

`check_probs` is the one checker: every table, read or built in memory, passes through it, and
everything downstream trusts its output.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ensemble._io import (
    atomic_outputs,
    check_writable,
    file_identity,
    first_line,
    in_background,
    read_json_object,
    sha256_file,
)
from ensemble._progress import NoProgress, Progress
from ensemble.errors import ClassMismatchError, TableError, preview
from ensemble.memory import release_freed_memory
from ensemble.table_align import align, align_ids, conform_classes  # noqa: F401 - public here, as ever
from ensemble.task import MULTICLASS, MULTILABEL, check_task, sigmoid, task_of_meta

if TYPE_CHECKING:
    from concurrent.futures import Future

SUM_ATOL = 1e-4
FLOAT_FORMAT = "%.9g"  # 9 significant digits: every float32 survives the round trip exactly (for pandas writers)
# format name (`ens predict --format`) -> file suffix; a table's suffix picks its reader and writer
from ensemble.columns import TABLE_FORMATS  # noqa: E402 - public here too

_FORMAT_MODULES = {".csv": "ensemble._csv_table", ".parquet": "ensemble._parquet_table"}
_CHECK_ROWS = 1 << 13  # rows checked at a time: the float64 block stays in cache (~1 MB at 18 classes)


@dataclass(eq=False)
class PredTable:
    """Class probabilities for a set of ids.

    Attributes:
        ids: string ids, shape (n_samples,), unique.
        classes: class names in class-index order.
        probs: float32 probabilities of shape (n_samples, n_classes); rows sum to 1 (multiclass) or
            each value in [0, 1] (multilabel: `meta["task"]`).
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
    def task(self) -> str:
        """`multiclass` (softmax rows) or `multilabel` (a sigmoid per class), as the sidecar records it."""
        return str(self.meta.get("task", MULTICLASS))

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
        """SHA-256 of the file the table was read from (None for an in-memory table).

        Kept once computed while the file stays the same version (`file_identity`): a blend's recipe
        is built twice (written, then shown), and hashing its 40 tables took ~0.06 s each time.
        """
        if self.path is None:
            return None
        key = file_identity(self.path)
        memo = self.__dict__.get("_sha256")
        if memo is None or memo[0] != key:
            memo = (key, _hashed(key) or sha256_file(self.path))
            self.__dict__["_sha256"] = memo
        return memo[1]


# a file's version (`file_identity`) -> its SHA-256, being computed by `hash_in_background`'s thread
_HASHING: dict[tuple, Future[str]] = {}


def _hashed(key: tuple) -> str | None:
    """The background hash of the file version `key` names (waiting for it), or None when none was started or it failed."""
    future = _HASHING.get(key)
    if future is None:
        return None
    try:
        return future.result()
    except Exception:  # noqa: BLE001 - e.g. the file went away: the caller hashes it and says why
        return None


def hash_in_background(paths: Sequence[str | os.PathLike]) -> None:
    """Hash these files in a daemon thread, in order, for `PredTable.file_sha256` of tables read from them.

    A blend's recipe records every member table's hash; hashed at the end, the 40 tables of
    bench_cli.py's problem cost ~0.06 s of a ~1.8 s command, while hashlib releases the interpreter
    lock and a core is often idle before that (imports, labels, the serial parts of the fit). A
    file rewritten after this call is hashed again when asked (`file_identity` differs). Where no
    thread can be started, nothing is: `file_sha256` hashes the files itself.
    """
    _HASHING.clear()  # an earlier command's hashes (an in-process caller): only this one's are kept
    _HASHING.update(in_background(paths, sha256_file, "ens-hash"))


def make_table(
    ids: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    probs: np.ndarray,
    *,
    meta: dict[str, Any] | None = None,
    views: dict[str, np.ndarray] | None = None,
    from_logits: bool = False,
    source: str = "table",
    task: str | None = None,
) -> PredTable:
    """Build a checked table from arrays.

    Args:
        ids: one id per row; converted to strings.
        classes: class names, in column order.
        probs: array of shape (n_samples, n_classes): probabilities, or logits with `from_logits`.
        meta: sidecar metadata.
        views: per-view probabilities, each of shape (n_samples, n_classes).
        from_logits: apply a softmax (a sigmoid for multilabel) to `probs` (and to `views`) first.
        source: name used in error messages.
        task: `multiclass` or `multilabel` (recorded in `meta`); default: `meta`'s, else multiclass.

    Raises:
        TableError: duplicate or empty ids, wrong shapes, NaN/inf, negative values, rows not summing
            to 1 (multiclass) or values above 1 (multilabel).
    """
    if task is not None:
        meta = {**(meta or {}), "task": check_task(task, source)}
    return _checked_table(_str_ids(ids), classes, probs, meta, views, from_logits, source, copy=True)


def _checked_table(
    ids: np.ndarray, classes: Sequence[str], probs: np.ndarray, meta: dict[str, Any] | None,
    views: dict[str, np.ndarray] | None, from_logits: bool, source: str, *, copy: bool, ids_checked: bool = False,
) -> PredTable:
    """`make_table` for ids already an object array of str; `copy=False` keeps a float32 `probs` (a reader's).

    `ids_checked`: the ids are another checked table's (`read_tables`), so they are not checked again.
    """
    ids = ids if ids_checked else check_ids(ids, source)
    classes = check_classes_list(classes, source)
    task = task_of_meta(meta or {}, source)
    probs = check_probs(probs, len(ids), classes, source, from_logits=from_logits, copy=copy, task=task)
    if views is not None:
        views = {
            str(k): check_probs(v, len(ids), classes, f"{source} view {k!r}", from_logits=from_logits, task=task)
            for k, v in views.items()
        }
    return PredTable(ids, classes, probs, dict(meta or {}), views)


def _str_ids(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """The ids as an object array of str (one of str passes through uncopied)."""
    arr = np.asarray(ids, dtype=object) if not isinstance(ids, np.ndarray) or ids.dtype != object else ids
    if arr.ndim == 1 and all(type(i) is str for i in arr):
        return arr
    return np.asarray(ids).astype(str).astype(object)


def check_ids(ids: np.ndarray, source: str) -> np.ndarray:
    """Refuse empty and duplicate ids; return them as an object array of str."""
    # object dtype: pandas would otherwise copy the strings into an Arrow string index first (~4x slower)
    index = pd.Index(ids, dtype=object)
    # The usual case costs one hash pass and one type scan: all unique, "" looked up in the hash table
    # the uniqueness check built, and no missing value possible among strings (pd.isna and == "" over
    # a million objects cost more than the hash pass itself: ~50 ms of ~230 in-process at 1M ids)
    if index.is_unique and "" not in index and pd.api.types.infer_dtype(ids, skipna=False) == "string":
        return ids
    empty = np.flatnonzero(pd.isna(ids) | (ids == ""))
    if len(empty):
        raise TableError(f"{source}: {len(empty)} rows have an empty id (rows {preview(empty)}); every row needs an id")
    dup = index.duplicated()  # which ids repeat is worked out only when some do
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
    if "id" in classes:  # written as a column beside `id`, it would read back as a second id column
        raise TableError(f"{source}: a class is named 'id', like the id column; rename that class")
    return classes


def check_probs(
    probs: np.ndarray, n: int, classes: list[str], source: str, *, from_logits: bool = False, copy: bool = True,
    task: str = MULTICLASS,
) -> np.ndarray:
    """The one probability checker: shape, finiteness, sign and row sums; returns float32 (n, C).

    Multiclass rows must sum to 1 (logits: a row softmax); multilabel values must lie in [0, 1]
    (logits: an elementwise sigmoid) and rows sum to anything.

    Rows are checked in float64 a block at a time, so a million-row float32 table never gets a
    float64 twin; `copy=False` returns a float32 input itself when there is nothing to convert.
    """
    arr = np.asarray(probs)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape != (n, len(classes)):
        raise TableError(f"{source}: probabilities have shape {arr.shape}, expected ({n}, {len(classes)})")
    keep = not copy and not from_logits and arr.dtype == np.float32
    out = arr if keep else np.empty(arr.shape, dtype=np.float32)
    # a table with no NaN/inf and no negative value (the usual case: its minimum is >= 0 and its maximum
    # finite, NaN failing both; two whole-array passes without temporaries) skips those per-row
    # reductions; they run only to name the rows of a table that has some
    clean = not from_logits and (arr.size == 0 or bool(arr.min() >= 0) and bool(np.isfinite(arr.max())))
    finite, neg, sums = np.empty(n, bool), np.empty(n, bool), np.empty(n, np.float64)
    if clean:
        finite[:], neg[:] = True, False
    for lo in range(0, n, _CHECK_ROWS):
        block = arr[lo:lo + _CHECK_ROWS].astype(np.float64)  # (b, C)
        rows = slice(lo, lo + len(block))
        if clean:  # the same sums (or maxima) as below, from the same float64 block
            sums[rows] = block.max(axis=1) if task == MULTILABEL else block.sum(axis=1)
            if not keep:
                out[rows] = block
            continue
        finite[rows] = np.isfinite(block).all(axis=1)
        if from_logits and task == MULTILABEL:
            block = sigmoid(block)
        elif from_logits:
            with np.errstate(invalid="ignore", over="ignore"):  # NaN rows: refused below, before use
                block = np.exp(block - block.max(axis=1, keepdims=True))
                block /= block.sum(axis=1, keepdims=True)
        neg[rows] = (block < 0).any(axis=1)
        # multilabel: a value above 1 fails like a row off its sum (the largest value stands in for it)
        sums[rows] = block.max(axis=1) if task == MULTILABEL else block.sum(axis=1)
        if not keep:
            out[rows] = block
    _refuse_bad_rows(arr, ~finite, neg, sums, classes, source, task)
    return out


def _refuse_bad_rows(
    arr: np.ndarray, bad: np.ndarray, neg: np.ndarray, sums: np.ndarray, classes: list[str], source: str, task: str
) -> None:
    """Raise for the first kind of bad row, in the order NaN/inf, negative, row sum."""
    if bad.any():
        i = int(np.argmax(bad))
        col = classes[int(np.argmax(~np.isfinite(arr[i])))]
        raise TableError(
            f"{source}: {int(bad.sum())} rows hold NaN or inf (first: row {i}, column {col!r}); "
            "fix the model output or drop those rows"
        )
    if neg.any():
        i = int(np.argmax(neg))
        raise TableError(
            f"{source}: {int(neg.sum())} rows hold negative values (first: row {i}); "
            "probabilities must be >= 0 — pass --from-logits if these are logits"
        )
    if task == MULTILABEL:
        above = sums > 1.0 + SUM_ATOL
        if above.any():
            i = int(np.argmax(above))
            raise TableError(
                f"{source}: {int(above.sum())} rows of a multilabel table hold values above 1 (first: row {i}, "
                f"{sums[i]:.6g}); each value is a sigmoid probability in [0, 1] — pass --from-logits if these are logits"
            )
        return
    off = np.abs(sums - 1.0) > SUM_ATOL
    if off.any():
        i = int(np.argmax(off))
        raise TableError(
            f"{source}: {int(off.sum())} rows do not sum to 1 (first: row {i} sums to {sums[i]:.6g}); "
            f"rows must sum to 1 within {SUM_ATOL:g} — pass --from-logits if these are logits, or record "
            '"task": "multilabel" in the sidecar if these are per-class sigmoid probabilities'
        )


def sidecar_path(path: str | os.PathLike) -> Path:
    """`preds/m/oof.csv` -> `preds/m/oof.json`."""
    return Path(path).with_suffix(".json")


def views_path(path: str | os.PathLike) -> Path:
    """`preds/m/oof.csv` -> `preds/m/oof.views.npz`."""
    p = Path(path)
    return p.with_name(p.stem + ".views.npz")


def resolve_table_path(path: str | os.PathLike, kind: str = "oof") -> Path:
    """A table path as given, or `<dir>/<kind>.csv` (or `.parquet`) when `path` is a folder.

    Raises:
        TableError: no such table, or a folder holding the table in two formats (they would share
            one sidecar, so neither can be trusted to be the one it describes).
    """
    p = Path(path)
    if p.is_dir():
        found = [p / f"{kind}{suffix}" for suffix in TABLE_FORMATS.values() if (p / f"{kind}{suffix}").is_file()]
        if len(found) > 1:
            raise TableError(
                f"{p}: holds both {' and '.join(f.name for f in found)}; keep one of them "
                f"(they share the sidecar {kind}.json) or name the file to read"
            )
        p = found[0] if found else p / f"{kind}.csv"
    if not p.is_file():
        raise TableError(f"{p}: no such prediction table; give a CSV or a folder holding {kind}.csv or {kind}.parquet")
    return p


def _format_module(p: Path) -> Any:
    """The reader/writer of a table file: by suffix, CSV unless `.parquet` (pyarrow loads here)."""
    return importlib.import_module(_FORMAT_MODULES.get(p.suffix.lower(), _FORMAT_MODULES[".csv"]))


def read_table(
    path: str | os.PathLike, *, kind: str = "oof", from_logits: bool = False, task: str | None = None
) -> PredTable:
    """Read and check a prediction table and its sidecar.

    Args:
        path: a table file (`.csv`, or `.parquet` by suffix), or a folder holding `<kind>.csv`
            or `<kind>.parquet`.
        kind: which table to take from a folder (`oof` or `test`).
        from_logits: the columns hold logits; apply a softmax (multilabel: a sigmoid) instead of rejecting them.
        task: the task the caller expects; a table recording another is refused, one recording none
            is checked as this task. Default: the sidecar's (multiclass when it records none).

    Raises:
        TableError: unreadable file, no `id` column, non-numeric values, another task than `task`,
            and everything `make_table` checks.
        ClassMismatchError: the sidecar's classes disagree with the columns.
    """
    return _read(resolve_table_path(path, kind), from_logits, task)[0]


def _read(p: Path, from_logits: bool, task: str | None, like: tuple[Any, np.ndarray] | None = None) -> tuple[PredTable, Any]:
    """`read_table` of a resolved path, and its Arrow id column.

    `like`: the Arrow id column and checked ids of a table read before; when this table's ids are
    the same strings in the same order (as a blend's members' usually are), it shares those ids:
    no second million Python strings, no second uniqueness check.
    """
    source = str(p)
    column, classes, probs = _format_module(p).read(p, source)
    shared = like is not None and like[0].equals(column)
    ids = like[1] if shared else column.to_numpy(zero_copy_only=False)
    classes = check_classes_list(classes, source)
    meta = _read_sidecar(p)
    if "classes" in meta and [str(c) for c in meta["classes"]] != classes:
        raise ClassMismatchError(
            f"{source}: columns {preview(classes)} disagree with the sidecar's classes {preview(meta['classes'])}; "
            f"rewrite the table or delete {sidecar_path(p).name}"
        )
    if task is not None:
        meta = {**meta, "task": expect_task(meta, task, source)}
    table = _checked_table(ids, classes, probs, meta, _read_views(p), from_logits, source, copy=False, ids_checked=shared)
    table.path = p
    return table, column


# Probabilities read (bytes) after which `read_tables` hands freed memory back to the system before
# the next table: each 1M-row table at once, small ones together (~1 ms a call, 40 calls a blend)
_RELEASE_BYTES = 16 << 20
# Files together at least this large show a progress bar while read (smaller reads finish before one is useful)
_PROGRESS_BYTES = 64 << 20


def read_tables(
    paths: Sequence[str | os.PathLike], *, kind: str = "oof", from_logits: bool = False, task: str | None = None,
    progress: Progress | None = None, stack: bool = False,
) -> list[PredTable]:
    """`read_table` on each path in order, reporting one step per table to `progress`.

    The bar is shown only when the files add up to at least `_PROGRESS_BYTES` (the CLI's bar is
    silent off a terminal anyway); the arguments and errors are `read_table`'s. Tables holding the
    same ids in the same order share one ids array (checked once), which saves a blend of ten
    1M-row members ~0.6 GB of Python strings and a second per table.

    `stack`: the tables' probabilities are read into one float32 array of shape (n, M, C) (each
    table's `probs` is its view `[:, i, :]`, see `stacked_probs`), so a blend uses them side by side
    without a second copy of all members; each table's own array is freed as soon as it is copied
    in. A table of another shape than the first keeps its own array.
    """
    resolved = [resolve_table_path(p, kind) for p in paths]
    large = progress is not None and sum(p.stat().st_size for p in resolved) >= _PROGRESS_BYTES
    hook = progress if large else NoProgress()
    hook.start(f"reading {len(resolved)} {kind} tables", total=len(resolved))
    try:
        tables, like, into, unreleased = [], None, None, 0
        for i, p in enumerate(resolved):
            table, column = _read(p, from_logits, task, like)
            unreleased += table.probs.nbytes
            like = (column, table.ids)  # the next table shares these ids when it holds the same ones
            if stack and len(resolved) > 1:
                if into is None:
                    into = np.empty((table.probs.shape[0], len(resolved), table.probs.shape[1]), dtype=np.float32)
                if table.probs.shape == into[:, i].shape:
                    into[:, i] = table.probs
                    table.probs = into[:, i]  # the table's own array goes now, not after the last table
            tables.append(table)
            if unreleased >= _RELEASE_BYTES:  # a reader's freed buffers, before the next table's
                release_freed_memory()
                unreleased = 0
            hook.advance()
        return tables
    finally:
        hook.stop()


def stacked_probs(tables: Sequence[PredTable]) -> np.ndarray | None:
    """The one float32 array of shape (n, M, C) whose `[:, i, :]` is `tables[i].probs`, for every i
    (as `read_tables(..., stack=True)` reads them), or None when the tables are not laid out so."""
    if not tables:
        return None
    base = tables[0].probs.base
    if not isinstance(base, np.ndarray) or base.ndim != 3 or base.shape[1] != len(tables) or not base.flags.c_contiguous:
        return None
    for i, t in enumerate(tables):
        p = t.probs
        if (
            p.base is not base or p.shape != (base.shape[0], base.shape[2]) or p.strides != base.strides[::2]
            or p.__array_interface__["data"][0] != base.__array_interface__["data"][0] + i * base.strides[1]
        ):
            return None
    return base


def expect_task(meta: dict[str, Any], task: str, source: str) -> str:
    """`task`, when the sidecar records it or records none.

    Raises:
        TableError: the sidecar records the other task (a softmax table where sigmoid outputs are expected, or the reverse).
    """
    check_task(task, source)
    recorded = meta.get("task")
    if recorded is not None and recorded != task:
        what = {MULTICLASS: "multiclass (softmax: one class per row)", MULTILABEL: "multilabel (a sigmoid per class)"}
        raise TableError(
            f"{source}: the table is {what.get(recorded, repr(recorded))} but {what[task]} is expected here; "
            "give tables of the labels' task (predict with the model card's `task`)"
        )
    return task


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
        path: the table file: `.parquet` writes Parquet, anything else CSV; the sidecar goes beside it.
        force: overwrite existing files (and drop the same table in the other format, which would
            share the sidecar); otherwise `OutputExistsError` before anything is written.

    Returns:
        The table's path.
    """
    from ensemble import __version__

    p = Path(path)
    meta = {
        **table.meta,
        "task": table.task,
        "classes": list(table.classes),
        "n_rows": len(table),
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if table.views:
        meta["views_file"] = views_path(p).name
    outputs = [sidecar_path(p)] + ([views_path(p)] if table.views else []) + [p]
    stale = [q for q in other_format_paths(p) if q.exists()] + ([] if table.views else [views_path(p)])
    if not force:
        check_writable(stale, force=False)  # a stale views file or sibling table would be read as this table's
    with atomic_outputs(outputs, force=force) as temps:
        temps[0].write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        if table.views:
            with open(temps[1], "wb") as f:
                np.savez(f, **table.views)
        _format_module(p).write(temps[-1], table.ids, table.classes, table.probs, meta)
    for q in stale:
        q.unlink(missing_ok=True)
    table.path = p
    return p


def other_format_paths(p: Path) -> list[Path]:
    """The same table in the other formats (`oof.parquet` beside `oof.csv`)."""
    suffixes = TABLE_FORMATS.values()
    return [p.with_suffix(s) for s in suffixes if s != p.suffix.lower()] if p.suffix.lower() in suffixes else []


def _read_sidecar(p: Path) -> dict[str, Any]:
    sp = sidecar_path(p)
    if not sp.is_file():
        return {}
    meta = read_json_object(sp, TableError, what="sidecar", fix="fix or delete it")
    return meta
