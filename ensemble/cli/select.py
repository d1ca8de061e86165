"""`ens select`: choose the final submissions on a simulated private leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ensemble.cli import _render
from ensemble.cli._options import (
    METRIC_HELP, ClassesFileOpt, ClassesOpt, DirectionOpt, GroupColOpt, SolutionIdColOpt, SolutionOpt, class_order,
)
from ensemble.cli.submissions import LedgerOpt


def select(
    more: Annotated[
        Optional[list[Path]], typer.Argument(help="Recipes (recipe.json or blend folders), as after --recipes.", show_default=False)
    ] = None,
    labels: Annotated[
        Optional[Path], typer.Option("--labels", help="Labels CSV the blends' OOF tables cover (default: the one their recipes record).")
    ] = None,
    n: Annotated[int, typer.Option("--n", help="How many finals to choose.")] = 2,
    recipes: Annotated[
        Optional[list[Path]],
        typer.Option("--recipes", help="Candidate recipes; default: every blend recorded in the ledger."),
    ] = None,
    ledger: LedgerOpt = None,
    n_boot: Annotated[
        Optional[int], typer.Option("--n-boot", help="Bootstrap resamples of the OOF rows (default 2000; 200 for a metric file).")
    ] = None,
    seed: _render.SeedOpt = 42,
    id_col: Annotated[Optional[str], typer.Option("--id-col", help="Id column of the labels CSV (default: the recorded one, else id).")] = None,
    label_col: Annotated[Optional[str], typer.Option("--label-col", help="Label column of the labels CSV (default: the recorded one, else label).")] = None,
    label_sep: Annotated[
        Optional[str],
        typer.Option("--label-sep", help="What joins several classes in one label cell of a multi-label labels CSV (default: the recorded one, else |)."),
    ] = None,
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help=METRIC_HELP + " Default: the one the recipes were scored in.")] = None,
    higher_is_better: DirectionOpt = None,
    solution: SolutionOpt = None,
    solution_id_col: SolutionIdColOpt = None,
    group_col: GroupColOpt = None,
    all_classes: Annotated[
        bool, typer.Option("--all-classes", help="Shorthand for --metric macro_f1_all (macro-F1 over all classes).")
    ] = False,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
    quiet: _render.QuietOpt = False,
) -> None:
    """Pick N finals: the best honest (nested) OOF estimate, then hedges that raise the expected best-of-N.

    Candidates are scored in the leaderboard's metric on paired bootstrap resamples of the OOF rows
    (a simulated private leaderboard), each centred on its honest estimate; each later pick improves
    the expected best-of-N the most, so it hedges instead of duplicating the first. Multi-label
    blends are scored in the multi-label metric of that name; picks agree per (row, class) decision.
    """
    from ensemble.labels import Columns
    from ensemble.select import select_submissions

    _render.setup_logging(quiet)
    _render.check_json_dest(json_out, force=force)
    columns = None
    if id_col is not None or label_col is not None:
        columns = Columns(id=id_col or "id", label=label_col or "label")
    sel = select_submissions(
        labels, ledger=ledger, recipes=[*(recipes or []), *(more or [])] or None, n=n, n_boot=n_boot,
        seed=seed, columns=columns, classes=class_order(classes, classes_file), metric=metric, all_classes=all_classes,
        higher_is_better=higher_is_better, solution=solution, solution_id_col=solution_id_col, group_col=group_col,
        label_sep=label_sep,
    )
    if not _render.json_to_stdout(json_out):
        _show(sel)
    _render.emit_json(sel.to_dict(), json_out, force=force)


def _show(sel: Any) -> None:
    con = _render.out()
    rows = [
        [
            c.pick, c.name, f"#{c.entry_id}" if c.entry_id is not None else None, c.oof, c.nested,
            c.honest, c.p_best, f"{c.diff_to_leader:+.4f}", f"[{c.diff_ci95[0]:+.4f}, {c.diff_ci95[1]:+.4f}]",
            c.p_beats_leader, c.public_score, c.private_score,
        ]
        for c in sel.candidates
    ]
    con.print(
        _render.table(
            f"candidates in {sel.metric} ({'multi-label; ' if sel.task == 'multilabel' else ''}"
            f"{'higher' if sel.higher_is_better else 'lower'} is better; "
            f"{sel.n_rows} OOF rows, {sel.n_boot} paired resamples, seed {sel.seed})",
            ["pick", "candidate", "entry", "OOF", "nested", "honest", "P(best)", "Δ leader (+ better)", "95% CI",
             "P(beats leader)", "public", "private"],
            rows,
        )
    )
    for i, p in enumerate(sel.picks, 1):
        con.print(f"pick {i}: [bold]{p.name}[/] — {p.reason}")
    names = [p.name for p in sel.picks]
    unit = "(row, class) decisions" if sel.task == "multilabel" else "rows"
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            test = sel.test_agreement[i][j]
            con.print(
                f"picks {i + 1} and {j + 1} agree on "
                + (f"{test:.2%} of test {unit}" if test is not None else f"? test {unit} (no test predictions)")
                + f" ({sel.oof_agreement[i][j]:.2%} of OOF {unit})"
            )
    scored = sum(c.public_score is not None for c in sel.candidates)
    for d in sel.lb_disagreements:
        con.print(
            f"[yellow]public LB prefers {d.public_prefers} over {d.oof_prefers} (+{d.public_gap:.4f}) but the honest "
            f"OOF estimate prefers {d.oof_prefers} (+{d.honest_gap:.4f}; better in {d.p_oof_right:.0%} of resamples)[/]"
        )
    if scored >= 2 and not sel.lb_disagreements:
        con.print(f"public LB agrees with the OOF ranking on the {scored} scored candidates")
    elif scored < 2:
        con.print("fewer than 2 candidates have public LB scores (record them: ens submissions score ID --public X)")


def register(app: typer.Typer) -> None:
    app.command("select")(select)
