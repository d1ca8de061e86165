"""Compiled kernels behind the metrics: fused argmax + confusion counting, count metrics, bootstrap counting.

Blending calls the metric thousands of times on (n, C) probabilities, so the hot path reads the
array exactly once: each thread takes a block of rows, takes every row's argmax and counts it into
its own (C, C) confusion matrix; the partial matrices are summed at the end. numpy's
`argmax(axis=1)` alone costs ~8x the read of the array on a small class axis.

Every kernel has a pure-numpy twin used when numba cannot be imported (and by the tests, as a
second implementation). Kernels are compiled lazily with `cache=True`, so `import ensemble` stays
fast and later processes reuse the machine code. Small inputs take the numpy twin even with numba:
there it is within a small factor of the kernel, while compiling the kernel would cost a fresh
install's first command ~0.5-1.5 s each (a 20k-row blend or report compiles none of these).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

try:  # numba is a declared dependency; the fallback keeps a broken install usable, only slower
    from numba import njit, prange

    NUMBA_INSTALLED = True
    HAVE_NUMBA = os.environ.get("ENS_NO_NUMBA") != "1"  # ENS_NO_NUMBA=1: these kernels' numpy fallback
except ImportError:  # pragma: no cover - exercised only on installs without numba
    NUMBA_INSTALLED = HAVE_NUMBA = False

# Work (elements scanned) from which the compiled kernels run; below, their numpy twins do. At 2**20
# elements numpy's argmax takes a few ms more than the kernel; compiling the kernel costs ~1 s once.
_COMPILE_FROM = 1 << 20
# The bootstrap counts' twin is one BLAS product per chunk: within a small factor of the kernel up to
# ~2**24 drawn (resample, row type, model) cells (a blend's or a report's CI at 20k rows: ~10**6)
_BOOT_COMPILE_FROM = 1 << 24

# Rows per work item: big enough to amortise scheduling, small enough to balance two to many cores.
_BLOCK = 16384
_TILE = 32  # rows whose argmax runs side by side (measured best of 8/16/32 on AVX-512)


def _wide_gathers() -> bool:
    # Tiles of rows vectorise the argmax through gathers: a gain with AVX-512, but on an AVX2 CPU
    # they ran 3.4x slower than one row's compare chain (1M x 18, one thread: 48 ms against 14 ms)
    try:
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except (ImportError, AttributeError, RuntimeError):  # pragma: no cover - an llvmlite without the query: the safe, plain loop
        return False


# numba freezes this at compile time; its cache is kept per CPU model and features, as this is
_TILED = HAVE_NUMBA and _wide_gathers()

# Count metrics: functions of per-class true positives (tp), predicted (pc) and true (tc) counts.
# The registry entries carry these codes; `count_metric` (compiled, scalar) and `count_metric_np`
# (vectorised) are the two implementations of one definition.
MACRO_F1, MACRO_F1_ALL, MICRO_F1, WEIGHTED_F1, ACCURACY, BALANCED_ACCURACY = range(6)
COUNT_METRICS = {
    "macro_f1": MACRO_F1, "macro_f1_all": MACRO_F1_ALL, "micro_f1": MICRO_F1, "weighted_f1": WEIGHTED_F1,
    "accuracy": ACCURACY, "balanced_accuracy": BALANCED_ACCURACY,
}


if NUMBA_INSTALLED:  # the blend optimisers' kernels (numba only: no fallback there) share it

    @njit(cache=True, nogil=True, inline="always")
    def row_argmax(probs, i, n_classes):  # pragma: no cover - compiled
        # strict `>` keeps the first maximum, as np.argmax does
        best = probs[i, 0]
        k = 0
        for j in range(1, n_classes):
            v = probs[i, j]
            if v > best:
                best = v
                k = j
        return k

    @njit(cache=True, nogil=True, inline="always")
    def count_metric(tp, pc, tc, code):  # pragma: no cover - compiled
        """The count metric `code` (a `COUNT_METRICS` value) of per-class int counts (C,) each, float64.

        F1 per class is 2 tp / (pc + tc); sklearn's macro average covers the classes present in
        truth or prediction, `MACRO_F1_ALL` all C; balanced accuracy averages recall over the classes
        present in the truth; undefined ratios are 0 (sklearn's zero_division default).
        """
        c = tp.shape[0]
        if code == MICRO_F1 or code == ACCURACY:
            t = 0
            p = 0
            r = 0
            for j in range(c):
                t += tp[j]
                p += pc[j]
                r += tc[j]
            if code == ACCURACY:
                return t / r if r > 0 else 0.0
            return 2.0 * t / (p + r) if p + r > 0 else 0.0
        total = 0.0
        weight = 0.0
        for j in range(c):
            if code == BALANCED_ACCURACY:
                if tc[j] > 0:
                    total += tp[j] / tc[j]
                    weight += 1.0
                continue
            d = pc[j] + tc[j]
            f = 2.0 * tp[j] / d if d > 0 else 0.0
            if code == WEIGHTED_F1:
                total += f * tc[j]
                weight += tc[j]
            elif code == MACRO_F1_ALL or d > 0:
                total += f
                weight += 1.0
        return total / weight if weight > 0 else 0.0


if HAVE_NUMBA:

    @njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _tile_argmax(probs, i0, c, best, arg):  # pragma: no cover - compiled
        # argmax of rows i0..i0+_TILE into arg: a tile of rows walked column by column, so _TILE
        # independent running maxima vectorise (gathers) instead of one serial compare chain per row
        for r in range(_TILE):
            best[r] = probs[i0 + r, 0]
            arg[r] = 0
        for j in range(1, c):
            for r in range(_TILE):
                v = probs[i0 + r, j]
                gt = v > best[r]  # strict: the first maximum wins, as in np.argmax
                best[r] = v if gt else best[r]
                arg[r] = j if gt else arg[r]

    @njit(cache=True, nogil=True, boundscheck=False)
    def _argmax_nb(probs):  # pragma: no cover - compiled
        n, c = probs.shape
        out = np.empty(n, dtype=np.int64)
        n_blocks = (n + _BLOCK - 1) // _BLOCK
        for b in prange(n_blocks):
            lo = b * _BLOCK
            hi = min(lo + _BLOCK, n)
            best = np.empty(_TILE, dtype=probs.dtype)
            arg = np.empty(_TILE, dtype=np.int32)
            i0 = lo
            while _TILED and i0 + _TILE <= hi:
                _tile_argmax(probs, i0, c, best, arg)
                for r in range(_TILE):
                    out[i0 + r] = arg[r]
                i0 += _TILE
            for i in range(i0, hi):
                out[i] = row_argmax(probs, i, c)
        return out

    @njit(cache=True, nogil=True, boundscheck=False)
    def _confusion_probs_nb(y, probs, n_classes, block):  # pragma: no cover - compiled
        n, c = probs.shape
        n_blocks = (n + block - 1) // block
        # one partial matrix per block (not per thread: prange gives no stable thread id); the
        # extra column counts labels outside 0..C-1 so the caller can refuse them after one pass
        width = n_classes + 1
        part = np.zeros((n_blocks, n_classes * width), dtype=np.int64)
        for b in prange(n_blocks):
            lo = b * block
            hi = min(lo + block, n)
            cm = np.zeros(n_classes * width, dtype=np.int64)
            best = np.empty(_TILE, dtype=probs.dtype)
            arg = np.empty(_TILE, dtype=np.int32)  # 32-bit lanes line up with float32 ones: ~1.4x faster
            i0 = lo
            while _TILED and i0 + _TILE <= hi:
                _tile_argmax(probs, i0, c, best, arg)
                for r in range(_TILE):
                    t = y[i0 + r]
                    if t < 0 or t >= n_classes:
                        cm[n_classes] += 1
                    else:
                        cm[t * width + arg[r]] += 1
                i0 += _TILE
            for i in range(i0, hi):
                t = y[i]
                if t < 0 or t >= n_classes:
                    cm[n_classes] += 1
                else:
                    cm[t * width + row_argmax(probs, i, c)] += 1
            for q in range(n_classes * width):
                part[b, q] = cm[q]
        # summed by numpy in the caller: numba's axis sum and reshape cost ~9 s of compile, for nothing
        return part

    @njit(cache=True, nogil=True, boundscheck=False)
    def _true_nll_nb(y, probs, lo, hi, out):  # pragma: no cover - compiled
        # into `out` and with plain comparisons: numba's np.empty and min/max cost a first `ens
        # oof-report` ~0.4 CPU s of compile, half of this kernel's (measured with numba's compile events)
        for i in range(y.shape[0]):
            v = np.float64(probs[i, y[i]])
            if v < lo:
                v = lo
            if v > hi:
                v = hi
            out[i] = -np.log(v)

    @njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _add_type(tp, pc, tc, b, t, preds, u, c):  # pragma: no cover - compiled
        # resample b drew row type u (true class t, predictions preds[:, u]) c times: count it once
        tc[b, t] += c
        for q in range(preds.shape[0]):
            p = preds[q, u]
            pc[q, b, p] += c
            if p == t:
                tp[q, b, t] += c

    @njit(cache=True, nogil=True, boundscheck=False)
    def _boot_counts_nb(y, preds, weights, n_classes):  # pragma: no cover - compiled
        # weights (B, U): how often each distinct row type is drawn in each resample
        n_boot, u = weights.shape
        k = preds.shape[0]
        tp = np.zeros((k, n_boot, n_classes), dtype=np.int64)
        pc = np.zeros((k, n_boot, n_classes), dtype=np.int64)
        tc = np.zeros((n_boot, n_classes), dtype=np.int64)
        for b in prange(n_boot):
            for j in range(u):
                if weights[b, j] != 0:
                    _add_type(tp, pc, tc, b, y[j], preds, j, weights[b, j])
        return tp, pc, tc

    @njit(cache=True, nogil=True, boundscheck=False)
    def _boot_rows_nb(inv, y, preds, rows, n_classes):  # pragma: no cover - compiled
        # rows (B, n): drawn row indices; inv (n,): each row's type; y (U,), preds (k, U) per type
        n_boot, m = rows.shape
        k = preds.shape[0]
        tp = np.zeros((k, n_boot, n_classes), dtype=np.int64)
        pc = np.zeros((k, n_boot, n_classes), dtype=np.int64)
        tc = np.zeros((n_boot, n_classes), dtype=np.int64)
        u_count = y.shape[0]
        for b in prange(n_boot):
            # histogram of the drawn types first (one increment per drawn row), then one pass over
            # the types: far fewer scattered read-modify-writes than k+1 per drawn row
            w = np.zeros(u_count, dtype=np.int32)
            for j in range(m):
                w[inv[rows[b, j]]] += 1
            for u in range(u_count):
                if w[u] != 0:
                    _add_type(tp, pc, tc, b, y[u], preds, u, w[u])
        return tp, pc, tc


def _f1(tp: np.ndarray, pc: np.ndarray, tc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    denom = tc + pc
    return np.divide(2.0 * tp, denom, out=np.zeros(denom.shape), where=denom > 0), denom > 0


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.shape(den)), where=den > 0)


def _macro(tp, pc, tc):
    f1, present = _f1(tp, pc, tc)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def _weighted(tp, pc, tc):
    return _ratio((_f1(tp, pc, tc)[0] * tc).sum(axis=-1), tc.sum(axis=-1))


def _balanced(tp, pc, tc):
    return _ratio(_ratio(tp, tc).sum(axis=-1), (tc > 0).sum(axis=-1))


_COUNT_NP = {
    MACRO_F1: _macro,
    MACRO_F1_ALL: lambda tp, pc, tc: _f1(tp, pc, tc)[0].mean(axis=-1),
    MICRO_F1: lambda tp, pc, tc: _ratio(2.0 * tp.sum(axis=-1), (pc + tc).sum(axis=-1)),
    WEIGHTED_F1: _weighted,
    ACCURACY: lambda tp, pc, tc: _ratio(tp.sum(axis=-1), tc.sum(axis=-1)),
    BALANCED_ACCURACY: _balanced,
}


def count_metric_np(tp: np.ndarray, pc: np.ndarray, tc: np.ndarray, code: int) -> np.ndarray:
    """`count_metric` vectorised over leading axes: int counts of shape (..., C) each -> float64 (...).

    The arrays broadcast against each other (one truth's `tc` (b, C) serves k models' (k, b, C)).
    """
    tp, pc, tc = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (tp, pc, tc)))
    return _COUNT_NP[code](tp, pc, tc)


# Rows below which one thread does the pass; above, the rows are split across the cores and each
# part runs the compiled (GIL-free) kernel in a Python thread. Numba's parallel loops would do the
# same but cost seconds of compile each (and a first command pays them); a thread pool costs none.
_SPLIT_ROWS = 1 << 18


def _row_parts(n: int) -> list[tuple[int, int]]:
    k = min(threads(), max(1, n // _SPLIT_ROWS))
    edges = np.linspace(0, n, k + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _on_parts(fn: Callable[[int, int], Any], n: int) -> list[Any]:
    """`fn(lo, hi)` on row parts, in threads when there are several: their results in row order."""
    parts = _row_parts(n)
    if len(parts) == 1:
        return [fn(*parts[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(lambda p: fn(*p), parts))


def argmax(probs: np.ndarray) -> np.ndarray:
    """Row argmax (first maximum on ties) of (n, C) probabilities, int64 of shape (n,)."""
    if _compiled(probs.size) and probs.shape[1] > 0:
        p = _contiguous(probs)
        return np.concatenate(_on_parts(lambda lo, hi: _argmax_nb(p[lo:hi]), len(p)))
    return np.argmax(probs, axis=1).astype(np.int64, copy=False)


def confusion_from_probs(y: np.ndarray, probs: np.ndarray, n_classes: int) -> tuple[np.ndarray, int]:
    """Confusion matrix of `y` against the row argmax of `probs`, in one pass.

    Args:
        y: int64 true labels, shape (n,).
        probs: float probabilities or scores, shape (n, C) with C == n_classes.
        n_classes: C.

    Returns:
        The (C, C) int64 matrix (rows: truth, columns: prediction) and how many labels fell
        outside 0..C-1 (those rows are not counted).
    """
    if _compiled(probs.size):
        # a (C, C+1) partial per block: with many classes, few big blocks keep that memory small
        block = _BLOCK if n_classes <= 64 else max(_BLOCK, -(-len(y) // (4 * threads())))
        yy, p = np.ascontiguousarray(y, dtype=np.int64), _contiguous(probs)
        parts = _on_parts(lambda lo, hi: _confusion_probs_nb(yy[lo:hi], p[lo:hi], n_classes, block).sum(axis=0), len(yy))
        full = np.sum(parts, axis=0).reshape(n_classes, n_classes + 1)
        return full[:, :n_classes], int(full[0, n_classes])
    ok = (y >= 0) & (y < n_classes)
    pred = np.argmax(probs[ok], axis=1)
    cm = np.bincount(y[ok] * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return cm.astype(np.int64), int((~ok).sum())


def true_class_nll(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """-log of each row's true-class probability, clipped to [eps, 1 - eps] of its dtype as sklearn does.

    Args:
        y: int64 labels in 0..C-1 (checked by the caller: they index the rows), shape (n,).
        probs: float32 or float64 probabilities, shape (n, C).

    Returns:
        float64 of shape (n,).
    """
    eps = np.finfo(probs.dtype).eps
    lo, hi = float(eps), float(probs.dtype.type(1) - eps)  # the bounds as sklearn clips, in the dtype
    if HAVE_NUMBA:  # at every size: numpy's log may differ from the kernel's in the last bit on some CPUs
        yy = np.ascontiguousarray(y, dtype=np.int64)
        out = np.empty(len(yy), dtype=np.float64)
        _on_parts(lambda a, b: _true_nll_nb(yy[a:b], probs[a:b], lo, hi, out[a:b]), len(yy))
        return out
    return -np.log(np.clip(probs[np.arange(len(y)), y].astype(np.float64), lo, hi))


def boot_counts(
    y: np.ndarray, preds: np.ndarray, weights: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-resample class counts for macro-F1 from row weights, without materialising any resample.

    Args:
        y: int64 labels in 0..C-1 of U rows (or row types), shape (U,).
        preds: int64 predicted labels in 0..C-1, shape (k, U).
        weights: int64 times each row is drawn in each resample, shape (B, U).
        n_classes: C.

    Returns:
        tp (k, B, C) true positives, pc (k, B, C) predicted counts, tc (B, C) true counts.
    """
    if _compiled(weights.size * len(preds), _BOOT_COMPILE_FROM):
        return _boot_counts_nb(y, preds, np.ascontiguousarray(weights, dtype=np.int64), n_classes)
    k, c = len(preds), n_classes
    eye = np.eye(c, dtype=np.float64)
    # one product: the weights against every one-hot column block (truth, k predictions, k hits)
    cols = np.concatenate([eye[y], *(eye[p] for p in preds), *(eye[y] * (p == y)[:, None] for p in preds)], axis=1)
    counts = (weights.astype(np.float64) @ cols).astype(np.int64)  # (B, (2k+1) C); sums far below 2**53: exact
    tc = counts[:, :c]
    pc = counts[:, c : (k + 1) * c].reshape(len(weights), k, c).transpose(1, 0, 2)
    tp = counts[:, (k + 1) * c :].reshape(len(weights), k, c).transpose(1, 0, 2)
    return np.ascontiguousarray(tp), np.ascontiguousarray(pc), tc.copy()


def boot_rows(
    inv: np.ndarray, y: np.ndarray, preds: np.ndarray, rows: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`boot_counts` for resamples given as drawn row indices, counted without materialising them.

    Args:
        inv: the type of each of the n rows, shape (n,).
        y: int64 label of each type, shape (U,).
        preds: int64 prediction of each model for each type, shape (k, U).
        rows: drawn row indices, shape (B, n).
        n_classes: C.
    """
    if _compiled(rows.size * len(preds), _BOOT_COMPILE_FROM):
        return _boot_rows_nb(np.ascontiguousarray(inv), y, preds, np.ascontiguousarray(rows), n_classes)
    u = len(y)
    off = (np.arange(len(rows), dtype=np.int64) * u)[:, None]
    weights = np.bincount((off + inv[rows]).ravel(), minlength=len(rows) * u).reshape(len(rows), u)
    return boot_counts(y, preds, weights, n_classes)


def _compiled(work: int, start: int | None = None) -> bool:
    """Whether a pass over `work` elements runs the compiled kernel (from `start`, default `_COMPILE_FROM`)."""
    return HAVE_NUMBA and work >= (_COMPILE_FROM if start is None else start)


def _contiguous(probs: np.ndarray) -> np.ndarray:
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float64)
    return np.ascontiguousarray(probs)


def threads() -> int:
    """Threads the row-split kernels run on: the cores this process may use (1 on the numpy fallback)."""
    if not HAVE_NUMBA:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
