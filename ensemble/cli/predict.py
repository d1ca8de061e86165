"""`ens predict`: model cards (or flags) + a data CSV -> per-fold OOF / test probability tables."""

from __future__ import annotations

import os
import signal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ensemble.cli import _render
from ensemble.columns import TABLE_FORMATS
from ensemble.predict.options import AMP_MODES, SPLITS
from ensemble.task import TASKS

if TYPE_CHECKING:  # torch loads when the command runs, not when `ens --help` lists it
    from ensemble.predict.api import PredictOptions, PredictResult

# str Enums built from the one list of names, so typer lists (and checks) the choices
Split = Enum("Split", {name: name for name in SPLITS}, type=str)
Amp = Enum("Amp", {name: name for name in AMP_MODES.names()}, type=str)
TableFormat = Enum("TableFormat", {name: name for name in TABLE_FORMATS}, type=str)
Task = Enum("Task", {name: name for name in TASKS}, type=str)

_MODEL = "Model (override the card)"
_DATA = "Data"
_RUN = "Run"


def _opt(*names: str, help: str, panel: str = _MODEL) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, rich_help_panel=panel)


def predict(
    data: Annotated[Path, _opt("--data", help="Data CSV: id, path (relative to the CSV or --root), fold for oof.", panel=_DATA)],
    split: Annotated[Split, _opt("--split", help="oof: fold k's model on fold k's rows; test: every fold on every row.", panel=_DATA)],
    card: Annotated[Optional[list[Path]], _opt("--card", help="Model card (TOML); repeat for several models.", panel=_DATA)] = None,
    root: Annotated[Optional[Path], _opt("--root", help="Folder the image paths are relative to.", panel=_DATA)] = None,
    id_col: _render.IdColOpt = "id",
    path_col: _render.PathColOpt = "path",
    fold_col: _render.FoldColOpt = "fold",
    out: Annotated[Path, _opt("--out", help="Output folder: <out>/<model>/{oof,test,test_fold<k>}.csv.", panel=_DATA)] = Path("preds"),
    table_format: Annotated[TableFormat, _opt("--format", help="Table file format (same columns and sidecar).", panel=_DATA)] = TableFormat.csv,
    tta: Annotated[str, _opt("--tta", help="Views added to identity, e.g. hflip,center_crop (none: identity only); "
                             "see `ens predict --list-tta`.", panel=_RUN)] = "none",
    list_tta: Annotated[bool, typer.Option("--list-tta", help="List the TTA views and merges, and exit.", rich_help_panel=_RUN,
                                           is_eager=True, callback=lambda v: _list_tta() if v else None)] = False,
    merge: Annotated[str, _opt("--merge", help="How the views' probabilities merge, per class for multilabel "
                               "(see --list-tta).", panel=_RUN)] = "mean",
    save_views: Annotated[bool, _opt("--save-views", help="Keep every view's probabilities (<table>.views.npz).", panel=_RUN)] = False,
    batch_size: Annotated[int, _opt("--batch-size", help="Images per batch and per forward.", panel=_RUN)] = 64,
    workers: Annotated[str, _opt("--workers", help="Decoding processes (0: decode in the main process); auto: none on a CPU "
                                 "below 8 cores, up to 8 per GPU.", panel=_RUN)] = "auto",
    device: Annotated[str, _opt("--device", help="auto | cpu | cuda | cuda:N.", panel=_RUN)] = "auto",
    amp: Annotated[Amp, _opt("--amp", help="Mixed precision on CUDA (auto: bf16 where supported, else fp16; none on the CPU).", panel=_RUN)] = Amp.auto,
    channels_last: Annotated[bool, _opt("--channels-last/--no-channels-last", help="NHWC memory format for torch models.", panel=_RUN)] = True,
    fuse_bn: Annotated[bool, _opt("--fuse-bn/--no-fuse-bn", help="Fold BatchNorms into the convolutions before them (torch models).", panel=_RUN)] = True,
    skip_bad: Annotated[bool, _opt("--skip-bad", help="Skip missing/corrupt images (listed at the end) instead of failing.", panel=_RUN)] = False,
    resume: Annotated[bool, _opt("--resume/--no-resume", help="Reuse finished parts whose inputs match.", panel=_RUN)] = True,
    arch: Annotated[Optional[str], _opt("--arch", help="timm architecture.")] = None,
    checkpoint: Annotated[Optional[list[str]], _opt("--checkpoint", help="Checkpoint per fold (repeat, in fold order) or a {fold} pattern.")] = None,
    onnx: Annotated[Optional[list[str]], _opt("--onnx", help="ONNX file per fold (repeat) or a {fold} pattern.")] = None,
    folds: Annotated[Optional[str], _opt("--folds", help="Only these folds' weights, e.g. 0,2.")] = None,
    classes: Annotated[Optional[str], _opt("--classes", help="Class names in index order, comma-separated.")] = None,
    classes_file: Annotated[Optional[Path], _opt("--classes-file", help="Text file: one class name per line.")] = None,
    num_classes: Annotated[Optional[int], _opt("--num-classes", help="Number of classes (named 0..C-1).")] = None,
    img_size: Annotated[Optional[str], _opt("--img-size", help="Input size: 224 or 224,256 (height,width).")] = None,
    mean: Annotated[Optional[str], _opt("--mean", help="Normalisation mean, e.g. 0.485,0.456,0.406.")] = None,
    std: Annotated[Optional[str], _opt("--std", help="Normalisation std.")] = None,
    crop_pct: Annotated[Optional[float], _opt("--crop-pct", help="Resize to img_size/crop_pct, then center crop.")] = None,
    interpolation: Annotated[Optional[str], _opt("--interpolation", help="bilinear | bicubic | nearest | ...")] = None,
    resize_mode: Annotated[Optional[str], _opt("--resize-mode", help="crop (keep aspect, center crop) | squash.")] = None,
    name: Annotated[Optional[str], _opt("--name", help="Model name (output folder).")] = None,
    family: Annotated[Optional[str], _opt("--family", help="Seed family of the model.")] = None,
    task: Annotated[Optional[Task], _opt("--task", help="multiclass (softmax) or multilabel (a sigmoid per class); "
                                         "default: the card's, else multiclass.")] = None,
    ema: Annotated[bool, _opt("--ema", help="Use the checkpoints' EMA weights.")] = False,
    trust_checkpoint: Annotated[bool, _opt("--trust-checkpoint", help="Allow checkpoints holding pickled Python objects (runs code from them).")] = False,
    force: _render.ForceOpt = False,
    json_out: _render.JsonOpt = None,
    quiet: _render.QuietOpt = False,
) -> None:
    """Predict OOF or test probabilities with TTA; each image decoded once for every model and fold."""
    _passive_openmp()
    from ensemble.errors import DistributedError
    from ensemble.labels import Columns
    from ensemble.predict.api import PredictOptions, run
    from ensemble.predict.distributed import is_rank0

    if quiet:
        _render.setup_logging(quiet=True)
    to_stdout = _render.json_to_stdout(json_out)
    if is_rank0():
        _render.check_json_dest(json_out, force=force)
    overrides = {
        "arch": arch, "checkpoints": _one_or_list(checkpoint), "onnx": _one_or_list(onnx), "folds": folds,
        "classes": classes, "classes_file": classes_file, "num_classes": num_classes, "img_size": img_size,
        "mean": mean, "std": std, "crop_pct": crop_pct, "interpolation": interpolation, "resize_mode": resize_mode,
        "name": name, "family": family, "ema": ema, "trust_checkpoint": trust_checkpoint,
        "task": task.value if task is not None else None,
    }
    options = PredictOptions(
        split=split, overrides=overrides, tta=tta, merge=merge, out_dir=out, table_format=table_format,
        batch_size=batch_size, workers=workers,
        device=device, amp=amp, save_views=save_views, skip_bad=skip_bad, force=force, resume=resume,
        columns=Columns(id=id_col, path=path_col, fold=fold_col), root=root, channels_last=channels_last, fuse_bn=fuse_bn,
    )
    try:
        result = run(card, data, options, progress=_render.RichProgress(quiet))
    except DistributedError:
        # the launcher's SIGTERM to the other ranks may come while this error is printed: the
        # process is about to exit, let nothing cut the one line off
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise
    if not is_rank0():  # a distributed run: rank 0 reports for every rank
        return
    if not to_stdout:  # with --json -, stdout holds the JSON only
        _print_summary(result, options)
    _render.emit_json({"tables": result.summary, "skipped": result.skipped}, json_out, force=force)


