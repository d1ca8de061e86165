"""The blend methods (one registry) and the fit/apply pipeline every method goes through.

A method is a `combine` rule — (n, U, C) unit probabilities and (U,) weights to (n, C)
probabilities — plus, for `weighted` and `greedy`, a `fit` that chooses the weights from labels
for the chosen metric. Around it, the pipeline adds what competitors do: keep the top K units by
the metric, apply given weights, tune a per-class bias (argmax metrics) or calibrate a temperature
(probability metrics). `fit` learns all of that from labelled rows and `apply` replays it on any
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

# hard vote: how much of the winner's one-hot is mixed into the vote shares, so that the table's
# argmax is the tie-broken decision (vote shares alone can tie)
HARD_LIFT = 1e-4


@dataclass(frozen=True)
class Method:
    """One blend method.

    Attributes:
        combine: (X of shape (n, U, C), weights of shape (U,)) -> float32 probabilities (n, C).
        fit: (X, y, n_classes, spec, index) -> (weights (U,), pool) learnt from labels; None when
            nothing is fitted.
        takes_weights: whether `--weights` (fixed weights) applies.
        help: one line for the CLI.
    """

    combine: Callable[[np.ndarray, np.ndarray], np.ndarray]
    fit: Callable[..., tuple[np.ndarray, str]] | None = None
    takes_weights: bool = False
    help: str = ""


CALIBRATIONS = ("none", "temperature", "temperature+bias")


@dataclass(frozen=True)
class Spec:
    """What to fit besides the method: the metric, member choice, fixed weights, bias, calibration, rounds."""

    metric: Metric = field(default_factory=lambda: _default_metric())
    top: int | None = None
    weights: tuple[float, ...] | None = None
    tune_bias: bool = False
    calibrate: str = "none"
    rounds: int = 100


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
        temperature: divides the blended log-probabilities before the bias (1: none).
    """

    units: np.ndarray
    weights: np.ndarray
    bias: np.ndarray | None = None
    pool: str = "linear"
    temperature: float = 1.0


