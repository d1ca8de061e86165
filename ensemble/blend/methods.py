"""The blend methods (one registry) and the fit/apply pipeline every method goes through.

A method is a `combine` rule — (n, U, C) unit probabilities and (U,) weights to (n, C)
probabilities — plus, for `weighted` and `greedy`, a `fit` that chooses the weights from labels
for the chosen metric. Around it, the pipeline adds what competitors do: keep the top K units by
the metric, apply given weights, tune a per-class bias (multiclass argmax metrics) or per-class
thresholds (multi-label decision metrics), or calibrate a temperature (probability metrics). Where the
math differs by task (multiclass softmax rows, multi-label sigmoid classes) the methods go through the
task's hooks (`ensemble.blend.tasks`). `fit` learns all of that from labelled rows and `apply` replays it on any
rows, so the in-sample blend, the nested estimate and a recipe re-applied to test share one code
path. Every fit maximises `metric.oriented(...)`: a lower-is-better metric is never maximised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ensemble._progress import Progress
from ensemble._registry import Registry
from ensemble.metrics.base import Metric

if TYPE_CHECKING:  # numpy loads with the first blend, not with `ens --help` reading this registry
    import numpy as np

# The registry is imported by the CLI for its choices, so this module stays light: numba kernels,
# scipy and the metrics load inside the functions that need them.

@dataclass(frozen=True)
class Method:
    """One blend method.

    Attributes:
        combine: (X of shape (n, U, C), weights of shape (U,), task) -> float32 probabilities (n, C);
            where the math differs by task it goes through the task's hooks (`ensemble.blend.tasks`).
        fit: (X, y, n_classes, spec, index) -> (weights (U,), pool) learnt from labels; None when
            nothing is fitted.
        takes_weights: whether `--weights` (fixed weights) applies.
        help: one line for the CLI.
        rowwise: each output row depends on that row alone, so `apply` may blend the rows a block
            at a time (false for `rank`, whose ranks run over all rows).
    """

    combine: Callable[..., np.ndarray]
    fit: Callable[..., tuple[np.ndarray, str]] | None = None
    takes_weights: bool = False
    help: str = ""
    rowwise: bool = True


CALIBRATIONS = ("none", "temperature", "temperature+bias")
THRESHOLD_MODES = ("none", "per-class", "global")  # `--tune-thresholds` (multi-label): off, one per class, one for all


@dataclass(frozen=True)
class Spec:
    """What to fit besides the method: the metric, member choice, fixed weights, bias, calibration,
    thresholds (a THRESHOLD_MODES value), rounds, and the tables' task."""

    metric: Metric = field(default_factory=lambda: _default_metric())
    top: int | None = None
    weights: tuple[float, ...] | None = None
    tune_bias: bool = False
    calibrate: str = "none"
    rounds: int = 100
    thresholds: str = "none"
    task: str = "multiclass"


def _default_metric() -> Metric:
    from ensemble.metrics import get_metric

    return get_metric("macro_f1")


@dataclass
class Fitted:
    """A fitted blend: which units, their weights, pooling, and the post-blend transform.

    Attributes:
        units: indices of the units used, int64 of shape (k,).
        weights: their weights, float64 of shape (k,), summing to 1.
        bias: per-class log-probability bias of shape (C,), or None.
        pool: "linear" (the method's own combine) or "log" (geometric pooling chosen by the fit).
        temperature: divides the blended log scores (log-probabilities, or logits) before the bias (1: none).
        thresholds: multi-label decision thresholds of shape (C,) in (0, 1), or None (0.5); applied
            last, by moving each class's probabilities so its threshold sits at 0.5
            (`ensemble.blend.thresholds.shift`).
        task: the tables' task (`ensemble.task`), which picks the math of the pools and calibration.
    """

    units: np.ndarray
    weights: np.ndarray
    bias: np.ndarray | None = None
    pool: str = "linear"
    temperature: float = 1.0
    thresholds: np.ndarray | None = None
    task: str = "multiclass"


def soft(X: np.ndarray, w: np.ndarray, task: str = "multiclass") -> np.ndarray:
    """Weighted mean of the probabilities (per class, whatever the task)."""
    import numpy as np

    return (np.einsum("nuc,u->nc", X, w, dtype=np.float64) / w.sum()).astype(np.float32)


def geometric(X: np.ndarray, w: np.ndarray, task: str = "multiclass") -> np.ndarray:
    """Weighted mean of log scores, activated: a softmax of the mean log-probability (multiclass), a
    sigmoid of the mean logit (multi-label: p and 1 - p pooled geometrically per class)."""
    import numpy as np

    from ensemble.blend.tasks import TASK_MATH

    tm = TASK_MATH.get(task)
    return tm.activate(np.einsum("nuc,u->nc", tm.scores(X), w) / w.sum()).astype(np.float32)


