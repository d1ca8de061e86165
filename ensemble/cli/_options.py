"""Options of the commands that join tables to labels (oof-report, blend, select, check), defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ClassesOpt = Annotated[
    Optional[str],
    typer.Option("--classes", help="Class order that integer labels index, comma-separated (default: the tables' recorded order)."),
]
ClassesFileOpt = Annotated[
    Optional[Path], typer.Option("--classes-file", help="Class order that integer labels index, one name per line.")
]


def class_order(classes: str | None, classes_file: Path | None) -> list[str] | None:
    """The explicit class order from `--classes`/`--classes-file`, or None."""
    from ensemble.join import parse_classes

    return parse_classes(classes, classes_file)
