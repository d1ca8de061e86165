"""Atomic output and hashing: nothing partial is ever left behind."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads only when a CSV is read
    import pandas as pd

from ensemble.errors import OutputExistsError


def check_writable(paths: Sequence[str | os.PathLike], *, force: bool) -> None:
    """Raise `OutputExistsError` for the first existing path unless `force`."""
    if force:
        return
    for p in map(Path, paths):
        if p.exists():
            raise OutputExistsError(f"{p} exists; pass --force (force=True) to overwrite it or choose another output")


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
    temps = []
    for p in finals:
        p.parent.mkdir(parents=True, exist_ok=True)
        temps.append(p.with_name(f".{p.name}.{tag}.tmp"))
    try:
        yield temps
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


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


def read_string_csv(path: str | os.PathLike, error: type[Exception], *, missing: str) -> pd.DataFrame:
    """Read a CSV with every cell a string (ids keep their leading zeros, "NA" stays "NA").

    Args:
        path: the file.
        error: the `EnsembleError` subclass to raise.
        missing: the message after "<path>: " when the file does not exist (say what it should be).

    Raises:
        error: no such file, or not a readable CSV.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: {missing}")
    try:
        return pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise error(f"{p}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None


def json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the usual things that end up in recipes and reports
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