def rank(X: np.ndarray, w: np.ndarray, task: str = "multiclass") -> np.ndarray:
    """Per-class rank averaging: each member's column ranked over the rows (in (0, 1]), weighted mean;
    multiclass rows are then renormalised, multi-label columns stay rank averages."""
    import numpy as np
    from scipy.stats import rankdata

    from ensemble.blend.tasks import TASK_MATH

    r = rankdata(X, axis=0, method="average") / X.shape[0]  # (n, U, C) in (0, 1]
    return TASK_MATH.get(task).finish_rank(np.einsum("nuc,u->nc", r, w) / w.sum())


def hard(X: np.ndarray, w: np.ndarray, task: str = "multiclass") -> np.ndarray:
    """Weighted majority vote: of each member's argmax (multiclass), or per class of p > 0.5 (multi-label).

    Ties are broken by the weighted summed probabilities (`ensemble.blend.tasks.vote_multiclass`,
    `vote_multilabel`): the table's decision is the tie-broken vote.
    """
    from ensemble.blend.tasks import TASK_MATH

    return TASK_MATH.get(task).vote(X, w)


def _count_code(spec: Spec) -> int | None:
    """The metric's compiled count code when the task's decisions are argmaxes (the kernels' case), else None."""
    from ensemble.blend.tasks import TASK_MATH

    return spec.metric.count_code if TASK_MATH.get(spec.task).count_kernels else None


def _fit_weighted(X: np.ndarray, y: np.ndarray, n_classes: int, spec: Spec, index: np.ndarray | None) -> tuple[np.ndarray, str]:
    code = _count_code(spec)
    if code is None:
        from ensemble.blend import search

        return search.weights(X, y, spec.metric, spec.rounds, index, spec.task)
    from ensemble.blend.weighted import optimise_weights

    return optimise_weights(X, y, n_classes, code=code)[0], "linear"


def _fit_greedy(X: np.ndarray, y: np.ndarray, n_classes: int, spec: Spec, index: np.ndarray | None) -> tuple[np.ndarray, str]:
    code = _count_code(spec)
    if code is None:
        from ensemble.blend import search

        return search.greedy(X, y, spec.metric, spec.rounds, index, spec.task), "linear"
    from ensemble.blend.greedy import caruana

    counts, _ = caruana(X, y, n_classes, rounds=spec.rounds, code=code)
    return counts / counts.sum(), "linear"


METHODS: Registry[Method] = Registry("blend method")
METHODS.add("soft", Method(soft, takes_weights=True, help="mean of probabilities"))
METHODS.add("hard", Method(hard, takes_weights=True, help="majority vote (per class for multi-label), ties by summed probabilities"))
METHODS.add("rank", Method(rank, help="per-class rank averaging", rowwise=False))
METHODS.add("geometric", Method(geometric, takes_weights=True, help="mean of log-probabilities (logits for multi-label), activated"))
METHODS.add("weighted", Method(soft, fit=_fit_weighted, help="weights that optimise the OOF metric"))
METHODS.add("greedy", Method(soft, fit=_fit_greedy, help="Caruana selection with replacement (best round kept)"))


def fits_anything(method: str, spec: Spec) -> bool:
    """Whether the blend learns from labels (so its in-sample score is optimistic)."""
    return (
        METHODS.get(method).fit is not None or spec.top is not None or spec.tune_bias or spec.calibrate != "none"
        or spec.thresholds != "none"
    )


def unit_scores(X: np.ndarray, y: np.ndarray, metric: Metric, index: np.ndarray | None = None) -> np.ndarray:
    """Each unit's OOF score alone, float64 of shape (U,) (in the metric's own direction)."""
    import numpy as np

    return np.array([metric.score(y, X[:, u], index) for u in range(X.shape[1])])


