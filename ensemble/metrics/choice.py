"""`MetricChoice`: what `--metric` and its companions name, resolved once the labels are known."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ensemble.metrics.base import Metric


@dataclass(frozen=True)
class MetricChoice:
    """What `--metric` and its companions name, before the labels are known.

    Attributes:
        spec: a registry name, a metric file (`metric.py` or `metric.py:function`), or a `Metric`.
        higher_is_better: a metric file's direction when the file does not say.
        solution, solution_id_col: a metric file's solution CSV (default: built from the labels).
        group_col: a labels column whose groups a metric file's repeated rows keep apart.
        all_classes: shorthand for "macro_f1_all".
    """

    spec: str | Metric = "macro_f1"
    higher_is_better: bool | None = None
    solution: str | None = None
    solution_id_col: str | None = None
    group_col: str | None = None
    all_classes: bool = False

    def resolve(self, labels: object, classes: list[str], task: str = "multiclass") -> Metric:
        """The `Metric` of the tables' `task`, bound to `labels` (an `ensemble.labels.Labels`) and `classes`
        when it is a file.

        Raises:
            ConfigError: `all_classes` with another metric; MetricError / UnknownNameError from resolving.
        """
        from ensemble.errors import ConfigError
        from ensemble.metrics.file import (  # pandas and the user's code load here
            is_metric_file,
            resolve_metric,
        )

        spec = self.spec
        if self.all_classes:
            if spec not in ("macro_f1", "macro_f1_all"):
                raise ConfigError(f"--all-classes is macro-F1 over all classes; it does not apply to --metric {spec}")
            spec = "macro_f1_all"
        if isinstance(spec, Metric):
            return spec
        if is_metric_file(spec):  # recorded by name in recipes and the ledger: make it valid from anywhere
            path, sep, function = spec.partition(".py:")
            spec = f"{os.path.abspath(path if sep else spec[:-3])}.py" + (f":{function}" if sep else "")
        return resolve_metric(
            spec, labels=labels, classes=list(classes), solution=self.solution, solution_id_col=self.solution_id_col,
            group_col=self.group_col, higher_is_better=self.higher_is_better, task=task,
        )
