"""`ens swa`: average checkpoints of one model (uniform, weighted, top-N by a metric, EMA), BN refresh."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ensemble.cli import _render
from ensemble.swa.select import MODES
from ensemble.swa.write import FORMATS

if TYPE_CHECKING:  # torch loads when the command runs, not when `ens --help` lists it
    from ensemble.swa.write import SwaResult


def _opt(name: str, help: str) -> typer.models.OptionInfo:  # noqa: A002 (typer's own name)
    return typer.Option(name, help=help)


def swa(
    out: Annotated[Path, typer.Option(
        "--out", "-o",
        help=f"Output checkpoint; its suffix picks the format ({', '.join(FORMATS.names())}); "
        "a sidecar .json is written beside it. With {fold} and no --fold: every fold of a --glob "
        "with {fold}, each into its own file, in one command.",
    )],
    checkpoints: Annotated[Optional[list[Path]], typer.Argument(
        help="Checkpoint files to average (any layout ens predict reads).", show_default=False
    )] = None,
    card: Annotated[Optional[Path], _opt("--card", "Model card: checks the average fits its arch; needed for --bn-data.")] = None,
    fold: Annotated[Optional[int], _opt("--fold", "Fold: fills {fold} in --glob and --out; its rows are left out of the BN refresh.")] = None,
    glob: Annotated[Optional[str], _opt("--glob", "More checkpoints by pattern, e.g. 'runs/fold{fold}/epoch*.pth' (quoted).")] = None,
    weights: Annotated[Optional[str], _opt("--weights", "One weight per checkpoint, comma-separated (default: uniform).")] = None,
    top_n: Annotated[Optional[int], _opt("--top-n", "Average only the best N by --metrics (needs --mode).")] = None,
    metrics: Annotated[Optional[Path], _opt("--metrics", "JSON {checkpoint: value}, or CSV: checkpoint, metric columns.")] = None,
    metric: Annotated[Optional[str], _opt("--metric", "The metric column of a --metrics CSV with several.")] = None,
    mode: Annotated[Optional[str], _opt(
        "--mode", f"Which end of --metrics is best ({'|'.join(MODES.names())}): max for F1/accuracy, min for a loss. "
        "Required with --top-n."
    )] = None,
    ema: Annotated[bool, _opt("--ema", "Average the EMA weights stored in each checkpoint.")] = False,
    trust_checkpoint: Annotated[bool, _opt(
        "--trust-checkpoint", "Allow pickled objects in checkpoints (runs code from them)."
    )] = False,
    bn_data: Annotated[Optional[Path], _opt("--bn-data", "Data CSV to refresh BatchNorm statistics on (needs --card).")] = None,
    bn_batches: Annotated[int, _opt("--bn-batches", "The most batches for the BN refresh.")] = 100,
    batch_size: Annotated[int, _opt("--batch-size", "Images per BN-refresh batch.")] = 32,
    workers: Annotated[str, _opt("--workers", "Image-decoding worker processes (0: decode in the main process), or auto as in ens predict.")] = "2",
    device: Annotated[str, _opt("--device", "auto, cpu, cuda or cuda:N.")] = "auto",
    root: Annotated[Optional[Path], _opt("--root", "Folder the --bn-data image paths are relative to.")] = None,
    id_col: _render.IdColOpt = "id",
    path_col: _render.PathColOpt = "path",
    fold_col: _render.FoldColOpt = "fold",
    seed: _render.SeedOpt = 42,
    force: _render.ForceOpt = False,
    json_out: _render.JsonOpt = None,
    quiet: _render.QuietOpt = False,
) -> None:
    """Average checkpoints of one model into one (SWA): uniform, --weights, --top-n by a metric, --ema.

    The output loads like any checkpoint: score it with ens predict, then ens oof-report.
    --bn-data refreshes BatchNorm statistics after averaging; it can hurt, so compare both on OOF.
    Every fold at once: --glob 'runs/fold{fold}/epoch*.pth' --out 'swa/fold{fold}.safetensors'.
    """
    from ensemble.cli.predict import _passive_openmp

    # the BatchNorm refresh's forwards, as ens predict's: beside a busy process its spinning OpenMP
    # threads took 27.6 CPU s against 11.9 sleeping (one digits fold at load ~9; the same bytes).
    # Before torch loads (ensemble.swa.core imports it): libgomp reads the policy once, when it loads.
    _passive_openmp()
    from ensemble.labels import Columns
    from ensemble.swa.core import BN_NOTE, SwaOptions, run_folds

    _render.setup_logging(quiet)
    to_stdout = _render.json_to_stdout(json_out)
    _render.check_json_dest(json_out, force=force)
    options = SwaOptions.of(
        out, card=card, fold=fold, glob=glob, weights=_parse_weights(weights), top_n=top_n, metrics=metrics,
        metric=metric, mode=mode, ema=ema, trust=trust_checkpoint, bn_data=bn_data, bn_batches=bn_batches,
        batch_size=batch_size, workers=workers, device=device, columns=Columns(id=id_col, path=path_col, fold=fold_col),
        root=root, seed=seed, force=force,
    )
    progress = _render.RichProgress(quiet)
    try:
        results = run_folds(checkpoints or [], options, progress=progress)
    finally:
        progress.stop()
    records = [{"out": str(res.out), "sidecar": str(res.sidecar), **res.meta} for res in results]
    # every fold of an --out pattern: a list, one record per fold; else the one record
    every_fold = "{fold}" in str(out) and fold is None
    record: object = records if every_fold else records[0]
    if to_stdout:  # stdout holds the JSON only
        _render.emit_json(record, json_out)
        return
    for res in results:
        _print_result(res)
    if any(res.meta["bn_refresh"] is not None for res in results) and not quiet:
        _render.err().print(f"note: {BN_NOTE}", highlight=False)
    _render.emit_json(record, json_out, force=force)


def _print_result(res: SwaResult) -> None:
    """The sources table of one output, its BatchNorm refresh and the files written (stdout)."""
    sel = res.meta["selection"]
    title = f"averaged {len(res.used)} checkpoint(s)" + (" (EMA weights)" if res.meta["ema"] else "")
    if sel["top_n"] is not None:
        best = "highest" if sel["mode"] == "max" else "lowest"
        title += f": the {sel['top_n']} with the {best} {sel['metric']} (--mode {sel['mode']})"
    rows = [
        [str(s.path), s.metric, s.weight if s.used else None, s.sha256[:12] if s.sha256 else None]
        for s in res.sources
    ]
    con = _render.out()
    con.print(_render.table(title, ["checkpoint", sel["metric"] or "metric", "weight", "sha256"], rows))
    bn = res.meta["bn_refresh"]
    if bn is not None:
        left_out = f", fold {bn['excluded_fold']} left out" if bn["excluded_fold"] is not None else ""
        con.print(
            f"BatchNorm statistics refreshed on {bn['images']} images of {bn['data']} ({bn['batches']} batches{left_out})"
        )
    con.print(f"wrote {res.out} (sha256 {res.sha256[:12]}) and {res.sidecar}")


def _parse_weights(text: str | None) -> list[float] | None:
    return _render.parse_floats(text, "--weights", "give one per checkpoint, e.g. --weights 1,2,1")


def register(app: typer.Typer) -> None:
    app.command("swa")(swa)