def soft(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of the probabilities."""
    import numpy as np

    return (np.einsum("nuc,u->nc", X, w, dtype=np.float64) / w.sum()).astype(np.float32)


def geometric(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of log-probabilities, renormalised (a softmax of the mean log)."""
    import numpy as np

    from ensemble.blend.bias import log_scores

    z = np.einsum("nuc,u->nc", log_scores(X), w) / w.sum()
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def rank(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-class rank averaging: each member's column ranked over the rows, weighted mean, rows renormalised."""
    import numpy as np
    from scipy.stats import rankdata

    r = rankdata(X, axis=0, method="average") / X.shape[0]  # (n, U, C) in (0, 1]
    z = np.einsum("nuc,u->nc", r, w) / w.sum()
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def hard(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted majority vote of each member's argmax; ties broken by the (weighted) summed probabilities.

    The output rows are the vote shares with the winner lifted by HARD_LIFT, so their argmax is the
    decision (never the lowest tied class index, as sklearn's VotingClassifier would choose).
    """
    import numpy as np

    n, U, C = X.shape
    votes = np.zeros((n, C))
    rows = np.arange(n)
    top = X.argmax(axis=2)  # (n, U)
    for u in range(U):  # a loop over members, not rows
        np.add.at(votes, (rows, top[:, u]), w[u])
    most = votes.max(axis=1, keepdims=True)
    tied = votes >= most - 1e-9 * w.sum()
    summed = np.einsum("nuc,u->nc", X, w, dtype=np.float64)
    winner = np.where(tied, summed, -np.inf).argmax(axis=1)
    shares = votes / w.sum()
    shares[rows, winner] += HARD_LIFT
    return (shares / (1.0 + HARD_LIFT)).astype(np.float32)


def _fit_weighted(X: np.ndarray, y: np.ndarray, n_classes: int, spec: Spec, index: np.ndarray | None) -> tuple[np.ndarray, str]:
    code = spec.metric.count_code
    if code is None:
        from ensemble.blend import search

        return search.weights(X, y, spec.metric, spec.rounds, index)
    from ensemble.blend.weighted import optimise_weights

    return optimise_weights(X, y, n_classes, code=code)[0], "linear"


def _fit_greedy(X: np.ndarray, y: np.ndarray, n_classes: int, spec: Spec, index: np.ndarray | None) -> tuple[np.ndarray, str]:
    code = spec.metric.count_code
    if code is None:
        from ensemble.blend import search

        return search.greedy(X, y, spec.metric, spec.rounds, index), "linear"
    from ensemble.blend.greedy import caruana

    counts, _ = caruana(X, y, n_classes, rounds=spec.rounds, code=code)
    return counts / counts.sum(), "linear"


METHODS: Registry[Method] = Registry("blend method")
METHODS.add("soft", Method(soft, takes_weights=True, help="mean of probabilities"))
METHODS.add("hard", Method(hard, takes_weights=True, help="majority vote, ties by summed probabilities"))
METHODS.add("rank", Method(rank, help="per-class rank averaging"))
METHODS.add("geometric", Method(geometric, takes_weights=True, help="mean of log-probabilities, renormalised"))
METHODS.add("weighted", Method(soft, fit=_fit_weighted, help="weights that optimise the OOF metric"))
METHODS.add("greedy", Method(soft, fit=_fit_greedy, help="Caruana selection with replacement (best round kept)"))


def fits_anything(method: str, spec: Spec) -> bool:
    """Whether the blend learns from labels (so its in-sample score is optimistic)."""
    return METHODS.get(method).fit is not None or spec.top is not None or spec.tune_bias or spec.calibrate != "none"


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
        y: int64 labels of shape (n_samples,).
        n_classes: C.
        spec: the metric, member choice, fixed weights, bias, calibration.
        progress: told about the bias sweeps (slow with thousands of classes).
        index: the rows' numbers among the labelled rows (a competition metric file needs them).
    """
    import numpy as np

    m = METHODS.get(method)
    metric = spec.metric
    units = np.arange(X.shape[1])
    if spec.top is not None and spec.top < len(units):
        scores = metric.oriented(unit_scores(X, y, metric, index))
        units = np.sort(np.argsort(-scores, kind="stable")[: spec.top])  # keep the given order
    Xu = np.ascontiguousarray(X[:, units])
    pool = "linear"
    if m.fit is not None:
        w, pool = m.fit(Xu, y, n_classes, spec, index)
    elif spec.weights is not None:
        w = np.asarray(spec.weights, dtype=np.float64)
    else:
        w = np.ones(len(units))
    w = np.asarray(w, dtype=np.float64) / np.sum(w)
    fitted = Fitted(units, w, pool=pool)
    if spec.tune_bias or spec.calibrate != "none":
        blended = _combine(m, fitted, Xu)
        if spec.tune_bias:
            fitted.bias = _tune_bias(blended, y, n_classes, metric, progress, index)
        else:
            from ensemble.blend import search

            fitted.temperature, fitted.bias = search.calibrate(
                blended, y, metric, index, with_bias=spec.calibrate == "temperature+bias"
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
        return geometric(X, fitted.weights)
    return m.combine(X, fitted.weights)


def apply(method: str, fitted: Fitted, X: np.ndarray) -> np.ndarray:
    """Blend rows with a fitted blend: float32 probabilities of shape (n_samples, n_classes)."""
    import numpy as np

    keep = fitted.weights > 0  # units a fit dropped need not be read
    part = Fitted(fitted.units[keep], fitted.weights[keep], pool=fitted.pool)
    probs = _combine(METHODS.get(method), part, X[:, fitted.units[keep]])
    if fitted.bias is None and fitted.temperature == 1.0:
        return probs
    from ensemble.blend.bias import apply_bias

    return apply_bias(probs, np.zeros(probs.shape[1]) if fitted.bias is None else fitted.bias, fitted.temperature)
