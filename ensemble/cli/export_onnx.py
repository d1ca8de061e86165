"""`ens export-onnx`: fold checkpoints of a model card to ONNX files, each checked against torch."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli import _render
from ensemble.task import TASKS

Task = Enum("Task", {name: name for name in TASKS}, type=str)


def export_onnx(
    card: Annotated[Path, typer.Option("--card", help="Model card (TOML) of a timm model with checkpoints.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for fold<k>.onnx and the ONNX model card <name>.toml.")],
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset: 7 to 20 for torchscript, up to 23 for dynamo (which writes 18 or later); torch 2.x's ranges.")] = 17,
    atol: Annotated[float, typer.Option("--atol", help="Largest allowed |ONNX Runtime - torch| logit difference.")] = 1e-4,
    batch: Annotated[int, typer.Option("--batch", help="Rows of the random parity-check batch.")] = 2,
    exporter: Annotated[str, typer.Option("--exporter", help="auto (TorchScript, then dynamo if it fails), or one exporter by name.")] = "auto",
    folds: Annotated[Optional[str], typer.Option("--folds", help="Only these folds, e.g. 0,2 (default: every checkpoint).")] = None,
    ema: Annotated[bool, typer.Option("--ema", help="Export the EMA weights of the checkpoints.")] = False,
    task: Annotated[Optional[Task], typer.Option("--task", help="multiclass or multilabel (recorded in the ONNX "
                                                 "metadata and the card); default: the card's.")] = None,
    trust_checkpoint: Annotated[
        bool, typer.Option("--trust-checkpoint", help="Allow checkpoints holding pickled Python objects (runs code from them).")
    ] = False,
    force: _render.ForceOpt = False,
    seed: _render.SeedOpt = 42,
    json_out: _render.JsonOpt = None,
    quiet: _render.QuietOpt = False,
) -> None:
    """Export each fold checkpoint to ONNX (dynamic batch) and check it against torch in ONNX Runtime."""
    from ensemble.predict.export import export_onnx as run

    if quiet:
        _render.setup_logging(quiet=True)
    to_stdout = _render.json_to_stdout(json_out)
    _render.check_json_dest(json_out, force=force)
    overrides = {"folds": folds, "ema": ema or None, "trust_checkpoint": trust_checkpoint,
                 "task": task.value if task is not None else None}
    progress = _render.RichProgress(quiet)
    rows = run(card, out, overrides=overrides, opset=opset, atol=atol, batch=batch, force=force, seed=seed,
               exporter=exporter, progress=progress)
    if not to_stdout:  # with --json -, stdout holds the JSON only
        _render.out().print(
            _render.table(
                f"ONNX export (card {rows[0]['card']})" if rows else "ONNX export",
                ["fold", "file", "max abs diff", "opset", "exporter"],
                [[r["fold"], r["file"], f"{r['max_abs_diff']:.2e}", r["opset"], r["exporter"]] for r in rows],
            )
        )
    _render.emit_json(rows, json_out, force=force)


def register(app: typer.Typer) -> None:
    app.command("export-onnx")(export_onnx)
