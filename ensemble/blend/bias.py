"""`--tune-bias`: a per-class additive log-probability bias that maximises macro-F1.

Macro-F1 weighs every class equally, so the argmax of calibrated probabilities is not its best
decision rule: rare classes deserve a lower bar. The bias `b` (one number per class) moves the
decision to `argmax(log p + b)`. Each class's bias is tuned in turn by an exact 1-D search
(`_kernels.bias_search`: every row switches to or from that class at one point, so the points are
sorted and swept once), taking the midpoint of the best piece; passes repeat until none helps.
The bias is applied to test probabilities identically (`apply_bias`).
"""

from __future__ import annotations

import numpy as np

from ensemble._kernels import MACRO_F1
from ensemble._progress import NoProgress, Progress
from ensemble.blend import _kernels as K

SPAN = 3.0  # one step moves a class's bias by at most this much (log-probability units)
MAX_SWEEPS = 10
EPS = 1e-12  # floor before the log: a zero probability stays reachable by a finite bias


def log_scores(probs: np.ndarray) -> np.ndarray:
    """float64 log-probabilities of (n, C) probabilities, floored at EPS."""
    return np.log(np.maximum(probs.astype(np.float64), EPS))


def tune_bias(
    probs: np.ndarray, y: np.ndarray, n_classes: int, *, code: int = MACRO_F1, max_sweeps: int = MAX_SWEEPS,
    progress: Progress | None = None,
) -> tuple[np.ndarray, float, float]:
    """Fit the bias by exact coordinate ascent.

    Args:
        probs: blended probabilities, shape (n_samples, n_classes).
        y: int64 labels of shape (n_samples,).
        n_classes: C.
        code: the count metric to maximise (`ensemble._kernels.COUNT_METRICS`; macro-F1 by default).
        max_sweeps: passes over the classes; stops earlier when a pass improves nothing.
        progress: told about each class of each sweep.

    Returns:
        (bias, f1, f1_start): float64 bias of shape (n_classes,) (mean zero), the macro-F1 with it
        and without it (never higher than `f1`).
    """
    L = log_scores(probs)
    bias = np.zeros(n_classes)
    amax, _ = K.argmax_margin(L)
    tp, pc, tc = K.class_counts(y, amax, n_classes)
    f = f_start = float(K.count_metric(tp, pc, tc, code))
    progress = progress or NoProgress()
    for sweep in range(max_sweeps):
        improved = False
        progress.start(f"tuning the bias (sweep {sweep + 1})", n_classes)
        for c in range(n_classes):
            progress.advance()
            t, fc = K.bias_search(L, amax, c, -SPAN, SPAN, y, tp, pc, tc, code)
            if t == 0.0 or fc <= f:
                continue
            L[:, c] += t
            bias[c] += t
            amax, _ = K.argmax_margin(L)
            tp, pc, _ = K.class_counts(y, amax, n_classes)
            f = float(K.count_metric(tp, pc, tc, code))
            improved = True
        if not improved:
            break
    progress.stop()
    return bias - bias.mean(), f, f_start  # a common shift changes nothing; centre it


def apply_bias(probs: np.ndarray, bias: np.ndarray, temperature: float = 1.0, *, task: str = "multiclass") -> np.ndarray:
    """Probabilities `activate(scores(p) / temperature + bias)`, float32 of shape (n, C).

    Multiclass: `softmax(log p / temperature + bias)`; with temperature 1 its argmax is the biased
    decision (`--tune-bias`). Multi-label: `sigmoid(logit(p) / temperature + bias)` per class. A
    temperature other than 1 sharpens (< 1) or softens (> 1) the blend (`--calibrate`).
    """
    from ensemble.blend.tasks import TASK_MATH

    tm = TASK_MATH.get(task)
    z = tm.scores(probs) / temperature + np.asarray(bias, dtype=np.float64)
    return tm.activate(z).astype(np.float32)
