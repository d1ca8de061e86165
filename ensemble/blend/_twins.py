"""numpy twins of the blend optimisers' compiled kernels, bit for bit, where they cost no run time.

Each twin performs its kernel's float operations in the same types and order, so it returns the
same bits (tests/test_kernels.py compares them on ties). Only the argmax and margins have one: below
2**20 scores it runs as fast as the kernel (20 x 20k x 18 weighted blend: 0.49 s against 0.76 s of
kernel over 198 calls) and spares a first command its compile (~0.3-0.9 CPU s). Twins of the other
kernels were written and measured bit-identical too, but ran 3-10x slower than the kernels on that
blend (line-search events 2.1 s against 0.7 s, sweeps 0.8 against 0.07, Caruana steps 1.6 against
0.3), more than their compile saves, so those stay compiled (and warm in a second process:
`ensemble._warmup`).
"""

from __future__ import annotations

import numpy as np


def argmax_margin(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row argmax (first maximum) and margin to the runner-up of (n, C) scores: int64 (n,), float64 (n,)."""
    n = len(scores)
    amax = np.argmax(scores, axis=1)
    best = scores[np.arange(n), amax]
    others = scores.copy()
    others[np.arange(n), amax] = -np.inf
    second = others.max(axis=1, initial=-np.inf)
    # the kernel subtracts in float64 (its runner-up starts at a float64 -inf) whatever the scores' dtype
    return amax.astype(np.int64, copy=False), best.astype(np.float64) - second.astype(np.float64)
