"""Prediction tables as CSV text, read and written by pyarrow's multi-threaded CSV engine.

Reading parses the class columns straight to float32 (fast_float, correctly rounded) and the `id`
column as strings, so no float64 or pandas copy of the table is ever made. Writing gives every
float32 its shortest text that reads back bit-exactly (pyarrow's float formatting); the header is
written by Python's `csv` module so it is quoted only where needed, as before.

The shape checks (ragged rows, trailing commas, header) keep their one-line messages from
`ensemble._io`; pyarrow only parses well-formed files, and its errors lead to those messages.

`prefetch` parses a command's tables in a thread while the command is still importing; `read` takes
such an early parse of an unchanged file and checks it like any other.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ensemble._arrow import probs_from_columns, table_of
from ensemble._io import csv_shape_problem, file_identity, first_line, in_background
from ensemble.errors import TableError

if TYPE_CHECKING:
    from concurrent.futures import Future

# what pandas read as NaN before, so a missing cell is still "NaN or inf" rather than a parse error
_NULLS = ["", "nan", "NaN", "NA"]
_UNREADABLE = "write it with ens or pandas.to_csv"
_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to float")
_NEEDS_QUOTES = '[,"\r\n]'


def read(p: Path, source: str) -> tuple[pa.ChunkedArray, list[str], np.ndarray]:
    """The ids (an Arrow string column), the header's class names and float32 probabilities (n, C).

    Raises:
        TableError: unreadable text, a header or row shape problem, non-numeric cells, no rows.
    """
    header = _read_header(p, source)
    table = _parse(p, source, header)
    if table.num_rows == 0:
        raise TableError(f"{source}: no rows (only a header); a table needs one row per sample")
    return table.column(0), header[1:], probs_from_columns(table.columns[1:], table.num_rows)


def _read_header(p: Path, source: str) -> list[str]:
    """The header, after checking it and the first row's shape."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:  # a BOM is accepted, as labels CSVs do
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise TableError(f"{source}: not a readable CSV ({first_line(e)}); {_UNREADABLE}") from None
    if not header:
        raise TableError(f"{source}: not a readable CSV (the file is empty); {_UNREADABLE}")
    if header[0] != "id":
        raise TableError(f"{source}: first column is {header[0]!r}, expected 'id' followed by one column per class")
    if csv_shape_problem(p, head=1) and (problem := csv_shape_problem(p)):
        raise TableError(f"{source}: {problem}")
    unnamed = [i + 1 for i, c in enumerate(header) if not c.strip()]
    if unnamed:
        raise TableError(f"{source}: header column {unnamed[0]} has no name; name every class column")
    return header


def _read_csv(p: Path, n_columns: int, newlines_in_values: bool = False) -> pa.Table:
    """pyarrow's parse of the rows: column 0 as strings, the others as float32, named by position."""
    names = [f"c{i}" for i in range(n_columns)]  # by position: the header is checked by the caller
    types = {name: pa.string() if i == 0 else pa.float32() for i, name in enumerate(names)}
    return pacsv.read_csv(
        p,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pacsv.ParseOptions(newlines_in_values=newlines_in_values),
        convert_options=pacsv.ConvertOptions(column_types=types, null_values=_NULLS, strings_can_be_null=False),
    )


def _parse(p: Path, source: str, header: list[str], *, newlines_in_values: bool = False) -> pa.Table:
    if not newlines_in_values and (early := _prefetched(p, len(header))) is not None:
        return early
    try:
        return _read_csv(p, len(header), newlines_in_values)
    except pa.ArrowInvalid as e:
        message = str(e)
        if (m := _CONVERSION.search(message)) is not None:
            j = int(m.group(1))
            raise TableError(f"{source}: {_non_numeric(p, header, j) or first_line(e)}; "
                             "probabilities are numbers only — fix that cell") from None
        if "CSV parse error" in message:
            if problem := csv_shape_problem(p):
                raise TableError(f"{source}: {problem}") from None
            if not newlines_in_values:  # a quoted field holding a line break: the slower parse reads it
                return _parse(p, source, header, newlines_in_values=True)
        raise TableError(f"{source}: not a readable CSV ({first_line(e)}); {_UNREADABLE}") from None


