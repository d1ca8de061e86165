"""Rendering shared by every command: consoles, tables, JSON, progress, logging."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ensemble.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress

# rich.progress, rich.logging and ensemble._io load where they are used: `ens --help` needs none of them

# Options that several commands share, defined once.
JsonOpt = Annotated[
    Optional[Path], typer.Option("--json", help="Also write the results as JSON to this file ('-' for stdout).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, warnings only.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (results are reproducible run to run).")]
# The labels / data CSV's columns: `--id-col` and friends always name a column of that file, in every command.
IdColOpt = Annotated[str, typer.Option("--id-col", help="Id column of the labels / data CSV.")]
LabelColOpt = Annotated[str, typer.Option("--label-col", help="Label column of the labels CSV (class name or index).")]
FoldColOpt = Annotated[str, typer.Option("--fold-col", help="Fold column of the labels / data CSV.")]
PathColOpt = Annotated[str, typer.Option("--path-col", help="Image path column of the data CSV.")]
# The submission CSV's columns (a file of its own, so flags of their own).
SubmissionIdColOpt = Annotated[str, typer.Option("--submission-id-col", help="Id column of the submission CSV.")]
TargetColOpt = Annotated[str, typer.Option("--target-col", help="Target column of the submission CSV.")]


def parse_floats(text: str | None, flag: str, hint: str) -> list[float] | None:
    """A comma-separated list of numbers from an option (None when the option was not given)."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a comma-separated list of numbers; {hint}") from None


def out() -> Console:
    """Console for results (stdout); wide when not a terminal so tables are not squashed."""
    return Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False)


def err() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def error_line(message: str) -> None:
    """One red line on stderr, never wrapped."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True  # messages quote paths like [/x]
    )


def setup_logging(quiet: bool = False) -> None:
    """Library warnings/info (logger `ensemble`) go to stderr through rich."""
    from rich.logging import RichHandler

    logger = logging.getLogger("ensemble")
    logger.handlers.clear()
    handler = RichHandler(console=err(), show_time=False, show_path=False, markup=False)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table; numbers right-aligned, floats to 4 decimals."""
    t = Table(title=title, title_justify="left")
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) for r in rows if r[i] is not None) for i in range(len(columns))]
    for name, is_num in zip(columns, numeric):
        t.add_column(str(name), justify="right" if is_num else "left")
    for r in rows:
        t.add_row(*(fmt(v) for v in r))
    return t


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def json_to_stdout(dest: Path | None) -> bool:
    """Whether `--json -` asked for JSON on stdout (then stdout holds the JSON only: no tables)."""
    return dest is not None and str(dest) == "-"


def check_json_dest(dest: Path | None, *, force: bool) -> None:
    """Refuse an existing (without `force`) or unwritable `--json` file before the command's work."""
    if dest is not None and not json_to_stdout(dest):
        from ensemble._io import check_writable

        check_writable([dest], force=force)


def emit_json(obj: Any, dest: Path | None, *, force: bool = False) -> None:
    """Write `obj` as JSON to `dest` ('-' = stdout); nothing when `dest` is None.

    An existing file is refused unless `force` (the one output rule); commands check `dest` with
    `ensemble._io.check_writable` before their work, so the refusal comes before anything is spent.
    """
    if dest is None:
        return
    from ensemble._io import atomic_outputs, json_default

    text = json.dumps(obj, indent=2, default=json_default)
    if str(dest) == "-":
        sys.stdout.write(text + "\n")
        return
    with atomic_outputs([dest], force=force) as (tmp,):
        tmp.write_text(text + "\n", encoding="utf-8")


class RichProgress:
    """The library's `Progress` hook as a rich bar on stderr; silent when quiet or not a TTY."""

    def __init__(self, quiet: bool = False) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: Any = None

    def start(self, description: str, total: int | None) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=err(), transient=False,
            )
            self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
