"""Bootstrap distributions and confidence intervals of macro-F1, paired across models.

A resample never copies rows. Macro-F1 depends on a row only through its type — the tuple
(true label, model 1's prediction, ..., model k's prediction) — so resampling n rows with
replacement is the same, in distribution, as drawing the counts of the U distinct types from
Multinomial(n, type frequencies / n). Those counts go straight into per-class true-positive,
predicted and true counts (`ensemble._kernels.boot_counts`). U is at most C**2 for one model (324
for 18 classes), which is why 1,000 resamples of 100k rows of one model take ~0.2 s.

Every model is scored on the same resamples (a paired bootstrap), so differences between models
are not drowned by resampling noise. The resamples are defined exactly, so anyone can reproduce
them. The types are `types, inv, freq = np.unique(np.column_stack([y, *preds]), axis=0,
return_inverse=True, return_counts=True)` and `rng = np.random.default_rng(seed)`; then

- when U <= n / 16 (few types: always for one model on n >= 16 C**2 rows), the type counts of all
  resamples are `rng.multinomial(n, freq / n, size=n_boot)`;
- otherwise (many models with scattered errors, where U nears n and a multinomial over U
  categories costs more than drawing rows), resample b = 0, 1, ... draws rows
  `rng.integers(0, n, size=n)` and counts their types, `np.bincount(inv[rows], minlength=U)`.

Because the types depend on which models are stacked, one model's scores from a joint call differ
from a call with that model alone (both are valid bootstraps; only within one call are they paired).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ensemble import _kernels
from ensemble.errors import MetricError
from ensemble.metrics import argmax, f1_from_counts

__all__ = ["bootstrap_ci", "bootstrap_scores", "resamples", "row_types"]

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
    out = np.empty((p.shape[0], n_boot))
    types, inv, by_type, chunks = resamples(y, p, n_boot, seed, n_classes)
    ty, tp_ = np.ascontiguousarray(types[:, 0]), np.ascontiguousarray(types[:, 1:].T)
    inv = inv.astype(np.int32 if len(types) < 2**31 else np.int64)  # a smaller table stays in cache
    done = 0
    for w in chunks:
        if by_type:
            tp, pc, tc = _kernels.boot_counts(ty, tp_, w, n_classes)  # (k, b, C), (k, b, C), (b, C)
        else:
            tp, pc, tc = _kernels.boot_rows(inv, ty, tp_, w, n_classes)
        out[:, done : done + len(w)] = f1_from_counts(tp, pc, tc[None], all_classes=all_classes)
        done += len(w)
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
    if not 0 < alpha < 1:
        raise MetricError(f"alpha={alpha}; give a level between 0 and 1 (0.05 for a 95% interval)")
    scores = bootstrap_scores(y_true, preds, n_classes=n_classes, n_boot=n_boot, seed=seed, all_classes=all_classes)
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
        if not np.issubdtype(a.dtype, np.integer):
            raise MetricError(f"{name} have dtype {a.dtype}; expected integer class indices")
        if a.min() < 0 or a.max() >= n_classes:
            raise MetricError(f"{name} hold labels outside 0..{n_classes - 1}; labels are class indices")
    return np.ascontiguousarray(y, dtype=np.int64), np.ascontiguousarray(p, dtype=np.int64), single
