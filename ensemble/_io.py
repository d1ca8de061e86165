"""Atomic output and hashing: nothing partial is ever left behind."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads only when a CSV is read
    from concurrent.futures import Future

    import pandas as pd

from ensemble.errors import OutputError, OutputExistsError


_FIX = "choose another output path or fix its permissions"


def check_writable(paths: Sequence[str | os.PathLike], *, force: bool) -> None:
    """Refuse outputs that cannot be written, and existing ones unless `force`: before any work.

    Raises:
        OutputError: a path is a folder, lies under a file, or its folder does not accept new files
            (no permission, read-only file system, /proc...).
        OutputExistsError: a path exists and `force` is False.
    """
    probed: dict[Path, str | None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            raise OutputError(f"cannot write {p}: it is a folder, not a file; give a file path or choose another output")
        folder = _nearest_existing(p.parent)
        if not folder.is_dir():
            raise OutputError(f"cannot write {p}: {folder} is a file, not a folder; choose another output path")
        if folder not in probed:
            probed[folder] = _probe(folder)
        if probed[folder] is not None:
            raise OutputError(f"cannot write {p}: {folder} does not accept new files ({probed[folder]}); {_FIX}")
        if not force and (p.exists() or p.is_symlink()):
            raise OutputExistsError(f"{p} exists; pass --force (force=True) to overwrite it or choose another output")


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _probe(folder: Path) -> str | None:
    """None when a file can be created in `folder`, else why not (permissions alone miss /proc, read-only mounts)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".ens-probe-")
    except OSError as e:
        return _reason(e)
    os.close(fd)
    os.unlink(name)
    return None


def _reason(e: OSError) -> str:
    return (e.strerror or type(e).__name__).lower()


def output_error(e: OSError, path: str | os.PathLike) -> OutputError:
    """The one line for an OS error met while writing `path`."""
    return OutputError(f"cannot write {path}: {_reason(e)}; {_FIX}")


@contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike], *, force: bool = False) -> Iterator[list[Path]]:
    """Write several files all-or-nothing.

    Yields one temporary path per output, in the same folder (so the rename is atomic). When the
    block ends without error, each temporary is renamed onto its output in the order given (put the
    file readers look for first last); on any error, every temporary is removed and no output is
    touched.

    Args:
        paths: the final output paths.
        force: overwrite existing outputs; otherwise `OutputExistsError` before anything is written.
    """
    finals = [Path(p) for p in paths]
    check_writable(finals, force=force)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temps = [p.with_name(f".{p.name}.{tag}.tmp") for p in finals]
    final_of = {os.fspath(t): f for t, f in zip(temps, finals)}
    try:
        for p in finals:
            _os_call(p.parent.mkdir, p, parents=True, exist_ok=True)
        try:
            yield temps
        except OSError as e:  # the caller's write of a temporary: name the output, not the temporary
            if os.fspath(e.filename or "") not in final_of:
                raise
            raise output_error(e, final_of[os.fspath(e.filename)]) from None
        for tmp, final in zip(temps, finals):
            _os_call(os.replace, final, tmp, final)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _os_call(fn: Any, path: Path, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except OSError as e:
        raise output_error(e, path) from None


def write_json(path: str | os.PathLike, obj: Any, *, force: bool = False) -> None:
    """Atomically write `obj` as indented JSON."""
    with atomic_outputs([path], force=force) as (tmp,):
        tmp.write_text(json.dumps(obj, indent=2, default=json_default) + "\n", encoding="utf-8")


def read_json_object(path: str | os.PathLike, error: type[Exception], *, what: str, fix: str) -> dict[str, Any]:
    """Read a JSON file that must hold an object (sidecar, recipe, metrics...).

    Args:
        path: the file (its existence is the caller's to check, with its own advice).
        error: the `EnsembleError` subclass to raise.
        what: what the file is, for the message ("sidecar", "recipe").
        fix: what the user should do, ending the message.

    Raises:
        error: invalid JSON, or JSON that is not an object.
    """
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{p}: {what} is not valid JSON ({getattr(e, 'msg', e)}); {fix}") from None
    if not isinstance(obj, dict):
        raise error(f"{p}: {what} must hold a JSON object, not {type(obj).__name__}; {fix}")
    return obj


def read_string_csv(
    path: str | os.PathLike, error: type[Exception], *, missing: str, allow_empty: bool = False
) -> pd.DataFrame:
    """Read a CSV with every cell a string (ids keep their leading zeros, "NA" stays "NA").

    Every row must have as many fields as the header (pandas would otherwise shift a long first
    row's columns, taking its first field as the index, and pad short rows with empty cells).

    Args:
        path: the file.
        error: the `EnsembleError` subclass to raise.
        missing: the message after "<path>: " when the file does not exist (say what it should be).
        allow_empty: accept a file with a header and no rows.

    Raises:
        error: no such file, not a readable CSV, a row whose field count differs from the header's,
            or no rows.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: {missing}")
    problem = csv_shape_problem(p)
    if problem:
        raise error(f"{p}: {problem}")
    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise error(f"{p}: not a readable CSV ({first_line(e)})") from None
    if len(frame) == 0 and not allow_empty:
        raise error(f"{p}: no rows (only a header); give a CSV with one row per sample")
    return frame


def csv_shape_problem(path: Path, *, head: int | None = None) -> str | None:
    """What is wrong with the CSV's shape, or None: unreadable text, or a row whose field count
    differs from the header's (a trailing comma on every row is named as such).

    Args:
        path: the file (UTF-8, a BOM allowed).
        head: look at this many data rows only (None: all).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return "not a readable CSV (the file is empty); write it with pandas.to_csv or a spreadsheet's CSV export"
            named = [h for h in header[:-1]] + ([header[-1]] if header[-1] else [])
            twice = sorted({h for h in named if named.count(h) > 1 and h})
            if twice:  # pandas would silently rename the second one ("id.1")
                return f"column {twice[0]!r} appears twice in the header; give every column its own name"
            return _ragged(reader, len(header), header[-1] == "", head)
    except (UnicodeDecodeError, csv.Error) as e:
        return f"not a readable CSV ({first_line(e)}); save it as UTF-8 CSV"
    except OSError as e:
        return f"cannot read it ({_reason(e)})"


def _ragged(reader: Any, m: int, header_trails: bool, head: int | None) -> str | None:
    n = 0
    first_bad: tuple[int, int, int] | None = None
    trailing = True  # every row so far ends with one extra, empty field
    for row in reader:
        if not row:  # a blank line, which pandas skips too
            continue
        n += 1
        extra = len(row) == m + 1 and row[-1] == ""
        trailing = trailing and (extra or (header_trails and len(row) == m and row[-1] == ""))
        if len(row) != m and first_bad is None:
            first_bad = (n, reader.line_num, len(row))
        if (first_bad and not trailing) or (head is not None and n >= head):
            break
    if n and trailing and (first_bad or header_trails):
        return "every row ends with a trailing comma (an extra empty field); remove the trailing commas"
    if first_bad:
        row, line, k = first_bad
        return f"row {row} (line {line}) has {k} fields, the header has {m}; every row needs one field per column"
    return None


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), for a one-line error."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the usual things that end up in recipes and reports
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def file_identity(path: str | os.PathLike) -> tuple[str, int, int, int, int, int]:
    """What tells one version of a file from another for the caches of parses and hashes: its resolved
    path, device, inode, size, and modification and change times (a rewrite moves the change time even
    when it keeps the size and restores the modification time, as `cp -p` or `rsync -a` do).

    Raises:
        OSError: the file cannot be stat'ed.
    """
    p = Path(path)
    st = p.stat()
    return str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def in_background(paths: Sequence[str | os.PathLike], work: Callable[[Path], Any], name: str) -> dict[tuple, Future]:
    """Run `work(path)` on each file in one daemon thread, in order, while the caller goes on.

    Returns:
        Each file's version (`file_identity`) -> the Future of its result (or of what `work` raised).
        A file that cannot be stat'ed is left out, a repeated one done once; where no thread can be
        started (a process or thread limit), nothing is and the mapping is empty.
    """
    from concurrent.futures import Future
    from threading import Thread

    jobs: dict[tuple, tuple[Path, Future]] = {}
    for p in map(Path, paths):
        try:
            key = file_identity(p)
        except OSError:
            continue
        jobs.setdefault(key, (p, Future()))

    def run() -> None:
        for p, future in jobs.values():
            try:
                future.set_result(work(p))
            except Exception as e:  # noqa: BLE001 - the caller decides (it redoes the work itself)
                future.set_exception(e)

    if not jobs:
        return {}
    try:
        Thread(target=run, name=name, daemon=True).start()
    except RuntimeError:
        return {}
    return {key: future for key, (_, future) in jobs.items()}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
