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
- `task`: what the metric scores: `multiclass` (`y` int64 (n,), rows of probabilities summing to 1)
  or `multilabel` (`y` a uint8 indicator matrix (n, C), a sigmoid probability per class). For a
  multi-label metric `argmax_only` means "depends on the probabilities only through the decisions
  p > 0.5": thresholds are then its decision tool, as a bias is for a multiclass argmax metric.

`score(y, probs, index)` is the one entry point; `index` (int64 row numbers into the labelled rows
the metric was bound to, possibly repeated in a bootstrap resample) is what a competition metric
file needs to find each row's id and solution; built-in metrics ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # the shape is read at start-up (the CLI's registries); numpy loads when a score is taken
    import numpy as np


@dataclass(frozen=True)
class Metric:
    """A score and its direction.

    Attributes:
        name: the registry key, or `path.py:function` for a competition metric file.
        higher_is_better: the direction; consumers maximise `oriented(score)`.
        argmax_only: depends on the probabilities only through the row argmax.
        count_code: id of the compiled count metric, or None.
        task: `multiclass` or `multilabel` (`ensemble.task`).
    """

    name: str
    higher_is_better: bool
    argmax_only: bool = False
    count_code: int | None = None
    task: str = "multiclass"

    # Multi-label F1s whose thresholds `ensemble.blend.thresholds` can fit by an exact sweep over counts:
    # the F1's average ("macro_f1", "micro_f1", "samples_f1"), None for every other metric.
    threshold_sweep: ClassVar[str | None] = None

    # Competition metric files run the user's Python per call (milliseconds each): bootstraps default
    # to fewer resamples for them (`resamples`), so a nested blend stays within a minute.
    runs_user_code: ClassVar[bool] = False
    USER_CODE_RESAMPLES: ClassVar[int] = 200

    @property
    def thread_safe(self) -> bool:
        """Whether fits may call this metric from several threads at once: the built-in metrics (defined
        in `ensemble.metrics`, holding no state). A metric file, or a caller's own Metric subclass
        (which may keep scratch state), is called from one thread at a time."""
        return type(self).__module__.startswith("ensemble.metrics.") and not self.runs_user_code

    def resamples(self, n_boot: int | None, default: int) -> int:
        """`n_boot` when given, else `default` (at most USER_CODE_RESAMPLES for a metric file)."""
        if n_boot is not None:
            return n_boot
        return min(default, self.USER_CODE_RESAMPLES) if self.runs_user_code else default

    def score(self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None) -> float:
        """The score of `probs` (float32 (n, C)) against `y` (int64 (n,), or uint8 (n, C) for a multi-label
        metric); `index`: their labelled rows."""
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
        import numpy as np

        return int(np.argmax(self.oriented(np.asarray(values, dtype=np.float64))))

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"
