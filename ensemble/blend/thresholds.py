"""`--tune-thresholds`: multi-label decision thresholds fitted for the metric, and how a blend applies them.

A multi-label class is predicted when its probability is above its threshold (0.5 untuned). The
thresholds are a decision tool, as the per-class bias is for multiclass argmax metrics, so they
are fitted for decision metrics only (F1s, or a competition metric file, which may be one).

- `per-class` (one threshold per class). Macro-F1 is a mean of per-class F1s, so each class is
  fitted on its own by an exact sweep: the class's probabilities are sorted once, every cut between
  two distinct values is a candidate (the threshold is the midpoint), and the F1 of every cut comes
  from cumulative sums — O(n log n) per class, all classes at once. Micro- and samples-F1 couple the
  classes: coordinate ascent over the classes (`SWEEPS` passes), each step an exact sweep of one
  class with the others' decisions fixed (the score of every cut is still a cumulative sum of how
  each row's term changes when that class turns on). Any other metric (a metric file): coordinate
  ascent over a grid of candidate thresholds (the class's probability quantiles and 0.5), each
  scored by the metric itself.
- `global` (one threshold for all classes): the same, over all values at once (exact for the
  F1s by one sort of the n x C values; a grid scored by the metric otherwise).

Sorts need not be stable: tied values may come in any order, since a cut only falls between two
distinct values, where every count above it is the same whatever the order of ties.

Among cuts of equal score the one nearest the current threshold (in logit) is kept, and a class
keeps its threshold unless a cut is strictly better. Whatever the search, the metric itself then
compares the tuned thresholds with the untuned 0.5 and the better is kept.

A blend with thresholds writes its tables with each class's probabilities moved so that its
threshold sits at 0.5 (`shift`): p' = sigmoid(logit(p) - logit(t)). The map is monotone per class
(AUC and AP unchanged) and p' > 0.5 exactly when p > t, so everything downstream decides at 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ensemble._progress import NoProgress, Progress
from ensemble.blend.tasks import logits
from ensemble.metrics.base import Metric
from ensemble.task import DEFAULT_THRESHOLD, sigmoid

SWEEPS = 3  # coordinate-ascent passes over the classes (stops earlier when a pass changes nothing)
GRID = 17  # candidate thresholds per class for a metric without an exact sweep (quantiles, plus 0.5)
T_MIN, T_MAX = 1e-6, 1.0 - 1e-6  # thresholds stay inside (0, 1), so their logits are finite
TIE = 1e-12  # scores closer than this are equal


def shift(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Probabilities moved so each class's threshold sits at 0.5: float32 sigmoid(logit(p) - logit(t)).

    Decisions at 0.5 of the result equal `p > t` exactly: where float32 rounding would put a value
    on the wrong side of 0.5 (values within an ulp of their threshold), it is nudged by one ulp.
    """
    p = np.asarray(probs)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), p.shape[-1:])
    out = sigmoid(logits(p) - logits(t)).astype(np.float32)
    above = p > t  # the decisions the tables must keep
    half = np.float32(0.5)
    out[above & (out <= half)] = np.nextafter(half, np.float32(1.0))
    out[~above & (out > half)] = half
    return out


@dataclass(frozen=True)
class Cuts:
    """Every distinct cut of sorted scores: thresholds and the scores they give.

    Attributes:
        thresholds: float64 (K, ...) candidate thresholds (cut k predicts the k highest values).
        valid: bool (K, ...): the cut falls between two distinct values (so a threshold realises it).
    """

    thresholds: np.ndarray
    valid: np.ndarray


def cuts(sorted_desc: np.ndarray) -> Cuts:
    """Cuts 0..n of values sorted in decreasing order along axis 0 (n, ...).

    Cut 0 predicts nothing (threshold midway between the top value and 1), cut k the first k values
    (threshold midway between the k-th and the (k+1)-th, or half the last value for k = n).
    """
    s = sorted_desc.astype(np.float64)
    top = np.ones((1,) + s.shape[1:])
    bottom = np.zeros((1,) + s.shape[1:])
    upper = np.concatenate([top, s])  # (n + 1, ...): the value just predicted by cut k (1 for k = 0)
    lower = np.concatenate([s, bottom])  # the value just left out by cut k
    return Cuts(np.clip((upper + lower) / 2, T_MIN, T_MAX), upper > lower)


def _f1(tp: np.ndarray, pc: np.ndarray, tc: np.ndarray) -> np.ndarray:
    """2 tp / (pc + tc), 0 where undefined (sklearn's zero_division default)."""
    d = pc + tc
    return np.where(d > 0, 2.0 * tp / np.maximum(d, 1), 0.0)