def _non_numeric(p: Path, header: list[str], j: int) -> str | None:
    """'class column ... holds a non-numeric value (row r: 'x')' for column `j` (error path only)."""
    try:
        texts = pacsv.read_csv(
            p,
            read_options=pacsv.ReadOptions(column_names=[f"c{i}" for i in range(len(header))], skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                include_columns=[f"c{j}"], column_types={f"c{j}": pa.string()}, strings_can_be_null=False),
        ).column(0).to_pylist()
    except pa.ArrowInvalid:
        return None
    for row, text in enumerate(texts, start=1):
        if text in _NULLS:
            continue
        try:
            float(text)
        except ValueError:
            return f"class column {header[j]!r} holds a non-numeric value (row {row}: {text!r})"
    return None


def write(path: Path, ids: np.ndarray, classes: list[str], probs: np.ndarray, meta: dict[str, Any]) -> None:
    """Write `id` then one column per class: each float32 as its shortest exact text (`meta`: the sidecar's)."""
    table = table_of(ids, probs, [f"c{i}" for i in range(len(classes) + 1)])
    quoting = "needed" if pc.any(pc.match_substring_regex(table.column(0), _NEEDS_QUOTES)).as_py() else "none"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(["id", *classes])  # quoted where needed, as pandas does
    with open(path, "wb") as f:
        f.write(text.getvalue().encode("utf-8"))
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style=quoting))


# Files together at most this large are parsed ahead by `prefetch` (the parsed tables wait in memory
# until read; larger inputs are read one at a time, as the memory targets of big blends need).
PREFETCH_BYTES = 256 << 20
# a file's version (`file_identity`) -> its parse by the prefetch thread: (column count, table)
_PREFETCHED: dict[tuple, Future[tuple[int, pa.Table]]] = {}


def forget_prefetched() -> None:
    """Drop the early parses not read (a command that ended before reading them, e.g. on an error):
    the CLI calls this after every command, so an in-process caller keeps none."""
    _PREFETCHED.clear()


def prefetch(paths: list[Path]) -> None:
    """Parse these CSV tables in a daemon thread, in order, for `read` to take when it gets to them.

    A command starts this before its heavy imports: pyarrow parses without the interpreter lock, so
    the parse of a blend's tables runs on the core the imports leave idle (bench_cli.py's blend
    problem: ~0.15 s of 40 tables). Only a hint: `read` checks each file itself (header, shape,
    values) and parses it again when no early parse of this version of the file (`file_identity`)
    and column count is ready; files together larger than PREFETCH_BYTES, or unreadable ones, are left alone.
    """
    forget_prefetched()  # an earlier command's leftovers
    total = 0
    for p in paths:
        try:
            total += p.stat().st_size
        except OSError:
            continue
        if total > PREFETCH_BYTES:
            return
    _PREFETCHED.update(in_background(paths, _parse_ahead, "ens-prefetch"))


def _parse_ahead(p: Path) -> tuple[int, pa.Table]:
    """The column count of `p`'s header and pyarrow's parse of its rows, as `read` would make them."""
    with open(p, newline="", encoding="utf-8-sig") as f:
        n_columns = len(next(csv.reader(f), []))
    return n_columns, _read_csv(p, n_columns)


def prefetch_folders(folders: list[Path], kinds: tuple[str, ...]) -> None:
    """`prefetch` of each prediction folder's `<kind>.csv` for each kind (a `.csv` path given instead of
    a folder is taken as it is), as `read_tables` will resolve them."""
    paths = []
    for kind in kinds:
        for d in folders:
            d = Path(d)
            if d.is_dir():
                if (d / f"{kind}.csv").is_file():
                    paths.append(d / f"{kind}.csv")
            elif d.suffix == ".csv" and kind == kinds[0]:
                paths.append(d)
    prefetch(paths)


def _prefetched(p: Path, n_columns: int) -> pa.Table | None:
    """The early parse of `p` with `n_columns` columns, waiting for it if it is under way; None when there is none."""
    try:
        future = _PREFETCHED.pop(file_identity(p), None)
    except OSError:
        return None
    if future is None:
        return None
    try:
        n, table = future.result()
    except Exception:  # noqa: BLE001 - parsed again by the caller, whose errors say what is wrong
        return None
    return table if n == n_columns else None
