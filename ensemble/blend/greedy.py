"""Caruana ensemble selection: greedy forward selection with replacement, keeping the best seen.

Caruana et al. (2004): start from an empty ensemble and, each round, add (with replacement) the
member whose addition gives the best OOF macro-F1; `use_best` returns the ensemble of the best
round rather than the last. Every round scores all candidates incrementally (`eval_adds`): the
running sum of the chosen members is kept, and only rows whose argmax can change are revisited.
"""

from __future__ import annotations

import numpy as np

from ensemble._kernels import MACRO_F1
from ensemble.blend import _kernels as K


def caruana(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    rounds: int = 100,
    use_best: bool = True,
    code: int = MACRO_F1,
) -> tuple[np.ndarray, float]:
    """Greedy selection with replacement.

    Args:
        X: member probabilities, float32 of shape (n_samples, n_members, n_classes).
        y: int64 labels of shape (n_samples,).
        n_classes: C.
        rounds: how many members to add (with replacement).
        use_best: return the best ensemble seen over the rounds, not the last one.
        code: the count metric to maximise (`ensemble._kernels.COUNT_METRICS`; macro-F1 by default).

    Returns:
        (counts, f1): how often each member was chosen, int64 of shape (n_members,), and the
        macro-F1 of that ensemble.
    """
    n, M, C = X.shape
    B = np.zeros((n, C), dtype=np.float64)  # running sum of the chosen members
    amax, margin = K.argmax_margin(B)
    tp, pc, tc = K.class_counts(y, amax, n_classes)
    hi, _ = K.row_extremes(X)
    counts = np.zeros(M, dtype=np.int64)
    best_counts, best_f = counts.copy(), -1.0
    for _ in range(max(1, rounds)):
        scores = K.eval_adds(B, amax, margin, X, hi, 1.0, y, tp, pc, tc, code)
        m = int(np.argmax(scores))  # ties: the first member, so runs are reproducible
        amax, margin = K.add_scaled(B, X, m, 1.0)
        counts[m] += 1
        tp, pc, _ = K.class_counts(y, amax, n_classes)
        if scores[m] > best_f or not use_best:
            best_f, best_counts = float(scores[m]), counts.copy()
    return best_counts, best_f
