"""`ens check`: validate prediction tables (and their alignment with labels) before using them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli import _render
from ensemble.cli._options import ClassesFileOpt, ClassesOpt, LabelSepOpt, class_order


class TableKind(str, Enum):
    """Which table `ens check` reads from a prediction folder."""

    oof = "oof"
    test = "test"


class TaskChoice(str, Enum):
    """`--task`: what the tables must be (`ensemble.task.TASKS`)."""

    multiclass = "multiclass"
    multilabel = "multilabel"


def check(
    tables: Annotated[list[Path], typer.Argument(help="Prediction tables, or folders holding oof.csv/test.csv.")],
    kind: Annotated[TableKind, typer.Option("--kind", help="Which table to read from a folder.")] = TableKind.oof,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Labels CSV the tables must cover exactly.")] = None,
    from_logits: Annotated[bool, typer.Option("--from-logits", help="Columns hold logits: softmax (multilabel: sigmoid) them.")] = False,
    task: Annotated[
        Optional[TaskChoice],
        typer.Option("--task", help="What the tables must be: multiclass (softmax rows) or multilabel (a sigmoid per class). "
                                    "Default: multilabel when the labels hold sets of classes, else as the sidecars record."),
    ] = None,
    id_col: _render.IdColOpt = "id",
    label_col: _render.LabelColOpt = "label",
    label_sep: LabelSepOpt = "|",
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
) -> None:
    """Check tables: ids, classes, probabilities, their task, and (with --labels) that they cover the labelled ids.

    Each table is checked as its task: multiclass rows sum to 1, multilabel values lie in [0, 1].
    Labels holding sets of classes (`a|b`, --label-sep) expect multilabel tables; a softmax table
    where sigmoid outputs are expected, or the reverse, is an error naming the file.
    """
    from ensemble.columns import Columns
    from ensemble.tables import align, read_table
    from ensemble.task import MULTILABEL, common_task

    _render.check_json_dest(json_out, force=force)
    columns = Columns(id=id_col, label=label_col, label_sep=label_sep)
    expected = task.value if task is not None else None
    if labels is not None and expected is None:
        # pandas: only a check against labels pays for it
        from ensemble.labels import read_labels

        if read_labels(labels, columns=columns).task == MULTILABEL:
            expected = MULTILABEL  # label sets: sigmoid tables expected (single labels fit either task)
    read = [read_table(t, kind=kind.value, from_logits=from_logits, task=expected) for t in tables]
    read = align(read)  # same ids and classes across tables (and one task: the join refuses a mix)
    if labels is not None:
        from ensemble.join import join_labels

        read = join_labels(labels, read, classes=class_order(classes, classes_file), columns=columns).tables
    else:
        common_task([(t.source, t.task) for t in read])
    rows = [
        {"table": t.source, "model": t.name, "task": t.task, "rows": len(t), "classes": len(t.classes), "views": sorted(t.views or [])}
        for t in read
    ]
    if not _render.json_to_stdout(json_out):
        _render.out().print(
            _render.table(
                "valid prediction tables", ["table", "model", "task", "rows", "classes", "views"],
                [[r["table"], r["model"], r["task"], r["rows"], r["classes"], ",".join(r["views"]) or "-"] for r in rows],
            )
        )
    _render.emit_json(rows, json_out, force=force)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