def fit(
    method: str, X: np.ndarray, y: np.ndarray, n_classes: int, spec: Spec, progress: Progress | None = None,
    index: np.ndarray | None = None,
) -> Fitted:
    """Learn a blend from labelled rows.

    Args:
        method: a METHODS key.
        X: unit probabilities, float32 of shape (n_samples, n_units, n_classes).
        y: int64 labels of shape (n_samples,), or a uint8 indicator matrix (n_samples, n_classes)
            for multi-label tables.
        n_classes: C.
        spec: the metric, member choice, fixed weights, bias, calibration, thresholds, task.
        progress: told about the bias sweeps (slow with thousands of classes) and threshold sweeps.
        index: the rows' numbers among the labelled rows (a competition metric file needs them).
    """
    import numpy as np

    m = METHODS.get(method)
    metric = spec.metric
    units = np.arange(X.shape[1])
    if spec.top is not None and spec.top < len(units):
        scores = metric.oriented(unit_scores(X, y, metric, index))
        units = np.sort(np.argsort(-scores, kind="stable")[: spec.top])  # keep the given order
    Xu = np.ascontiguousarray(X if len(units) == X.shape[1] else X[:, units])  # every unit kept: no copy
    pool = "linear"
    if m.fit is not None:
        w, pool = m.fit(Xu, y, n_classes, spec, index)
    elif spec.weights is not None:
        w = np.asarray(spec.weights, dtype=np.float64)
    else:
        w = np.ones(len(units))
    w = np.asarray(w, dtype=np.float64) / np.sum(w)
    fitted = Fitted(units, w, pool=pool, task=spec.task)
    if spec.tune_bias or spec.calibrate != "none":
        blended = _combine(m, fitted, Xu)
        if spec.tune_bias:
            fitted.bias = _tune_bias(blended, y, n_classes, metric, progress, index)
        else:
            from ensemble.blend import search

            fitted.temperature, fitted.bias = search.calibrate(
                blended, y, metric, index, with_bias=spec.calibrate == "temperature+bias", task=spec.task
            )
    if spec.thresholds != "none":  # last: on what the blend would write (the nested refits redo it per fold)
        from ensemble.blend.thresholds import fit_thresholds

        fitted.thresholds = fit_thresholds(
            apply(method, fitted, X), y, metric, mode=spec.thresholds, index=index, progress=progress
        )
    return fitted


def _tune_bias(
    probs: np.ndarray, y: np.ndarray, n_classes: int, metric: Metric, progress: Progress | None, index: np.ndarray | None
) -> np.ndarray:
    if metric.count_code is not None:
        from ensemble.blend import bias as _bias

        return _bias.tune_bias(probs, y, n_classes, code=metric.count_code, progress=progress)[0]
    from ensemble.blend import search

    return search.bias_grid(probs, y, metric, index)


def _combine(m: Method, fitted: Fitted, X: np.ndarray) -> np.ndarray:
    if fitted.pool == "log":
        return geometric(X, fitted.weights, fitted.task)
    return m.combine(X, fitted.weights, fitted.task)


# Rows blended at a time by `apply` (row-wise methods): the copy of the used units' columns and the
# float64 work stay ~10 MB instead of a second (n, U, C) stack (0.7 GB for 10 members x 1M x 18).
# Each row is computed by the same operations in the same order as in one whole-array pass, so
# the output is bit for bit the same (tested).
APPLY_ROWS = 1 << 14


def apply(method: str, fitted: Fitted, X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Blend rows with a fitted blend: float32 probabilities of shape (n_samples, n_classes).

    Args:
        method: a METHODS key.
        fitted: the fitted blend.
        X: unit probabilities, float32 of shape (n, U, C).
        rows: blend only these rows of X (an int64 index or a boolean mask), as `X[rows]` would
            but without copying X.
    """
    import numpy as np

    m = METHODS.get(method)
    if rows is not None and np.asarray(rows).dtype == bool:
        rows = np.flatnonzero(rows)
    n = X.shape[0] if rows is None else len(rows)
    if not m.rowwise:
        return _apply_rows(m, fitted, X if rows is None else X[rows])
    out = None
    for lo in range(0, max(n, 1), APPLY_ROWS):
        block = X[lo:lo + APPLY_ROWS] if rows is None else X[rows[lo:lo + APPLY_ROWS]]
        probs = _apply_rows(m, fitted, block)
        if out is None:
            out = np.empty((n, probs.shape[1]), dtype=probs.dtype)
        out[lo:lo + len(probs)] = probs
    return out


def _apply_rows(m: Method, fitted: Fitted, X: np.ndarray) -> np.ndarray:
    """`apply` on the rows of X in one pass."""
    import numpy as np

    keep = fitted.weights > 0  # units a fit dropped need not be read
    part = Fitted(fitted.units[keep], fitted.weights[keep], pool=fitted.pool, task=fitted.task)
    probs = _combine(m, part, X[:, fitted.units[keep]])
    if fitted.bias is not None or fitted.temperature != 1.0:
        from ensemble.blend.bias import apply_bias

        bias = np.zeros(probs.shape[1]) if fitted.bias is None else fitted.bias
        probs = apply_bias(probs, bias, fitted.temperature, task=fitted.task)
    if fitted.thresholds is None:
        return probs
    from ensemble.blend.thresholds import shift

    return shift(probs, fitted.thresholds)
