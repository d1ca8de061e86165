"""`ens oof-report`: how good each model is on OOF, how sure we are, and how alike the models are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ensemble.cli import _render
from ensemble.cli._options import (
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
from ensemble.task import MULTICLASS, MULTILABEL

_ALL_CLASSES_HELP = (
    "Average F1 over all classes of the tables, absent ones scoring 0 (sklearn labels=range(C)). "
    "Default: over the classes present in truth or prediction — sklearn's average='macro', which is "
    "what Kaggle's macro-F1 computes."
)
_MATRIX_MAX = 30  # classes/models beyond which a matrix is too wide to print (the PNGs still show it)


def oof_report(
    preds: Annotated[list[Path], typer.Argument(help="OOF prediction tables, or folders holding oof.csv.")],
    labels: Annotated[Path, typer.Option("--labels", help="Labels CSV: id, label, fold.")],
    id_col: _render.IdColOpt = "id",
    label_col: _render.LabelColOpt = "label",
    fold_col: _render.FoldColOpt = "fold",
    label_sep: LabelSepOpt = "|",
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    metric: MetricOpt = "macro_f1",
    higher_is_better: DirectionOpt = None,
    solution: SolutionOpt = None,
    solution_id_col: SolutionIdColOpt = None,
    group_col: GroupColOpt = None,
    all_classes: Annotated[bool, typer.Option("--all-classes", help=_ALL_CLASSES_HELP)] = False,
    folds: Annotated[bool, typer.Option("--folds/--no-folds", help="Score each fold (needs the fold column).")] = True,
    n_boot: Annotated[
        Optional[int], typer.Option("--n-boot", help="Bootstrap resamples for the interval (0: none; default 1000, 200 for a metric file).")
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Interval level: 0.05 gives 95% intervals.")] = 0.05,
    model: Annotated[
        Optional[str], typer.Option("--model", help="Model whose per-class table and confusion matrix (multi-label: per-class AUC, AP, F1) are shown (default: the best).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Confused class pairs to list.")] = 10,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write PNG figures into this folder.")] = None,
    from_logits: Annotated[
        bool, typer.Option("--from-logits", help="Tables hold logits: softmax them (a sigmoid per class for multi-label tables).")
    ] = False,
    seed: _render.SeedOpt = 42,
    json_out: _render.JsonOpt = None,
    force: _render.ForceOpt = False,
    quiet: _render.QuietOpt = False,
) -> None:
    """Score OOF tables: macro-F1 with CI and per-fold spread, per-class, confusion, correlation.

    Tables sharing a family (seeds of one config) also get their seed average as a row; tables with
    TTA views get each view and each mean-merge of views scored. Every labelled id needs exactly one
    row in every table. Multi-label tables (sigmoid, the sidecar's task) get per-class AUC, AP, F1 at
    0.5 and at the best in-sample threshold, positive vs predicted rates and label cardinality.
    """
    from ensemble._csv_table import prefetch_folders

    prefetch_folders(preds, ("oof",))  # parsed beside the imports below, on the idle core
    from ensemble.labels import Columns
    from ensemble.metrics.choice import MetricChoice
    from ensemble.report import oof_report_files

    _render.setup_logging(quiet)
    to_stdout = json_out is not None and str(json_out) == "-"
    report = oof_report_files(
        labels, preds, columns=Columns(id=id_col, label=label_col, fold=fold_col, label_sep=label_sep), from_logits=from_logits,
        per_fold=folds, plots_dir=plots, json_path=None if to_stdout or json_out is None else json_out, force=force,
        n_boot=n_boot, seed=seed, all_classes=all_classes, model=model, alpha=alpha, top_k=top_k,
        classes=class_order(classes, classes_file), progress=_render.RichProgress(quiet),
        metric=MetricChoice(metric, higher_is_better, None if solution is None else str(solution), solution_id_col,
                            group_col, all_classes and metric == "macro_f1"),  # else --all-classes is the macro-F1 column's
    )
    if to_stdout:
        _render.emit_json(report.to_dict(), json_out, force=force)
        return
    _print(report)
    if plots is not None and not quiet:
        _render.err().print(f"wrote plots to {plots}")


def _print(r: Any) -> None:
    _PRINTERS[r.task](r)


def _print_multiclass(r: Any) -> None:
    from ensemble.report import METRIC_NOTE

    con = _render.out()
    beside = _beside(r, (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("log_loss", "log-loss")))
    _summary(r, beside, f"{len(r.classes)} classes", f"macro-F1: {METRIC_NOTE[r.all_classes]}")
    pc = r.per_class
    con.print(_render.table(
        f"per class: {r.focus}", ["class", "precision", "recall", "F1", "support"],
        [[c, float(pc.precision[i]), float(pc.recall[i]), float(pc.f1[i]), int(pc.support[i])] for i, c in enumerate(r.classes)],
    ))
    if len(r.classes) <= _MATRIX_MAX:
        con.print(_render.table(
            f"confusion: {r.focus} (rows true, columns predicted)", ["true \\ pred", *r.classes],
            [[c, *map(int, row)] for c, row in zip(r.classes, r.confusion)],
        ))
    if r.top_confused:
        con.print(_render.table(
            f"top confused pairs: {r.focus}", ["true", "predicted", "count", "share of true"],
            [[r.classes[t], r.classes[p], n, s] for t, p, n, s in r.top_confused],
        ))
    _similarity(r, "argmax agreement")
    _tta(r, beside)


def _print_multilabel(r: Any) -> None:
    from ensemble.report.multilabel import MULTILABEL_F1_NOTE

    con = _render.out()
    beside = _beside(r, (("macro_f1", "macro-F1@0.5"), ("accuracy", "subset accuracy"), ("log_loss", "mean BCE")))
    beside_card = [*beside, ("cardinality", "cardinality@0.5")]
    stats = r.per_label
    _summary(r, beside_card, f"{len(r.classes)} classes, multi-label, true cardinality {stats.cardinality_true:.4f}",
             f"macro-F1: {MULTILABEL_F1_NOTE}")
    pc = stats.at_threshold
    con.print(_render.table(
        f"per class: {r.focus} (at p > {stats.threshold:g}; best F1 and its threshold t are in-sample: fitted on "
        "these rows, optimistic)",
        ["class", "positives", "pos rate", "pred rate", "AUC", "AP", "precision", "recall", "F1", "best F1", "best t"],
        [[c, int(pc.support[i]), float(stats.positive_rate[i]), float(stats.predicted_rate[i]), _num(stats.auc[i]),
          _num(stats.ap[i]), float(pc.precision[i]), float(pc.recall[i]), float(pc.f1[i]), float(stats.best_f1[i]),
          float(stats.best_threshold[i])] for i, c in enumerate(r.classes)],
    ))
    curve = r.threshold_curve
    best = int(curve.macro_f1.argmax())
    con.print(
        f"label cardinality ({r.focus}): true {stats.cardinality_true:.4f}, predicted at p > {stats.threshold:g} "
        f"{stats.cardinality_pred:.4f}; one global threshold: macro-F1 {curve.macro_f1[best]:.4f} at t = "
        f"{curve.thresholds[best]:.2f} (in-sample) vs {r.model(r.focus).macro_f1:.4f} at {stats.threshold:g}"
    )
    _similarity(r, "decision agreement (row, class cells; p > 0.5)")
    _tta(r, beside)


def _beside(r: Any, usual: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """The usual scores beside the metric, less the one it already is."""
    return [(k, h) for k, h in usual if not (k == r.metric or (k == "macro_f1" and r.metric == "macro_f1_all"))]


def _summary(r: Any, beside: list[tuple[str, str]], what: str, note: str) -> None:
    level = round(100 * (1 - r.alpha))
    rows = [
        [i + 1, m.name, m.family, m.kind, m.score, f"{m.ci[0]:.4f}–{m.ci[1]:.4f}" if m.ci else None,
         f"{m.fold_mean:.4f} ± {m.fold_std:.4f}" if m.fold_scores else None, *(getattr(m, k) for k, _ in beside)]
        for i, m in enumerate(r.models)
    ]
    direction = "higher" if r.higher_is_better else "lower"
    _render.out().print(_render.table(
        f"OOF scores, {r.n_samples} rows, {what} — sorted by {r.metric} ({direction} is better); {note}",
        ["#", "model", "family", "kind", r.metric, f"{level}% CI", "per-fold mean ± std", *(h for _, h in beside)],
        rows,
    ))


def _similarity(r: Any, agreement: str) -> None:
    if 1 < len(r.names) <= _MATRIX_MAX:
        for title, mat in (("probability correlation", r.correlation), (agreement, r.agreement)):
            _render.out().print(_render.table(title, ["model", *r.names], [[n, *map(float, row)] for n, row in zip(r.names, mat)]))


def _tta(r: Any, beside: list[tuple[str, str]]) -> None:
    for name, scores in r.tta.items():
        _render.out().print(_render.table(
            f"TTA views and mean-merges: {name} (* = the table's own merge)", ["views", "n", r.metric, *(h for _, h in beside)],
            [[s.name + (" *" if s.current else ""), len(s.views), s.score, *(getattr(s, k) for k, _ in beside)] for s in scores],
        ))


def _num(v: float) -> float | None:
    """A float, or None (printed "-") where undefined (NaN)."""
    return None if v != v else float(v)


_PRINTERS = {MULTICLASS: _print_multiclass, MULTILABEL: _print_multilabel}


def register(app: typer.Typer) -> None:
    app.command("oof-report")(oof_report)
