"""The `weighted` optimiser: non-negative weights summing to 1 that maximise OOF macro-F1.

Macro-F1 of `argmax(sum_i w_i P_i)` is piecewise constant in the weights, so gradient methods and
Nelder-Mead see flat plateaus. This optimiser instead does exact coordinate ascent: starting from
Caruana's selection, it moves one weight at a time along `B + t P_j` and takes the best step on
the whole interval, found exactly by sweeping the points where rows switch class
(`_kernels.line_search`). Each step keeps the midpoint of the best constant piece, which leaves
the most room on both sides (a guard against fitting the boundary). Weights are kept unnormalised
(the argmax does not care about scale) and normalised at the end.
"""

from __future__ import annotations

import numpy as np

from ensemble._kernels import MACRO_F1
from ensemble.blend import _kernels as K
from ensemble.blend.greedy import caruana

INIT_ROUNDS = 10  # Caruana rounds for the starting point (more fits the OOF rows closer, not better)
STEP = 0.1  # a coordinate may gain at most this fraction of the total weight per step
MAX_SWEEPS = 20


def optimise_weights(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    init: np.ndarray | None = None,
    code: int = MACRO_F1,
    max_sweeps: int = MAX_SWEEPS,
) -> tuple[np.ndarray, float, float]:
    """Fit blend weights by exact coordinate line search.

    Args:
        X: member probabilities, float32 of shape (n_samples, n_members, n_classes).
        y: int64 labels of shape (n_samples,).
        n_classes: C.
        init: starting weights of shape (n_members,); Caruana's selection when None.
        code: the count metric to maximise (`ensemble._kernels.COUNT_METRICS`; macro-F1 by default).
        max_sweeps: passes over the members; stops earlier when a pass improves nothing.

    Returns:
        (weights, f1, f1_start): weights of shape (n_members,) summing to 1, their macro-F1, and
        the macro-F1 of the starting point (never higher than `f1`).
    """
    M = X.shape[1]
    if init is None:
        init, _ = caruana(X, y, n_classes, rounds=INIT_ROUNDS, code=code)
    w = np.asarray(init, dtype=np.float64).copy()
    w /= w.sum()
    B = np.einsum("nmc,m->nc", X, w, dtype=np.float64)  # (n, C)
    amax, margin = K.argmax_margin(B)
    tp, pc, tc = K.class_counts(y, amax, n_classes)
    f = f_start = float(K.count_metric(tp, pc, tc, code))
    hi, lo = K.row_extremes(X)
    for _ in range(max_sweeps):
        improved = False
        for j in range(M):
            t, fj = K.line_search(
                B, amax, margin, X, hi, lo, j, -w[j], STEP * w.sum(), y, tp, pc, tc, code
            )
            if t == 0.0 or fj <= f:
                continue
            w[j] = max(w[j] + t, 0.0)
            amax, margin = K.add_scaled(B, X, j, t)
            tp, pc, _ = K.class_counts(y, amax, n_classes)
            f = float(K.count_metric(tp, pc, tc, code))
            improved = True
        if not improved:
            break
    return w / w.sum(), f, f_start
