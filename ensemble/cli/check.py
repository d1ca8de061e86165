"""`ens check`: validate prediction tables (and their alignment with labels) before using them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli import _render
from ensemble.labels import Columns, read_labels
from ensemble.tables import align, read_table


def check(
    tables: Annotated[list[Path], typer.Argument(help="Prediction tables, or folders holding oof.csv/test.csv.")],
    kind: Annotated[str, typer.Option("--kind", help="Which table to read from a folder: oof or test.")] = "oof",
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Labels CSV the tables must cover exactly.")] = None,
    from_logits: Annotated[bool, typer.Option("--from-logits", help="Columns hold logits: softmax them.")] = False,
    id_col: Annotated[str, typer.Option("--id-col")] = "id",
    label_col: Annotated[str, typer.Option("--label-col")] = "label",
    json_out: _render.JsonOpt = None,
) -> None:
    """Check tables: ids, classes, probabilities, and (with --labels) that they cover the labelled ids."""
    read = [read_table(t, kind=kind, from_logits=from_logits) for t in tables]
    read = align(read)  # same ids and classes across tables
    if labels is not None:
        lab = read_labels(labels, classes=read[0].classes, columns=Columns(id=id_col, label=label_col))
        read = align(read, lab.ids, ref_name=str(labels))
    rows = [
        {"table": t.source, "model": t.name, "rows": len(t), "classes": len(t.classes), "views": sorted(t.views or [])}
        for t in read
    ]
    _render.out().print(
        _render.table(
            "valid prediction tables", ["table", "model", "rows", "classes", "views"],
            [[r["table"], r["model"], r["rows"], r["classes"], ",".join(r["views"]) or "-"] for r in rows],
        )
    )
    _render.emit_json(rows, json_out)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