def _choose(values: np.ndarray, c: Cuts, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the best valid cut's threshold and score; ties go to the cut nearest `current` in logit."""
    v = np.where(c.valid, values, -np.inf)
    best = v.max(axis=0)
    near = np.abs(logits(c.thresholds) - logits(current))
    k = np.where(v >= best - TIE, -near, -np.inf).argmax(axis=0)
    pick = np.take_along_axis(c.thresholds, k[None], axis=0)[0]
    return pick, best


def macro_f1_per_class(P: np.ndarray, Y: np.ndarray, current: np.ndarray | None = None) -> np.ndarray:
    """Per-class thresholds (C,) maximising each class's F1, all classes at once (exact).

    Args:
        P: probabilities (n, C).
        Y: indicator matrix (n, C).
        current: the thresholds kept unless a cut is strictly better (default 0.5).
    """
    n, C = P.shape
    current = np.full(C, DEFAULT_THRESHOLD) if current is None else np.asarray(current, dtype=np.float64)
    order = np.argsort(-P, axis=0)
    S = np.take_along_axis(P, order, axis=0)
    tp = np.concatenate([np.zeros((1, C)), np.cumsum(np.take_along_axis(Y, order, axis=0), axis=0, dtype=np.int64)])
    k = np.arange(n + 1)[:, None]
    values = _f1(tp, k, Y.sum(axis=0, dtype=np.int64)[None])  # (n + 1, C)
    c = cuts(S)
    pick, best = _choose(values, c, current)
    now = values[(P > current).sum(axis=0), np.arange(C)]
    return np.where(best > now + TIE, pick, current)


def _micro_column(D: np.ndarray, Yb: np.ndarray, c: int, order: np.ndarray) -> np.ndarray:
    """Micro-F1 of every cut of class c (rows in `order`), the other classes' decisions D fixed: (n + 1,)."""
    rest = np.delete(np.arange(D.shape[1]), c)
    T, PC, TC = int((D[:, rest] & Yb[:, rest]).sum()), int(D[:, rest].sum()), int(Yb.sum())
    tp = np.concatenate([[0], np.cumsum(Yb[order, c], dtype=np.int64)])
    return 2.0 * (T + tp) / np.maximum(PC + np.arange(len(tp)) + TC, 1)


def _samples_column(D: np.ndarray, Yb: np.ndarray, c: int, order: np.ndarray) -> np.ndarray:
    """Samples-F1 of every cut of class c (rows in `order`), the other classes' decisions D fixed: (n + 1,).

    Each row's F1 changes when c turns on for it; the score of cut k is the mean with c off plus the
    changes of the first k rows.
    """
    y, on = Yb[:, c], D[:, c]
    tp_o, pc_o, tc = (D & Yb).sum(axis=1) - (on & y), D.sum(axis=1) - on, Yb.sum(axis=1)
    off = _f1(tp_o, pc_o, tc)
    gain = _f1(tp_o + y, pc_o + 1, tc) - off
    return (off.sum() + np.concatenate([[0.0], np.cumsum(gain[order])])) / len(D)


# The coupled F1s: the score of every cut of one class with the others fixed.
COUPLED: dict[str, Callable[[np.ndarray, np.ndarray, int, np.ndarray], np.ndarray]] = {
    "micro_f1": _micro_column, "samples_f1": _samples_column,
}


def coupled_per_class(
    kind: str, P: np.ndarray, Y: np.ndarray, current: np.ndarray, progress: Progress | None = None
) -> np.ndarray:
    """Per-class thresholds for a coupled F1 (`COUPLED`) by coordinate ascent with exact sweeps."""
    n, C = P.shape
    column = COUPLED[kind]
    Yb = Y.astype(bool)
    t = np.asarray(current, dtype=np.float64).copy()
    order = np.argsort(-P, axis=0)
    every = cuts(np.take_along_axis(P, order, axis=0))
    progress = progress or NoProgress()
    for sweep in range(SWEEPS):
        changed = False
        progress.start(f"tuning thresholds (sweep {sweep + 1})", C)
        for c in range(C):
            progress.advance()
            D = P > t
            values = column(D, Yb, c, order[:, c])
            pick, best = _choose(values, Cuts(every.thresholds[:, c], every.valid[:, c]), t[c])
            if best > values[int(D[:, c].sum())] + TIE:
                t[c], changed = float(pick), True
        if not changed:
            break
    progress.stop()
    return t


def exact_global(kind: str, P: np.ndarray, Y: np.ndarray, current: float) -> float:
    """One threshold for all classes, exact for macro-, micro- and samples-F1: one sort of the n x C values.

    In decreasing order, each value turning on changes one class's F1 (macro), the summed counts
    (micro) or one row's F1 (samples); its class's (or row's) counts so far are its rank within
    that group and the positives among them.
    """
    n, C = P.shape
    flat = P.ravel()
    order = np.argsort(-flat)
    y = Y.ravel()[order].astype(np.int64)
    k = np.arange(len(flat) + 1, dtype=np.float64)
    if kind == "micro_f1":
        values = 2.0 * np.concatenate([[0], np.cumsum(y)]) / np.maximum(k + Y.sum(), 1.0)
    else:
        group = order % C if kind == "macro_f1" else order // C
        totals = Y.sum(axis=0 if kind == "macro_f1" else 1, dtype=np.int64)
        by = np.argsort(group, kind="stable")  # positions grouped, in decreasing order within each group
        g_sorted = group[by]
        starts = np.searchsorted(g_sorted, g_sorted)  # first position of each element's group
        rank = np.empty(len(flat), dtype=np.int64)
        rank[by] = np.arange(len(flat)) - starts + 1
        cs = np.cumsum(y[by])
        tp = np.empty(len(flat), dtype=np.int64)
        tp[by] = cs - np.concatenate([[0], cs])[starts]
        tc = totals[group]
        gain = _f1(tp, rank, tc) - _f1(tp - y, rank - 1, tc)
        base = _f1(np.zeros_like(totals), np.zeros_like(totals), totals).sum()
        values = (base + np.concatenate([[0.0], np.cumsum(gain)])) / (C if kind == "macro_f1" else n)
    c = cuts(flat[order])
    pick, best = _choose(values, c, np.asarray(current))
    now = values[int((flat > current).sum())]
    return float(pick) if best > now + TIE else float(current)


def _grid(P: np.ndarray) -> np.ndarray:
    q = np.quantile(P, np.linspace(0.02, 0.98, GRID), axis=0)
    return np.clip(q, T_MIN, T_MAX)


def grid_search(
    score: Callable[[np.ndarray], float], P: np.ndarray, mode: str, current: np.ndarray, progress: Progress | None = None
) -> np.ndarray:
    """Thresholds (C,) by coordinate ascent over quantile grids, each candidate scored by `score(thresholds)`."""
    C = P.shape[1]
    t = np.asarray(current, dtype=np.float64).copy()
    best = score(t)
    progress = progress or NoProgress()
    if mode == "global":
        for cand in np.unique(np.append(_grid(P.reshape(-1, 1))[:, 0], DEFAULT_THRESHOLD)):
            s = score(np.full(C, cand))
            if s > best + TIE:
                best, t = s, np.full(C, cand)
        return t
    grids = _grid(P)  # (GRID, C)
    for sweep in range(SWEEPS):
        changed = False
        progress.start(f"tuning thresholds (sweep {sweep + 1})", C)
        for c in range(C):
            progress.advance()
            for cand in np.unique(np.append(grids[:, c], DEFAULT_THRESHOLD)):
                trial = t.copy()
                trial[c] = cand
                s = score(trial)
                if s > best + TIE:
                    best, t, changed = s, trial, True
        if not changed:
            break
    progress.stop()
    return t


def fit_thresholds(
    probs: np.ndarray, y: np.ndarray, metric: Metric, *, mode: str = "per-class", index: np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Thresholds (C,) in (0, 1) for `metric`, fitted on these labelled rows (see the module docstring).

    Args:
        probs: blended multi-label probabilities, shape (n_samples, n_classes).
        y: uint8 indicator matrix of shape (n_samples, n_classes).
        metric: a multi-label decision metric (or a metric file).
        mode: "per-class" or "global" (the same value for every class).
        index: the rows' numbers among the labelled rows (a metric file needs them).
        progress: told about coordinate-ascent sweeps.

    Returns:
        float64 thresholds of shape (n_classes,); all 0.5 when tuning does not beat 0.5 on the metric.
    """
    P = np.asarray(probs, dtype=np.float32)
    Y = np.asarray(y, dtype=np.uint8)
    C = P.shape[1]
    untuned = np.full(C, DEFAULT_THRESHOLD)

    def score(t: np.ndarray) -> float:
        return float(metric.oriented(metric.score(y, shift(P, t), index)))

    # The F1s on indicator matrices have exact sweeps (the metric says which it is); any other metric
    # (a competition metric file) is searched on a grid and scored by itself.
    kind = None if metric.runs_user_code else metric.threshold_sweep
    if kind is not None and mode == "global":
        t = np.full(C, exact_global(kind, P, Y, DEFAULT_THRESHOLD))
    elif kind == "macro_f1":
        t = macro_f1_per_class(P, Y, untuned)
    elif kind is not None:
        t = coupled_per_class(kind, P, Y, untuned, progress)
    else:
        t = grid_search(score, P, mode, untuned, progress)
    return t if score(t) > score(untuned) + TIE else untuned
