"""`ens blend`: blend prediction folders, score honestly, write tables, recipe and submission."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ensemble.blend.methods import METHODS
from ensemble.cli import _render

_METHOD_HELP = "Blend method: " + "; ".join(f"{n} ({m.help})" for n, m in METHODS.items()) + "."


def blend(
    pred_dirs: Annotated[list[Path], typer.Argument(help="Prediction folders, each holding oof.csv and test.csv.")],
    out: Annotated[Path, typer.Option("--out", help="Blend folder to write (blends/NAME); NAME names the blend.")],
    method: Annotated[Optional[str], typer.Option("--method", "-m", help=_METHOD_HELP)] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Labels CSV (id, label, fold).")] = None,
    submission: Annotated[Optional[Path], typer.Option("--submission", help="Also write the competition CSV here.")] = None,
    weights: Annotated[
        Optional[str], typer.Option("--weights", help="Fixed weights for soft/hard/geometric, one per member: 0.5,0.3,0.2.")
    ] = None,
    top: Annotated[Optional[int], typer.Option("--top", help="Keep the K members with the best OOF macro-F1.")] = None,
    seed_average: Annotated[
        bool, typer.Option("--seed-average", help="Average members of one family (seeds) first; each family is one unit.")
    ] = False,
    tune_bias: Annotated[
        bool, typer.Option("--tune-bias", help="Fit a per-class log-probability bias that maximises macro-F1.")
    ] = False,
    rounds: Annotated[int, typer.Option("--rounds", help="Caruana rounds (greedy).")] = 100,
    seed: _render.SeedOpt = 42,
    no_nested: Annotated[bool, typer.Option("--no-nested", help="Skip the nested-CV estimates (faster, less honest).")] = False,
    all_classes: Annotated[
        bool, typer.Option("--all-classes", help="Macro-F1 over every class, not only those present.")
    ] = False,
    recipe: Annotated[
        Optional[Path], typer.Option("--recipe", help="Re-apply this recipe.json to the folders without refitting.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="With --recipe: refuse members whose tables changed since the fit.")
    ] = False,
    id_col: Annotated[str, typer.Option("--id-col", help="Submission id column.")] = "id",
    target_col: Annotated[str, typer.Option("--target-col", help="Submission target column.")] = "label",
    target_format: Annotated[str, typer.Option("--target-format", help="Submission target: name or index.")] = "name",
    labels_id_col: Annotated[str, typer.Option("--labels-id-col", help="Id column of the labels CSV.")] = "id",
    label_col: Annotated[str, typer.Option("--label-col", help="Label column of the labels CSV.")] = "label",
    fold_col: Annotated[str, typer.Option("--fold-col", help="Fold column of the labels CSV.")] = "fold",
    ledger: Annotated[
        Optional[Path], typer.Option("--ledger", help="Ledger that records the submission (default: $ENS_LEDGER, else .ens/ledger.db).")
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Note for the submission's ledger entry.")] = "",
    no_ledger: Annotated[bool, typer.Option("--no-ledger", help="Do not record the submission in the ledger.")] = False,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
    quiet: _render.QuietOpt = False,
) -> None:
    """Blend members' OOF and test probabilities; print in-sample and nested scores and an honest verdict."""
    from ensemble.blend.folders import blend_folders
    from ensemble.blend.recipe import recipe_dict
    from ensemble.labels import Columns
    from ensemble.submission import SubmissionFormat

    _render.setup_logging(quiet)
    if method is not None:
        METHODS.get(method)  # an unknown name fails before any table is read, listing the choices
    progress = _render.RichProgress(quiet)
    try:
        result, paths = blend_folders(
            pred_dirs, out=out, labels=labels, method=method, recipe=recipe,
            columns=Columns(id=labels_id_col, label=label_col, fold=fold_col),
            submission=submission, fmt=SubmissionFormat(id_col, target_col, target_format),
            force=force, strict=strict, ledger=ledger, record=not no_ledger, note=note, progress=progress,
            weights=_parse_weights(weights), top=top, seed_average=seed_average, tune_bias=tune_bias,
            rounds=rounds, seed=seed, nested=not no_nested, all_classes=all_classes,
        )
    finally:
        progress.stop()
    _show(result, paths, quiet=json_out is not None and str(json_out) == "-")
    _render.emit_json({**recipe_dict(result), "outputs": {k: str(v) for k, v in paths.items()}}, json_out)


def _parse_weights(text: str | None) -> list[float] | None:
    return _render.parse_floats(text, "--weights", "e.g. --weights 0.5,0.3,0.2")


def _show(result: Any, paths: dict[str, Path], *, quiet: bool) -> None:
    """Members, then scores side by side, then the verdict (nothing when JSON goes to stdout)."""
    if quiet:
        return
    console = _render.out()
    console.print(_render.table(
        f"members ({result.method})", ["member", "family", "OOF macro-F1", "weight"],
        [[m["name"], m["family"], m["oof_macro_f1"], m["weight"]] for m in result.member_scores],
    ))
    s = result.scores
    best = s.get("best_single") or {}
    ci = s.get("ci95") or [None, None]
    ci_text = f"{ci[0]:.4f} – {ci[1]:.4f}" if ci[0] is not None else None
    console.print(_render.table(
        "scores", ["", "OOF macro-F1 (in-sample)", "nested", "95% CI (in-sample)"],
        [
            [f"blend {result.name} ({result.method})", s.get("oof_macro_f1"), s.get("nested_macro_f1"), ci_text],
            [f"best single ({best.get('name', '-')})", best.get("oof_macro_f1"), best.get("nested_macro_f1"), None],
        ],
    ))
    if not s.get("fitted", True):
        console.print("nothing fitted: the in-sample score is already honest")
    if "nested_gain_over_best_single" in s:
        console.print(_verdict(s))
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    added = result.ledger_entry
    if added is not None:
        line = f"ledger: recorded as submission #{added.entry.id}"
        if added.duplicate_of is None and added.closest is not None and added.agreement is not None:
            line += f" (agrees with #{added.closest.id} on {added.agreement:.1%} of rows)"
        console.print(line)


def _verdict(s: dict[str, Any]) -> str:
    from ensemble.blend.core import verdict

    return verdict(s)


def register(app: typer.Typer) -> None:
    app.command("blend")(blend)
