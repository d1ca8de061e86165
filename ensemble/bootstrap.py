"""Bootstrap distributions and confidence intervals of any metric, paired across candidates.

Every candidate of one call is scored on the same resamples (a paired bootstrap), so differences
between candidates are not drowned by resampling noise. The resamples are defined exactly, so
anyone can reproduce them; `rng = np.random.default_rng(seed)` throughout.

Argmax metrics (a `count_code`, or a function of the confusion matrix) never copy rows: they
depend on a row only through its type — the tuple (true label, candidate 1's prediction, ...,
candidate k's prediction) — so a resample is a count per type, turned straight into per-class
counts (`ensemble._kernels.boot_counts`) or confusion matrices. U is at most C**2 for one candidate
(324 for 18 classes): 1,000 resamples of 100k rows take ~0.2 s. The types are `types, inv, freq =
np.unique(np.column_stack([y, *preds]), axis=0, return_inverse=True, return_counts=True)`; then

- when U <= n / 16 (few types: always for one model on n >= 16 C**2 rows), the type counts of all
  resamples are `rng.multinomial(n, freq / n, size=n_boot)` (the same distribution as drawing rows);
- otherwise (many models with scattered errors, where U nears n and a multinomial over U
  categories costs more than drawing rows), resample b = 0, 1, ... draws rows
  `rng.integers(0, n, size=n)` and counts their types, `np.bincount(inv[rows], minlength=U)`.

Every other metric, and every metric when `groups` are given, resamples groups: resample b = 0, 1,
... draws `rng.integers(0, G, size=G)`, G the number of groups numbered in `np.unique(groups)`
order (without groups each row is its own group, G = n). A drawn group brings all its rows (a
cluster bootstrap: rows of one study stay together). Mean metrics (`row_losses`) are then weighted
means of the per-row values (a matrix product, no copy); argmax metrics weigh each group's type
counts; any other metric (ROC-AUC, a competition metric file) is called on the materialised rows,
drawn groups in draw order and each group's rows in row order.

Multi-label metrics (`metric.task == "multilabel"`, `y` a 0/1 indicator matrix (n, C)) resample
groups (rows) the same way: an F1 of per-class counts (`from_counts`: macro_f1, micro_f1) sums
each resample's per-class counts as a product of the draw counts (b, G) with the groups' count
sums; a row mean (`row_losses`: samples_f1, log_loss) is a weighted mean; a rank score (map,
roc_auc) sorts each class once and walks it with each resample's row weights (how often each row
was drawn); any other (a metric file) is called on the materialised rows. All see the same resamples.

A `progress` hook (`ensemble._progress.Progress`) is told the number of resamples and advanced as
they are drawn.

Because the types depend on which candidates are stacked, one candidate's scores from a joint call
differ from a call with that candidate alone (both are valid bootstraps; only within one call are
they paired).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from ensemble import _kernels
from ensemble._progress import NoProgress, Progress
from ensemble.errors import MetricError
from ensemble.metrics import ConfusionMetric, Metric, argmax, get_metric
from ensemble.metrics.multilabel import ClassMean, LabelCountMetric, check_multilabel
from ensemble.metrics.resample import (
    Groups,
    group_type_counts,
    histograms,
    mean_scores,
    score_each,
)
from ensemble.task import MULTICLASS, MULTILABEL

__all__ = ["bootstrap_ci", "bootstrap_metric", "bootstrap_metric_ci", "bootstrap_scores", "resamples", "row_types"]

# type counts held in memory at once (int64): 4M = 32 MB, whatever n_boot and U are
_CHUNK = 1 << 22
# draw type counts by multinomial while U <= n / 16: a binomial per type costs ~10 drawn row indices
_TYPES_PER_ROW = 16


def resamples(
    y: np.ndarray, preds: np.ndarray, n_boot: int, seed: int = 42, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, bool, Iterator[np.ndarray]]:
    """The row types and, in chunks, how often each is drawn per resample (see the module docstring).

    Args:
        y: int64 labels, shape (n,).
        preds: int64 predictions, shape (k, n).
        n_boot: number of resamples.
        seed: seeds the draws.
        n_classes: C (default: the largest label + 1); lets the types be found by one 1-D sort.

    Returns:
        types of shape (U, 1 + k) (label, then each model's prediction), each row's type (n,),
        whether resamples come as type counts, and a generator of int64 chunks — type counts of
        shape (b, U), or drawn row indices of shape (b, n); concatenated, the n_boot resamples.
    """
    n = len(y)
    types, inv, freq = row_types(np.stack([y, *preds]), n_classes or int(max(y.max(), preds.max())) + 1)
    u = len(types)
    rng = np.random.default_rng(seed)
    by_type = u * _TYPES_PER_ROW <= n
    per_chunk = max(1, _CHUNK // (u if by_type else n))

    def chunks():
        for start in range(0, n_boot, per_chunk):
            b = min(per_chunk, n_boot - start)
            if by_type:
                yield rng.multinomial(n, freq / n, size=b)
                continue
            rows = np.empty((b, n), dtype=np.int64)
            for r in range(b):
                rows[r] = rng.integers(0, n, size=n)
            yield rows

    return types, inv, by_type, chunks()


def row_types(cols: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`np.unique(cols.T, axis=0, return_inverse=True, return_counts=True)`, faster.

    Each row's labels are packed into one int64 (first column most significant, so the sorted
    codes are the rows in lexicographic order, as `np.unique(axis=0)` sorts them) when they fit.

    Args:
        cols: int64 labels in 0..C-1, shape (1 + k, n).
        n_classes: C.

    Returns:
        types (U, 1 + k), the type of each row (n,), and how many rows each type has (U,).
    """
    if len(cols) * np.log2(max(n_classes, 2)) > 62:
        types, inv, freq = np.unique(cols.T, axis=0, return_inverse=True, return_counts=True)
        return types, inv.ravel(), freq  # numpy 2.0.x returned inv with the input's 2-D shape
    code = np.zeros(cols.shape[1], dtype=np.int64)
    for col in cols:
        code = code * n_classes + col
    uniq, inv, freq = np.unique(code, return_inverse=True, return_counts=True)
    types = np.empty((len(uniq), len(cols)), dtype=np.int64)
    for j in range(len(cols) - 1, -1, -1):
        uniq, types[:, j] = np.divmod(uniq, n_classes)
    return types, inv, freq


def bootstrap_scores(
    y_true: np.ndarray,
    preds: np.ndarray,
    *,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 42,
    all_classes: bool = False,
) -> np.ndarray:
    """Macro-F1 on each bootstrap resample of the rows.

    Args:
        y_true: int labels in 0..C-1, shape (n,).
        preds: int predicted labels of shape (n,), or of shape (k, n) for k models; float
            probabilities of shape (n, C) or (k, n, C) are reduced to their argmax.
        n_classes: C.
        n_boot: number of resamples.
        seed: seeds the resamples (the module docstring defines them exactly).
        all_classes: macro-F1 over all C classes instead of those present (see `metrics.macro_f1`).

    Returns:
        float64 scores of shape (n_boot,), or (k, n_boot) for k models, all k on the same resamples.

    Raises:
        MetricError: shapes disagree, labels outside 0..C-1, or n_boot < 1.
    """
    y, p, single = _normalise(y_true, preds, n_classes)
    if n_boot < 1:
        raise MetricError(f"n_boot={n_boot}; the bootstrap needs at least 1 resample")
    code = _kernels.MACRO_F1_ALL if all_classes else _kernels.MACRO_F1
    out = _argmax_scores(y, p, n_classes, n_boot, seed, None, code=code)
    return out[0] if single else out


def bootstrap_ci(
    y_true: np.ndarray,
    preds: np.ndarray,
    *,
    n_classes: int,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 42,
    all_classes: bool = False,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile confidence interval (alpha/2, 1 - alpha/2) of macro-F1 over bootstrap resamples.

    Args:
        alpha: 0.05 gives a 95% interval.
        (the others as in `bootstrap_scores`)

    Returns:
        (low, high) floats; for k models, two arrays of shape (k,).
    """
    _check_alpha(alpha)
    scores = bootstrap_scores(y_true, preds, n_classes=n_classes, n_boot=n_boot, seed=seed, all_classes=all_classes)
    return _percentiles(scores, alpha)


def bootstrap_metric(
    metric: str | Metric,
    y: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 42,
    groups: np.ndarray | None = None,
    index: np.ndarray | None = None,
    task: str = MULTICLASS,
    progress: Progress | None = None,
) -> np.ndarray:
    """Any metric on each bootstrap resample of the rows (or of the groups), paired across candidates.

    The fastest exact path is picked by capability: a `count_code` -> compiled per-class counts; a
    `ConfusionMetric` -> per-resample confusion matrices; a multi-label `from_counts` -> per-class
    counts as weighted sums; `row_losses` -> weighted means; anything else -> `metric.score` on each
    materialised resample. The module docstring defines the resamples.

    Args:
        metric: a registry name (looked up in `task`'s registry) or a `Metric`.
        y: int labels in 0..C-1, shape (n,); for a multi-label metric a 0/1 indicator matrix (n, C).
        probs: probabilities of shape (n, C), or (k, n, C) for k candidates.
        n_boot: number of resamples.
        seed: seeds the resamples.
        groups: the group of each row (int codes or strings), shape (n,): whole groups are resampled.
        index: each row's number in the labelled rows the metric was bound to, int64 (n,); a
            resample passes `index[rows]` to `metric.score` (default: `rows` themselves).
        task: the registry a metric name is looked up in (`multiclass` or `multilabel`).
        progress: told `start("bootstrap <metric>", n_boot)`, advanced per drawn resample, stopped.

    Returns:
        float64 scores of shape (n_boot,), or (k, n_boot) for k candidates, all on the same resamples.

    Raises:
        MetricError: shapes disagree, labels outside 0..C-1 (not 0/1 for a multi-label metric), or n_boot < 1.
    """
    metric = get_metric(metric, task)
    if metric.task == MULTILABEL:
        y, probs, single = _multilabel_inputs(metric, y, probs, n_boot, groups, index)
    else:
        y, probs, single = _metric_inputs(y, probs, n_boot, groups, index)
    c = probs.shape[-1]
    progress = progress or NoProgress()
    grouping = None if groups is None else Groups.of(groups)
    every = grouping or Groups.rows(len(y))
    progress.start(f"bootstrap {metric.name}", n_boot)
    try:
        if metric.task == MULTICLASS and (metric.count_code is not None or isinstance(metric, ConfusionMetric)):
            preds = np.stack([argmax(q) for q in probs])
            out = _argmax_scores(
                y, preds, c, n_boot, seed, grouping, code=metric.count_code, metric=metric, progress=progress
            )
        elif isinstance(metric, LabelCountMetric):
            out = _label_count_scores(metric, y, probs, n_boot, seed, every, progress)
        elif isinstance(metric, ClassMean):
            out = _ranked_scores(metric, y, probs, n_boot, seed, every, progress)
        elif (first := metric.row_losses(y, probs[0])) is not None:
            losses = np.stack([first, *(metric.row_losses(y, q) for q in probs[1:])])
            out = mean_scores(losses, n_boot, seed, _Reported.of(every, progress), _CHUNK)
        else:
            out = score_each(metric, y, probs, index, n_boot, seed, _Reported.of(every, progress))
    finally:
        progress.stop()
    return out[0] if single else out


def bootstrap_metric_ci(
    metric: str | Metric,
    y: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 42,
    groups: np.ndarray | None = None,
    index: np.ndarray | None = None,
    task: str = MULTICLASS,
    progress: Progress | None = None,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile interval (alpha/2, 1 - alpha/2) of `bootstrap_metric` (the others as there).

    Returns:
        (low, high) floats; for k candidates, two arrays of shape (k,).
    """
    _check_alpha(alpha)
    scores = bootstrap_metric(
        metric, y, probs, n_boot=n_boot, seed=seed, groups=groups, index=index, task=task, progress=progress
    )
    return _percentiles(scores, alpha)


@dataclass(frozen=True)
class _Reported(Groups):
    """Groups whose draws advance a progress hook by the number of resamples drawn."""

    progress: Progress = field(default_factory=NoProgress)

    @classmethod
    def of(cls, groups: Groups, progress: Progress) -> _Reported:
        return cls(groups.code, groups.size, groups.order, groups.start, progress)

    def draw(self, rng: np.random.Generator, b: int) -> np.ndarray:
        drawn = super().draw(rng, b)
        self.progress.advance(b)
        return drawn


def _label_count_scores(
    metric: LabelCountMetric, y: np.ndarray, probs: np.ndarray, n_boot: int, seed: int, groups: Groups,
    progress: Progress,
) -> np.ndarray:
    """(k, n_boot) scores of a multi-label count metric: per-class counts of each resample as (b, G) @ (G, m)."""
    k, n, c = probs.shape
    truth = y.view(np.bool_)
    decided = [metric.decide(q) for q in probs]
    cells = np.concatenate([truth, *(truth & d for d in decided), *decided], axis=1)  # (n, (1 + 2k) C) 0/1
    exact = np.float32 if n < 2**24 else np.float64  # BLAS sums counts below 2**24 exactly in float32
    if len(groups.size) == n and np.array_equal(groups.code, np.arange(n)):
        sums = cells.astype(exact)  # each row its own group
    else:
        sums = np.stack([np.bincount(groups.code, weights=col, minlength=len(groups.size)) for col in cells.T], axis=1)
        sums = sums.astype(exact)
    rng = np.random.default_rng(seed)
    out = np.empty((k, n_boot))
    per_chunk = max(1, _CHUNK // len(groups.size))
    with _one_blas_thread():
        for start in range(0, n_boot, per_chunk):
            b = min(per_chunk, n_boot - start)
            counts = np.rint(groups.counts(groups.draw(rng, b)).astype(exact) @ sums).astype(np.int64)  # (b, m)
            tc = counts[:, :c]
            tp = counts[:, c : c + k * c].reshape(b, k, c).transpose(1, 0, 2)
            pc = counts[:, c + k * c :].reshape(b, k, c).transpose(1, 0, 2)
            out[:, start : start + b] = metric.from_counts(tp, pc, tc[None])
            progress.advance(b)
    return out


def _one_blas_thread() -> AbstractContextManager:
    """BLAS on one thread for a tall, thin product: OpenBLAS's threads gain little there and, on cores
    busy with other work, spin (1,000 resamples of 100k x 20: 50 s instead of 3 s on two busy cores)."""
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _ranked_scores(
    metric: ClassMean, y: np.ndarray, probs: np.ndarray, n_boot: int, seed: int, groups: Groups, progress: Progress
) -> np.ndarray:
    """(k, n_boot) scores of a multi-label rank metric: each class sorted once, each resample a weighting of its rows."""
    ranked = [metric.ranked(y, q) for q in probs]
    rng = np.random.default_rng(seed)
    out = np.empty((len(probs), n_boot))
    per_chunk = max(1, _CHUNK // max(len(y), len(groups.size)))
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        weights = groups.counts(groups.draw(rng, b))[:, groups.code]  # (b, n): how often each row is drawn
        for q, r in enumerate(ranked):
            out[q, start : start + b] = metric.from_ranked(r, weights)
        progress.advance(b)
    return out


def _argmax_scores(
    y: np.ndarray,
    preds: np.ndarray,
    c: int,
    n_boot: int,
    seed: int,
    groups: Groups | None,
    *,
    code: int | None = None,
    metric: ConfusionMetric | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """(k, n_boot) scores of argmax predictions (k, n): a count metric `code`, else `metric.from_confusion`."""
    if groups is None:
        types, inv, by_type, chunks = resamples(y, preds, n_boot, seed, c)
    else:
        types, inv, _ = row_types(np.stack([y, *preds]), c)
        by_type, chunks = True, group_type_counts(groups, inv, len(types), n_boot, seed, _CHUNK)
    u = len(types)
    ty, tpred = np.ascontiguousarray(types[:, 0]), np.ascontiguousarray(types[:, 1:].T)
    inv = inv.astype(np.int32 if u < 2**31 else np.int64)  # a smaller table stays in cache
    out = np.empty((preds.shape[0], n_boot))
    done = 0
    for w in chunks:
        if code is not None:
            if by_type:
                tp, pc, tc = _kernels.boot_counts(ty, tpred, w, c)  # (k, b, C), (k, b, C), (b, C)
            else:
                tp, pc, tc = _kernels.boot_rows(inv, ty, tpred, w, c)
            out[:, done : done + len(w)] = _kernels.count_metric_np(tp, pc, tc[None], code)
        else:
            weights = w if by_type else histograms(inv[w], u)  # (b, U)
            out[:, done : done + len(w)] = metric.from_confusion(_confusions(ty, tpred, weights, c))
        done += len(w)
        if progress is not None:
            progress.advance(len(w))
    return out


def _confusions(ty: np.ndarray, tpred: np.ndarray, weights: np.ndarray, c: int) -> np.ndarray:
    """Confusion matrices (k, b, C, C) of k candidates from type weights (b, U)."""
    cells = ty * c + tpred  # (k, U)
    return np.stack([histograms(np.broadcast_to(cell, weights.shape), c * c, weights) for cell in cells]).reshape(
        len(cells), len(weights), c, c
    )


def _metric_inputs(
    y: np.ndarray, probs: np.ndarray, n_boot: int, groups: np.ndarray | None, index: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Labels (n,) int64 in range, probabilities (k, n, C), and whether one candidate was given."""
    p = _candidates(probs)
    yy = np.asarray(y)
    if yy.ndim != 1 or len(yy) == 0:
        raise MetricError(f"y has shape {yy.shape}; expected labels of shape (n_samples,), n >= 1")
    _check_labels("y", yy, p.shape[-1])
    if p.shape[-2] != len(yy):
        raise MetricError(f"y has {len(yy)} rows but the probabilities have {p.shape[-2]}; give one per row")
    _check_rest(len(yy), n_boot, groups, index)
    return yy.astype(np.int64, copy=False), (p[None] if p.ndim == 2 else p), p.ndim == 2


def _multilabel_inputs(
    metric: Metric, y: np.ndarray, probs: np.ndarray, n_boot: int, groups: np.ndarray | None, index: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """An indicator matrix (n, C) uint8, probabilities (k, n, C), and whether one candidate was given."""
    p = _candidates(probs)
    yy = np.asarray(y)
    if yy.shape != p.shape[-2:] or len(yy) == 0:
        raise MetricError(
            f"y has shape {yy.shape} but the multi-label metric {metric.name} needs a 0/1 indicator matrix of the "
            f"probabilities' shape {p.shape[-2:]}, n >= 1; give one row per sample and one column per class"
        )
    truth, _ = check_multilabel(yy, p.reshape(-1, p.shape[-1])[: len(yy)])
    _check_rest(len(yy), n_boot, groups, index)
    return np.ascontiguousarray(truth).view(np.uint8), (p[None] if p.ndim == 2 else p), p.ndim == 2


def _candidates(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs)
    if p.ndim not in (2, 3) or p.shape[-1] == 0 or not np.issubdtype(p.dtype, np.floating):
        raise MetricError(f"probabilities have shape {p.shape} and dtype {p.dtype}; expected float (n, C) or (k, n, C)")
    return p


def _check_rest(n: int, n_boot: int, groups: np.ndarray | None, index: np.ndarray | None) -> None:
    for name, extra in (("groups", groups), ("index", index)):
        if extra is not None and np.shape(extra) != (n,):
            raise MetricError(f"{name} has shape {np.shape(extra)}; give one value per row, shape ({n},)")
    if n_boot < 1:
        raise MetricError(f"n_boot={n_boot}; the bootstrap needs at least 1 resample")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise MetricError(f"alpha={alpha}; give a level between 0 and 1 (0.05 for a 95% interval)")


def _percentiles(scores: np.ndarray, alpha: float) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(scores, [alpha / 2, 1 - alpha / 2], axis=-1)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi


def _normalise(y_true: np.ndarray, preds: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Labels (n,), predictions (k, n) int64 in range, and whether one model was given."""
    y = np.asarray(y_true)
    p = np.asarray(preds)
    if np.issubdtype(p.dtype, np.floating):
        if p.ndim not in (2, 3) or p.shape[-1] != n_classes:
            raise MetricError(f"probabilities have shape {p.shape}; expected (n, {n_classes}) or (k, n, {n_classes})")
        p = argmax(p) if p.ndim == 2 else np.stack([argmax(q) for q in p])
    single = p.ndim == 1
    p = p[None] if single else p
    if p.ndim != 2 or y.ndim != 1 or p.shape[1] != len(y):
        raise MetricError(
            f"y_true has shape {y.shape} and predictions {np.asarray(preds).shape}; expected (n,) and (n,) or (k, n)"
        )
    if len(y) == 0:
        raise MetricError("no samples: y_true is empty")
    for name, a in (("y_true", y), ("predictions", p)):
        _check_labels(name, a, n_classes)
    return np.ascontiguousarray(y, dtype=np.int64), np.ascontiguousarray(p, dtype=np.int64), single


def _check_labels(name: str, a: np.ndarray, n_classes: int) -> None:
    if not np.issubdtype(a.dtype, np.integer):
        raise MetricError(f"{name} have dtype {a.dtype}; expected integer class indices")
    if a.min() < 0 or a.max() >= n_classes:
        raise MetricError(f"{name} hold labels outside 0..{n_classes - 1}; labels are class indices")
