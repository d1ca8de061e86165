"""`ens folds`: assign folds with scikit-learn's splitters (multi-label: iterative stratification), or check a fold column."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ensemble.cli import _render
from ensemble.cli._options import LabelSepOpt
from ensemble.fold_methods import FOLD_METHODS

EXIT_FINDINGS = 1  # --check found an error-level problem (group leakage), as a linter would


def folds(
    data: Annotated[Path, typer.Option("--data", help="Data CSV: id, label (and the group column).")],
    method: Annotated[str, typer.Option("--method", help=f"Splitter: {', '.join(FOLD_METHODS.names())} (multilabel-*: label sets, iterative stratification).")] = "stratified",
    group_col: Annotated[Optional[str], typer.Option("--group-col", help="Column holding each row's group (patient, video...).")] = None,
    n_splits: Annotated[int, typer.Option("--n-splits", help="Number of folds.")] = 5,
    out: Annotated[Optional[Path], typer.Option("--out", help="CSV to write: the data plus the fold column.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Check the existing fold column instead: group leakage (exit 1) and class imbalance.")] = False,
    tolerance: Annotated[float, typer.Option("--tolerance", help="--check: a fold's class count may stray from the expected by this share (or 1 row).")] = 0.2,
    id_col: _render.IdColOpt = "id",
    label_col: _render.LabelColOpt = "label",
    fold_col: _render.FoldColOpt = "fold",
    label_sep: LabelSepOpt = "|",
    seed: _render.SeedOpt = 42,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
    quiet: _render.QuietOpt = False,
) -> None:
    """Make folds with scikit-learn's splitters, or --check an existing fold column.

    Writes the data CSV plus the fold column (atomically; --force to overwrite) and prints the class
    distribution per fold. --check reports group leakage (a group in two folds: exit code 1) and
    fold imbalance. Label sets (`a|b`, --label-sep) are split by --method multilabel-stratified
    (multilabel-stratified-group with --group-col) and checked per class (positive rows per fold).
    """
    from ensemble.errors import ConfigError
    from ensemble.folds import check_fold_file, write_folds
    from ensemble.labels import Columns
    from ensemble.task import MULTILABEL

    _render.setup_logging(quiet)
    columns = Columns(id=id_col, label=label_col, fold=fold_col, label_sep=label_sep)
    _render.check_json_dest(json_out, force=force)  # refuse before writing the folds CSV, not after
    if check:
        task = MULTILABEL if FOLD_METHODS.get(method).multilabel else None  # else: sets when a cell holds --label-sep
        result = check_fold_file(data, group_col=group_col, columns=columns, tolerance=tolerance, task=task)
    else:
        if out is None:
            raise ConfigError("no output given; pass --out FILE for the CSV with folds (or --check to check existing folds)")
        result = write_folds(
            data, out, method=method, n_splits=n_splits, seed=seed, group_col=group_col, columns=columns, force=force
        )
    if not _render.json_to_stdout(json_out):
        _print(result, None if check else out)
    _print_findings(result)
    _render.emit_json(result.to_dict(), json_out, force=force)
    if not result.ok:
        raise typer.Exit(EXIT_FINDINGS)


def _print(r: Any, out: Path | None) -> None:
    con = _render.out()
    sizes = r.rows or r.counts.sum(axis=1)
    title = "positive rows per class per fold (multi-label)" if r.task == "multilabel" else "class distribution per fold (rows)"
    con.print(_render.table(
        title, ["fold", "rows", *r.classes, "max share deviation"],
        [[f, int(s), *map(int, row), float(d)] for f, s, row, d in zip(r.folds, sizes, r.counts, r.deviation)],
    ))
    if out is not None:
        con.print(f"wrote {out}", highlight=False)
    elif not r.findings:
        con.print("no leakage or imbalance found", highlight=False)


def _print_findings(r: Any) -> None:
    """Findings are diagnostics: stderr, so stdout holds only the results (or the JSON)."""
    con = _render.err()
    for f in r.findings:
        colour = "red" if f.level == "error" else "yellow"
        con.print(f"[{colour}]{f.level}[/]: {f.message}", soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("folds")(folds)
