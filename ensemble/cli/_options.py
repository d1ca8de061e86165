"""Options of the commands that join tables to labels (oof-report, blend, select, check), defined once."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

ClassesOpt = Annotated[
    Optional[str],
    typer.Option("--classes", help="Class order that integer labels index, comma-separated (default: the tables' recorded order)."),
]
ClassesFileOpt = Annotated[
    Optional[Path], typer.Option("--classes-file", help="Class order that integer labels index, one name per line.")
]


def class_order(classes: str | None, classes_file: Path | None) -> list[str] | None:
    """The explicit class order from `--classes`/`--classes-file`, or None."""
    from ensemble.join import parse_classes

    return parse_classes(classes, classes_file)


# The built-in names, spelled here so `ens --help` need not import the metrics (numba); a test keeps
# these lists equal to `ensemble.metrics.METRICS` and `ensemble.metrics.MULTILABEL_METRICS`.
BUILTIN_METRICS = (
    "macro_f1", "macro_f1_all", "micro_f1", "weighted_f1", "balanced_accuracy", "accuracy", "qwk", "log_loss", "roc_auc",
)
MULTILABEL_BUILTIN_METRICS = ("macro_f1", "micro_f1", "samples_f1", "map", "roc_auc", "log_loss")
METRIC_HELP = (
    "The metric every score, fit and choice uses: " + ", ".join(BUILTIN_METRICS)
    + " (multi-label tables: " + ", ".join(MULTILABEL_BUILTIN_METRICS) + ", F1s at the thresholds)"
    + "; or a competition metric file in Kaggle's format (metric.py or metric.py:function)."
)
LabelSepOpt = Annotated[
    str,
    typer.Option("--label-sep", help="What joins several classes in one label cell of a multi-label labels CSV (an empty cell: none)."),
]
MetricOpt = Annotated[str, typer.Option("--metric", help=METRIC_HELP)]
DirectionOpt = Annotated[
    Optional[bool],
    typer.Option("--higher-is-better/--lower-is-better", help="A metric file's direction, when the file has no higher_is_better.",
                 show_default=False),
]
SolutionOpt = Annotated[
    Optional[Path],
    typer.Option("--solution", help="A metric file's solution CSV for the train rows (default: built from the labels)."),
]
SolutionIdColOpt = Annotated[
    Optional[str], typer.Option("--solution-id-col", help="Row id column of --solution (default: its first column).")
]
GroupColOpt = Annotated[
    Optional[str],
    typer.Option("--group-col", help="Column of the labels CSV whose groups (studies, patients) the bootstrap resamples whole."),
]


class Calibration(str, Enum):
    """`--calibrate`: what is fitted on the blended log-probabilities for a probability metric."""

    none = "none"
    temperature = "temperature"
    temperature_bias = "temperature+bias"


CalibrateOpt = Annotated[
    Calibration,
    typer.Option("--calibrate", help="Fit a temperature (and a per-class bias) on the blend for a probability metric."),
]
