"""`ens blend`: blend prediction folders, score honestly, write tables, recipe and submission."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ensemble.blend.methods import METHODS, THRESHOLD_MODES
from ensemble.cli import _render
from ensemble.cli._options import (
    CalibrateOpt,
    Calibration,
    ClassesFileOpt,
    ClassesOpt,
    DirectionOpt,
    GroupColOpt,
    LabelSepOpt,
    MetricOpt,
    SolutionIdColOpt,
    SolutionOpt,
    class_order,
)
from ensemble.target_format import TargetFormat

_METHOD_HELP = "Blend method: " + "; ".join(f"{n} ({m.help})" for n, m in METHODS.items()) + "."


# `--tune-thresholds`'s choices, from the one list of modes ("none" is the default: off)
ThresholdMode = Enum("ThresholdMode", {m.replace("-", "_"): m for m in THRESHOLD_MODES}, type=str)

# A method name kept for old scripts: `--method seed` is the seed-average step per family.
_ALIASES = {"seed": ("soft", "--method seed is now --method soft --by-family (the seed average of each family)")}


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
    by_family: Annotated[
        bool, typer.Option("--by-family", help="Blend each family on its own into OUT/<family>/ (e.g. seed averages as new members).")
    ] = False,
    metric: MetricOpt = "macro_f1",
    higher_is_better: DirectionOpt = None,
    solution: SolutionOpt = None,
    solution_id_col: SolutionIdColOpt = None,
    group_col: GroupColOpt = None,
    tune_bias: Annotated[
        bool, typer.Option("--tune-bias", help="Fit a per-class log-probability bias for an argmax metric (F1, accuracy, QWK).")
    ] = False,
    calibrate: CalibrateOpt = Calibration.none,
    tune_thresholds: Annotated[
        ThresholdMode, typer.Option(
            "--tune-thresholds",
            help="Multi-label: fit decision thresholds for the metric (a decision metric: macro_f1, micro_f1, samples_f1, "
                 "or a metric file), one per class or one global, nested like every fit; the tables hold "
                 "probabilities moved so each threshold sits at 0.5.",
        ),
    ] = ThresholdMode("none"),
    rounds: Annotated[int, typer.Option("--rounds", help="Caruana rounds (greedy).")] = 100,
    n_boot: Annotated[
        Optional[int], typer.Option("--n-boot", help="Bootstrap resamples for the CI and the noise verdict (default 1000; 200 for a metric file).")
    ] = None,
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
    id_col: _render.IdColOpt = "id",
    label_col: _render.LabelColOpt = "label",
    fold_col: _render.FoldColOpt = "fold",
    label_sep: LabelSepOpt = "|",
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    submission_id_col: _render.SubmissionIdColOpt = "id",
    target_col: _render.TargetColOpt = "label",
    target_format: Annotated[
        TargetFormat, typer.Option("--target-format", help="Submission target: class name, index, probs (one probability column per class), or labels (multi-label: the predicted class names joined by --submission-label-sep).")
    ] = TargetFormat("name"),
    submission_label_sep: Annotated[
        str, typer.Option("--submission-label-sep", help="Multi-label submission: what joins a row's predicted classes.")
    ] = " ",
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Multi-label submission: a row with no class above 0.5 gets an empty "
                                                 "target (default: its top class).")
    ] = False,
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
    compiling = False
    if recipe is None:  # a fit: numba compiles its kernels in a second process while the tables are read (once)
        from ensemble import _warmup

        compiling = _warmup.start("blend")
    if not compiling:  # the tables are parsed beside the imports below, on the core a warm-up would take
        from ensemble._csv_table import prefetch_folders

        prefetch_folders(pred_dirs, ("oof", "test"))
    from ensemble.blend.core import BlendOptions
    from ensemble.blend.folders import blend_folders
    from ensemble.labels import Columns
    from ensemble.submission import SubmissionFormat

    _render.setup_logging(quiet)
    if method in _ALIASES:
        method, why = _ALIASES[method]
        by_family = True
        logging.getLogger("ensemble").warning(why)
    if method is not None:
        METHODS.get(method)  # an unknown name fails before any table is read, listing the choices
    _render.check_json_dest(json_out, force=force)
    options = None if method is None else BlendOptions(
        method=method, weights=_parse_weights(weights), top=top, seed_average=seed_average, tune_bias=tune_bias,
        calibrate=calibrate.value, tune_thresholds=tune_thresholds.value, rounds=rounds, n_boot=n_boot, seed=seed, nested=not no_nested, all_classes=all_classes,
        metric=metric, group_col=group_col, solution=str(solution.resolve()) if solution is not None else None,
        solution_id_col=solution_id_col, higher_is_better=higher_is_better,
    )
    progress = _render.RichProgress(quiet)
    try:
        written = blend_folders(
            pred_dirs, out=out, labels=labels, options=options, recipe=recipe, by_family=by_family,
            columns=Columns(id=id_col, label=label_col, fold=fold_col, label_sep=label_sep),
            classes=class_order(classes, classes_file), submission=submission,
            fmt=SubmissionFormat(
                submission_id_col, target_col, target_format.value, label_sep=submission_label_sep, allow_empty=allow_empty
            ),
            force=force, strict=strict, ledger=ledger, record=not no_ledger, note=note, progress=progress,
        )
    finally:
        progress.stop()
    if not _render.json_to_stdout(json_out):
        for w in written:
            _show(w)
    docs = [{**w.result.recipe.to_dict(), "outputs": {k: str(v) for k, v in w.paths.items()}} for w in written]
    _render.emit_json(docs[0] if len(docs) == 1 else docs, json_out, force=force)


def _parse_weights(text: str | None) -> tuple[float, ...] | None:
    w = _render.parse_floats(text, "--weights", "e.g. --weights 0.5,0.3,0.2")
    return None if w is None else tuple(w)


def _show(w: Any) -> None:
    """Members, then scores side by side, then the verdict."""
    result, s = w.result, w.result.scores
    console = _render.out()
    console.print(_render.table(
        f"members ({result.method})", ["member", "family", f"OOF {s.metric}", "weight"],
        [[m.name, m.family, m.oof, m.weight] for m in result.member_scores],
    ))
    best = s.best_single
    ci_text = f"{s.ci95[0]:.4f} – {s.ci95[1]:.4f}" if s.ci95 is not None else None
    console.print(_render.table(
        f"scores: {s.label}", ["", f"OOF {s.metric} (in-sample)", "nested", "95% CI (in-sample)"],
        [
            [f"blend {result.name} ({result.method})", s.oof, s.nested, ci_text],
            [f"best single ({best.name if best else '-'})", best.oof if best else None,
             best.nested if best else None, None],
        ],
    ))
    f = result.fitted
    if f.temperature != 1.0 or f.pool != "linear":
        console.print(f"calibration: pooling {f.pool}, temperature {f.temperature:.3f}"
                      + (", per-class bias" if f.bias is not None else ""))
    if f.thresholds is not None:
        t = f.thresholds
        console.print(f"thresholds ({result.options.get('tune_thresholds')}): "
                      + (f"{t[0]:.3f} for every class" if len(set(t.tolist())) == 1 else f"{t.min():.3f} – {t.max():.3f} over the classes")
                      + "; the tables are moved so each sits at 0.5")
    if not s.fitted:
        console.print("nothing fitted: the in-sample score is already honest")
    console.print(s.verdict)
    console.print("wrote " + ", ".join(str(p) for p in w.paths.values()))
    added = w.ledger_entry
    if added is not None:
        line = f"ledger: recorded as submission #{added.entry.id}"
        if added.duplicate_of is None and added.closest is not None and added.agreement is not None:
            line += f" (agrees with #{added.closest.id} on {added.agreement:.1%} of rows)"
        console.print(line)


def register(app: typer.Typer) -> None:
    app.command("blend")(blend)
