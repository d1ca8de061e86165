"""The one shape of a metric: what every consumer (report, blend, select, ledger) relies on.

A metric scores probabilities against labels and says which way is better. Consumers never branch
on a metric's name: they ask its capabilities.

- `argmax_only`: the score depends on the probabilities only through each row's argmax (F1,
  accuracy, QWK...). Decision tools apply (a per-class bias, exact argmax line searches), and a
  probability calibration changes nothing.
- `count_code`: the score is a function of per-class counts (true positives, predicted, true),
  computed by the compiled kernel `ensemble._kernels.count_metric(tp, pc, tc, code)`; the
  incremental blend kernels and the bootstrap count kernels use it. None otherwise.
- `row_losses`: the score is the mean of a per-row value (log loss, accuracy); the bootstrap of such
  a metric is a weighted mean. None otherwise.

`score(y, probs, index)` is the one entry point; `index` (int64 row numbers into the labelled rows
the metric was bound to, possibly repeated in a bootstrap resample) is what a competition metric
file needs to find each row's id and solution; built-in metrics ignore it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A score and its direction.

    Attributes:
        name: the registry key, or `path.py:function` for a competition metric file.
        higher_is_better: the direction; consumers maximise `oriented(score)`.
        argmax_only: depends on the probabilities only through the row argmax.
        count_code: id of the compiled count metric, or None.
    """

    name: str
    higher_is_better: bool
    argmax_only: bool = False
    count_code: int | None = None

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        """The score of `probs` (float32 (n, C)) against `y` (int64 (n,)); `index`: their labelled rows."""
        raise NotImplementedError

    def row_losses(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
        """float64 (n,) per-row values whose mean is the score, or None when the metric is not a mean."""
        return None

    def oriented(self, value: float | np.ndarray) -> float | np.ndarray:
        """The value turned higher-is-better (negated for a loss): what every fit maximises."""
        return value if self.higher_is_better else -value

    def better(self, a: float, b: float) -> bool:
        """Whether score `a` is strictly better than score `b`."""
        return self.oriented(a) > self.oriented(b)

    def best(self, values: np.ndarray) -> int:
        """Index of the best of `values` (the first on ties)."""
        return int(np.argmax(self.oriented(np.asarray(values, dtype=np.float64))))

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


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

    def resolve(self, labels: object, classes: list[str]) -> Metric:
        """The `Metric`, bound to `labels` (an `ensemble.labels.Labels`) and `classes` when it is a file.

        Raises:
            ConfigError: `all_classes` with another metric; MetricError / UnknownNameError from resolving.
        """
        from ensemble.errors import ConfigError
        from ensemble.metrics.file import is_metric_file, resolve_metric

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
            group_col=self.group_col, higher_is_better=self.higher_is_better,
        )
