"""`ens oof-report` from files: read the tables and labels, report, write the PNGs and JSON."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ensemble._io import check_writable, write_json
from ensemble.labels import Columns, read_labels
from ensemble.report.core import Report, oof_report
from ensemble.tables import read_tables
from ensemble.task import common_task


def oof_report_files(
    labels: str | os.PathLike,
    preds: Sequence[str | os.PathLike],
    *,
    columns: Columns = Columns(),
    from_logits: bool = False,
    per_fold: bool = True,
    plots_dir: str | os.PathLike | None = None,
    json_path: str | os.PathLike | None = None,
    force: bool = False,
    **options: Any,
) -> Report:
    """Read OOF tables (files, or folders holding oof.csv) and a labels CSV, and report on them.

    Existing outputs are refused (without `force`) before any scoring; the PNGs and the JSON are each
    written atomically once everything is computed. The tables' sidecars give the task: multi-label
    tables read the labels as sets joined by `columns.label_sep`, and get their own figures.

    Args:
        labels: the labels CSV (id, label, fold columns; names in `columns`).
        preds: prediction tables or folders holding `oof.csv`.
        columns: column names of the labels CSV, and what joins several classes in a multi-label cell.
        from_logits: the tables hold logits; softmax them (multi-label tables: a sigmoid per class).
        per_fold: score each fold (the labels need a fold column).
        plots_dir: folder for the PNGs (`ensemble.report.plots.plot_names`), or None.
        json_path: file for the report as JSON, or None.
        force: overwrite existing PNGs / JSON.
        **options: passed to `oof_report` (n_boot, seed, all_classes, model, progress, alpha, top_k).

    Returns:
        The report.

    Raises:
        TableError: the tables mix multiclass and multi-label (names one of each).
    """
    from ensemble.report.plots import plot_paths, write_plots

    check_writable([Path(json_path)] if json_path is not None else [], force=force)
    tables = read_tables(preds, kind="oof", from_logits=from_logits, progress=options.get("progress"))
    task = common_task([(t.source, t.task) for t in tables])
    check_writable(plot_paths(plots_dir, task) if plots_dir else [], force=force)  # the figures depend on the task
    lab = read_labels(
        labels, classes=tables[0].classes if tables else None, columns=columns,
        require=("label", "fold") if per_fold else ("label",), task=task if tables else None,
    )
    report = oof_report(lab, tables, per_fold=per_fold, **options)
    if plots_dir is not None:
        write_plots(report, plots_dir, force=force)
    if json_path is not None:
        write_json(json_path, report.to_dict(), force=force)
    return report
