"""`ens check`: validate prediction tables (and their alignment with labels) before using them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli import _render
from ensemble.cli._options import ClassesFileOpt, ClassesOpt, class_order


class TableKind(str, Enum):
    """Which table `ens check` reads from a prediction folder."""

    oof = "oof"
    test = "test"


def check(
    tables: Annotated[list[Path], typer.Argument(help="Prediction tables, or folders holding oof.csv/test.csv.")],
    kind: Annotated[TableKind, typer.Option("--kind", help="Which table to read from a folder.")] = TableKind.oof,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Labels CSV the tables must cover exactly.")] = None,
    from_logits: Annotated[bool, typer.Option("--from-logits", help="Columns hold logits: softmax them.")] = False,
    id_col: _render.IdColOpt = "id",
    label_col: _render.LabelColOpt = "label",
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
) -> None:
    """Check tables: ids, classes, probabilities, and (with --labels) that they cover the labelled ids."""
    from ensemble.join import join_labels
    from ensemble.labels import Columns, read_labels
    from ensemble.tables import align, read_table

    _render.check_json_dest(json_out, force=force)
    read = [read_table(t, kind=kind.value, from_logits=from_logits) for t in tables]
    read = align(read)  # same ids and classes across tables
    if labels is not None:
        lab = read_labels(labels, classes=read[0].classes, columns=Columns(id=id_col, label=label_col))
        read = join_labels(lab, read, classes=class_order(classes, classes_file)).tables
    rows = [
        {"table": t.source, "model": t.name, "rows": len(t), "classes": len(t.classes), "views": sorted(t.views or [])}
        for t in read
    ]
    if not _render.json_to_stdout(json_out):
        _render.out().print(
            _render.table(
                "valid prediction tables", ["table", "model", "rows", "classes", "views"],
                [[r["table"], r["model"], r["rows"], r["classes"], ",".join(r["views"]) or "-"] for r in rows],
            )
        )
    _render.emit_json(rows, json_out, force=force)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