def _print_summary(result: PredictResult, options: PredictOptions) -> None:
    """The tables written (and the images skipped) as rich tables on stdout."""
    console = _render.out()
    console.print(_render.table(
        f"ens predict ({options.split}) -> {options.out_dir}", ["model", "table", "folds", "rows", "views", "status", "seconds"],
        [[s["model"], s["table"], ",".join(map(str, s["folds"])), s["rows"], s["views"], s["status"], float(s["seconds"])]
         for s in result.summary],
    ))
    if result.skipped:
        console.print(_render.table(
            f"skipped {len(result.skipped)} unreadable images (--skip-bad); the tables have no rows for them",
            ["id", "path", "reason"], [[s["id"], s["path"], s["reason"]] for s in result.skipped],
        ))


def _passive_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning when other processes keep the cores busy.

    Chosen before torch is imported (libgomp reads the policy when it loads); a policy the user
    set is kept. See `ensemble.predict.cpu`.
    """
    from ensemble.predict.cpu import choose_wait_policy

    if "OMP_WAIT_POLICY" not in os.environ and (policy := choose_wait_policy()) is not None:
        os.environ["OMP_WAIT_POLICY"] = policy


def _one_or_list(values: list[str] | None) -> str | list[str] | None:
    """One value may be a `{fold}` pattern (or fold 0's file); several are fold 0, 1, ... in order."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def _list_tta() -> None:
    """Print the registries' names (torch is imported here, not when `ens --help` runs)."""
    from ensemble.predict.tta import MERGES, view_choices

    _render.out().print(_render.table("TTA views (--tta) and merges (--merge)", ["kind", "names"], [
        ["views", ", ".join(view_choices())], ["merges", ", ".join(MERGES.names())],
    ]))
    raise typer.Exit()


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
