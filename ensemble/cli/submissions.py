"""`ens submissions add|list|score|diff`: the ledger of submitted files."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ensemble.cli import _render

if TYPE_CHECKING:  # the ledger loads only when a sub-command runs
    from ensemble.ledger import AddResult, Entry, SubmissionDiff

LedgerOpt = Annotated[
    Optional[Path], typer.Option("--ledger", help="Ledger file (default: $ENS_LEDGER, else .ens/ledger.db under the current folder).")
]



class TaskChoice(str, Enum):
    """`--task` of `add`: one class per row, or a set of classes per row."""

    multiclass = "multiclass"
    multilabel = "multilabel"


submissions = typer.Typer(
    name="submissions",
    help="The ledger of submissions: record, list, score and compare them; identical files are flagged.",
    no_args_is_help=True,
)


@submissions.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="The submission CSV.")],
    note: Annotated[str, typer.Option("--note", "-m", help="What this submission is, shown in `list`.")] = "",
    recipe: Annotated[
        Optional[Path],
        typer.Option("--recipe", help="The blend's recipe.json (or folder): its scores and classes are recorded."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse (exit 2, nothing recorded) when identical to an earlier one.")
    ] = False,
    ledger: LedgerOpt = None,
    submission_id_col: _render.SubmissionIdColOpt = "id",
    target_col: _render.TargetColOpt = "label",
    task: Annotated[
        Optional[TaskChoice],
        typer.Option("--task", help="multilabel: each row holds a set of classes joined by --submission-label-sep "
                                    "(default: the recipe's blend's task, else multiclass)."),
    ] = None,
    submission_label_sep: Annotated[
        str, typer.Option("--submission-label-sep", help="Multi-label submission: what joins a row's predicted classes.")
    ] = " ",
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Multi-label submission: accept rows with an empty target (no class).")
    ] = False,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
    quiet: _render.QuietOpt = False,
) -> None:
    """Record a submission; warn when its predictions equal an earlier one's, else show the closest.

    Predictions are compared after sorting rows by id; with --recipe, targets written as class
    indices or class names compare as the same labels. Multi-label rows are sets: "b a" and "a b"
    are the same, and agreement is the share of equal (row, class) decisions.
    """
    from ensemble.ledger import record_submission
    from ensemble.submission import SubmissionFormat

    _render.setup_logging(quiet)
    _render.check_json_dest(json_out, force=force)
    fmt = SubmissionFormat(
        id_col=submission_id_col, target_col=target_col, label_sep=submission_label_sep, allow_empty=allow_empty
    )
    res = record_submission(
        file, ledger=ledger, fmt=fmt, recipe_path=recipe, note=note, strict=strict, task=task.value if task else None,
    )
    if not _render.json_to_stdout(json_out):
        _print_added(res)
    _render.emit_json(res.to_dict(), json_out, force=force)


def _print_added(res: AddResult) -> None:
    con = _render.out()
    e = res.entry
    con.print(f"recorded submission #{e.id}: {e.path} ({e.n_rows} rows{', ' + repr(e.note) if e.note else ''})")
    if res.duplicate_of is not None:
        con.print(f"[bold yellow]identical to submission #{res.duplicate_of.id}[/] ({res.duplicate_of.path})")
    elif res.closest is not None and res.agreement is not None and e.sets:
        con.print(
            f"closest earlier: #{res.closest.id} ({res.closest.path}): "
            f"{res.agreement:.2%} of (row, class) decisions agree"
        )
    elif res.closest is not None and res.agreement is not None:
        differ = round((1 - res.agreement) * e.n_rows)
        con.print(
            f"closest earlier: #{res.closest.id} ({res.closest.path}): "
            f"{res.agreement:.2%} of rows agree ({differ} differ)"
        )
    else:
        con.print("no earlier submission over the same ids")


@submissions.command("list")
def list_(ledger: LedgerOpt = None, json_out: _render.JsonOpt = None, force: _render.ForceOpt = False) -> None:
    """Show every recorded submission, oldest first; `same as` marks identical predictions."""
    from ensemble.ledger import list_submissions

    _render.check_json_dest(json_out, force=force)
    entries = list_submissions(ledger)
    if not _render.json_to_stdout(json_out):
        _print_entries(entries)
    _render.emit_json([e.to_dict() for e in entries], json_out, force=force)


def _print_entries(entries: list[Entry]) -> None:
    first_of: dict[str, int] = {}
    rows = []
    for e in entries:
        same = first_of.setdefault(e.pred_sha256, e.id)
        rows.append([
            e.id, e.created.replace("T", " ")[:16], Path(e.path).name, e.n_rows, e.note or "-", e.method,
            e.metric, e.oof_score, e.nested_score, f"[{e.ci95[0]:.4f}, {e.ci95[1]:.4f}]" if e.ci95 else None,
            e.public_score, e.private_score, f"#{same}" if same != e.id else None,
        ])
    _render.out().print(
        _render.table(
            f"submissions ({len(entries)})",
            ["#", "created (UTC)", "file", "rows", "note", "method", "metric", "OOF", "nested", "95% CI", "public", "private", "same as"],
            rows,
        )
    )


@submissions.command("score")
def score(
    entry: Annotated[int, typer.Argument(help="Submission number (see `ens submissions list`).")],
    public: Annotated[Optional[float], typer.Option("--public", help="Public leaderboard score.")] = None,
    private: Annotated[Optional[float], typer.Option("--private", help="Private leaderboard score.")] = None,
    ledger: LedgerOpt = None,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
) -> None:
    """Record leaderboard scores for a submission."""
    from ensemble.ledger import score_submission

    _render.check_json_dest(json_out, force=force)
    e = score_submission(entry, public=public, private=private, ledger=ledger)
    if not _render.json_to_stdout(json_out):
        _render.out().print(
            f"submission #{e.id} ({Path(e.path).name}): public {_render.fmt(e.public_score)}, "
            f"private {_render.fmt(e.private_score)}"
        )
    _render.emit_json(e.to_dict(), json_out, force=force)


@submissions.command("diff")
def diff(
    a: Annotated[int, typer.Argument(help="First submission number.")],
    b: Annotated[int, typer.Argument(help="Second submission number.")],
    rows: Annotated[int, typer.Option("--rows", help="How many flipped rows to show (--json writes all).")] = 20,
    ledger: LedgerOpt = None,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
) -> None:
    """Compare two submissions: agreement, per-class count changes, and the rows that flipped."""
    from ensemble.errors import ConfigError
    from ensemble.ledger import diff_submissions

    if rows < 0:
        raise ConfigError(f"--rows {rows} is negative; give how many flipped rows to show (0 or more)")
    _render.check_json_dest(json_out, force=force)
    d = diff_submissions(a, b, ledger=ledger)
    if not _render.json_to_stdout(json_out):
        _print_diff(d, a, b, rows)
    _render.emit_json(d.to_dict(), json_out, force=force)


def _print_diff(d: SubmissionDiff, a: int, b: int, rows: int) -> None:
    con = _render.out()
    agree = f"{d.agreement:.2%} of (row, class) decisions agree" if d.sets else f"{d.agreement:.2%} agree"
    con.print(
        f"#{a} vs #{b}: {agree} on {d.n_common} common ids ({len(d.flipped)} flipped)"
        + (f"; {d.only_a} ids only in #{a}, {d.only_b} only in #{b}" if d.only_a or d.only_b else "")
    )
    con.print(
        _render.table(
            "rows predicting each class" if d.sets else "per-class counts", ["label", f"#{a}", f"#{b}", "change"],
            [[c["label"], c["a"], c["b"], f"{c['change']:+d}"] for c in d.per_class],
        )
    )
    if len(d.flipped):
        shown = d.flipped.head(rows)
        con.print(_render.table("flipped rows", ["id", f"#{a}", f"#{b}"], shown.values.tolist()))
        if len(d.flipped) > len(shown):
            con.print(f"... and {len(d.flipped) - len(shown)} more (--rows N, or --json FILE for all)")


def register(app: typer.Typer) -> None:
    app.add_typer(submissions, name="submissions")
