"""PNG figures of an OOF report (matplotlib, Agg backend: no display needed).

Multiclass reports get four figures (`PLOTS`), written all-or-nothing into one folder:
- `confusion.png`: the focus model's confusion matrix, rows normalised by the true class;
- `correlation.png`: probability correlation and argmax agreement between models;
- `per_class_f1.png`: per-class F1 bars of the best models;
- `logloss_vs_f1.png`: cross-entropy against macro-F1 across models (does log-loss track the metric?).

Multi-label reports (`MULTILABEL_PLOTS`) have no confusion between classes; instead:
- `per_class_auc_ap.png`: the focus model's AUC and AP per class, with each class's positive rate;
- `threshold_f1.png`: its macro- and micro-F1 against one global threshold (is 0.5 a good place?);
and the other three as above, with decisions at p > 0.5 and the mean binary cross-entropy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ensemble._io import atomic_outputs, check_writable
from ensemble.report.core import Report
from ensemble.task import MULTICLASS, MULTILABEL

PLOTS = ("confusion.png", "correlation.png", "per_class_f1.png", "logloss_vs_f1.png")
MULTILABEL_PLOTS = ("per_class_auc_ap.png", "threshold_f1.png", "correlation.png", "per_class_f1.png", "logloss_vs_f1.png")
_MAX_BARS = 5  # models in the per-class bar chart: more is unreadable


def plot_paths(folder: str | os.PathLike, task: str = MULTICLASS) -> list[Path]:
    """The files `write_plots` writes into `folder` for a report of `task`."""
    return [Path(folder) / name for name in _FIGURES[task]]


def write_plots(report: Report, folder: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Write the report's PNGs (`plot_paths(folder, report.task)`) into `folder` (created if needed), atomically.

    Raises:
        OutputExistsError: one of the PNGs exists and `force` is False (nothing is written).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)  # before pyplot: headless machines have no display
    import matplotlib.pyplot as plt

    paths = plot_paths(folder, report.task)
    check_writable(paths, force=force)
    figures = [draw(plt, report) for draw in _FIGURES[report.task].values()]
    try:
        with atomic_outputs(paths, force=force) as temps:
            for fig, tmp in zip(figures, temps):
                fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        for fig in figures:
            plt.close(fig)
    return paths


def _size(c: int) -> float:
    return float(min(18, max(5, 0.45 * c + 2)))


def _confusion(plt: Any, r: Report) -> Any:
    c = len(r.classes)
    support = np.maximum(r.confusion.sum(axis=1, keepdims=True), 1)
    share = r.confusion / support
    fig, ax = plt.subplots(figsize=(_size(c) + 1, _size(c)))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    if c <= 30:  # cell labels stop being legible beyond that
        for (i, j), v in np.ndenumerate(r.confusion):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if share[i, j] > 0.5 else "black")
    _ticks(ax, r.classes, r.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion: {r.focus}")
    return fig


def _correlation(plt: Any, r: Report) -> Any:
    k = len(r.names)
    fig, axes = plt.subplots(1, 2, figsize=(2 * _size(k) + 2, _size(k)))
    agreement = "decision agreement (row, class cells)" if r.task == MULTILABEL else "argmax agreement"
    for ax, mat, title in ((axes[0], r.correlation, "probability correlation"), (axes[1], r.agreement, agreement)):
        lo = float(min(mat.min(), 0.5))
        im = ax.imshow(mat, cmap="viridis", vmin=lo, vmax=1)
        fig.colorbar(im, ax=ax, fraction=0.046)
        if k <= 20:
            for (i, j), v in np.ndenumerate(mat):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white" if v < (lo + 1) / 2 else "black")
        _ticks(ax, r.names, r.names)
        ax.set_title(title)
    return fig


def _per_class(plt: Any, r: Report) -> Any:
    c = len(r.classes)
    shown = r.models[:_MAX_BARS]
    width = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * c * len(shown) ** 0.5 + 2), 4.5))
    x = np.arange(c)
    for i, m in enumerate(shown):
        ax.bar(x + (i - (len(shown) - 1) / 2) * width, m.per_class_f1, width, label=f"{m.name} ({m.macro_f1:.4f})")
    ax.set_xticks(x, r.classes, rotation=60 if c > 8 else 0, ha="right" if c > 8 else "center")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    at = " at p > 0.5" if r.task == MULTILABEL else ""
    ax.set_title(f"per-class F1{at} (best models; macro-F1 in brackets)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _scatter(plt: Any, r: Report) -> Any:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for kind, marker in (("model", "o"), ("seed-avg", "s")):
        ms = [m for m in r.models if m.kind == kind]
        if ms:
            ax.scatter([m.log_loss for m in ms], [m.macro_f1 for m in ms], marker=marker, label=kind)
    for m in r.models:
        ax.annotate(m.name, (m.log_loss, m.macro_f1), fontsize=7, xytext=(3, 3), textcoords="offset points")
    loss = "mean binary cross-entropy" if r.task == MULTILABEL else "cross-entropy (log-loss)"
    ax.set_xlabel(f"{loss}, lower is better")
    ax.set_ylabel("macro-F1")
    ax.set_title("does log-loss track macro-F1?")
    ax.legend(fontsize=8)
    return fig


def _ticks(ax: Any, xs: list[str], ys: list[str]) -> None:
    ax.set_xticks(range(len(xs)), xs, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(ys)), ys, fontsize=8)


def _auc_ap(plt: Any, r: Report) -> Any:
    stats = r.per_label
    c = len(r.classes)
    x = np.arange(c)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * c + 2), 4.5))
    ax.bar(x - 0.2, np.nan_to_num(stats.auc), 0.4, label="ROC-AUC")
    ax.bar(x + 0.2, np.nan_to_num(stats.ap), 0.4, label="average precision")
    ax.plot(x, stats.positive_rate, "k_", markersize=14, label="positive rate (AP of chance)")
    ax.set_xticks(x, r.classes, rotation=60 if c > 8 else 0, ha="right" if c > 8 else "center")
    ax.set_ylim(0, 1.15)  # room above the bars for the legend
    ax.set_title(f"per-class ranking: {r.focus} (bars at 0: undefined, no positives)")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    return fig


def _threshold_f1(plt: Any, r: Report) -> Any:
    curve = r.threshold_curve
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for values, name in ((curve.macro_f1, "macro-F1"), (curve.micro_f1, "micro-F1")):
        best = int(np.argmax(values))
        line = ax.plot(curve.thresholds, values, label=f"{name} (best {values[best]:.4f} at {curve.thresholds[best]:.2f})")[0]
        ax.plot(curve.thresholds[best], values[best], "o", color=line.get_color())
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("one threshold for every class (p > t)")
    ax.set_ylabel("F1")
    ax.set_title(f"F1 against a global threshold: {curve.model} (in-sample)")
    ax.legend(fontsize=8)
    return fig


# the figures of each task: file name -> drawing function, in `PLOTS` / `MULTILABEL_PLOTS` order
_FIGURES = {
    MULTICLASS: dict(zip(PLOTS, (_confusion, _correlation, _per_class, _scatter))),
    MULTILABEL: dict(zip(MULTILABEL_PLOTS, (_auc_ap, _threshold_f1, _correlation, _per_class, _scatter))),
}
