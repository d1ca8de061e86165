"""Compiled kernels for the blend optimisers: incremental count metrics (macro-F1, accuracy, ...) along a move.

A blend is `B = sum_i w_i P_i` (unnormalised: the argmax does not care about scale). Moving one
coordinate, `B + t P_j`, changes a row's argmax only where its margin (top score minus runner-up)
is below |t|, because every probability lies in [0, 1]. So each kernel starts from the current
argmax and per-class counts, visits only the rows whose argmax can change, and updates the
counts; the metric then follows from the counts in O(C), never from a fresh pass over all rows.

`line_search` goes further: along a line every row's argmax is piecewise constant in t (the upper
envelope of C lines), so it lists the exact t where each row switches class, sorts those events
and sweeps them once, which gives the exact best step on the whole interval.

Counts are kept as true positives `tp` (C,), predicted counts `pc` (C,) and true counts `tc` (C,);
the score of counts is the count metric `code` (`ensemble._kernels.count_metric`: macro-F1,
accuracy, balanced accuracy, ...), so every argmax metric defined by counts gets the exact searches.

Only the passes that a fit repeats hundreds of times, or that numpy does many times slower, are
compiled: each compiled kernel costs a fresh install ~0.2-1 s of compile in its first command, so
counting, the in-place add and the scalar metric are numpy or plain Python (same arithmetic, so the
same bits). The kernels allocate nothing and return only scalars: their outputs are numpy arrays made
by the Python wrappers, because each array that compiled code allocates or returns costs its own
compile (numba's `np.empty` and boxing: ~0.1-0.25 s per dtype and rank, measured with numba's compile
events). Below `_kernels._COMPILE_FROM` scores the argmax and margins come from numpy
(`ensemble.blend._twins`), as fast there as the kernel and the same bits.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numba import njit

from ensemble import _kernels, _warmup
from ensemble._kernels import row_argmax  # shared: one definition
from ensemble.blend import _twins

# called (not inlined) by the compiled sweeps below: compiled once, not once into each caller
count_compiled = njit(cache=True, nogil=True)(_kernels.count_metric.py_func)
# The same function, run by Python, for callers outside compiled code: the same operations in the
# same order on float64, hence bit-identical scores (the optimisers compare the two), and no compile.
count_metric = _kernels.count_metric.py_func


def _events_cap(n: int) -> int:
    """Switch events a line search's first buffer holds (float64 rows of 5); more take a second pass.

    Two per row is more than a fit meets (one switch per direction), and pages never written cost nothing.
    """
    return max(4096, 2 * n)


def argmax_margin(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row argmax (first maximum on ties), int64 (n,), and margin to the runner-up, float64 (n,), of (n, C) scores."""
    if not _kernels._compiled(scores.size):
        return _twins.argmax_margin(scores)  # measured as fast as the kernel below 2**20 scores, and no compile
    amax = np.empty(len(scores), dtype=np.int64)
    margin = np.empty(len(scores), dtype=np.float64)
    _argmax_margin(scores, amax, margin)
    return amax, margin


@njit(cache=True, nogil=True)
def _argmax_margin(scores, amax, margin):  # pragma: no cover - compiled
    n, c = scores.shape
    for i in range(n):
        k = row_argmax(scores, i, c)
        best = scores[i, k]
        second = -np.inf
        for j in range(c):
            if j != k and scores[i, j] > second:
                second = scores[i, j]
        amax[i] = k
        margin[i] = best - second


def class_counts(y: np.ndarray, pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, pc, tc (int64 (C,) each) of `pred` against `y` (both int64 of shape (n,), in 0..C-1)."""
    def count(a: np.ndarray) -> np.ndarray:
        return np.bincount(a, minlength=n_classes).astype(np.int64, copy=False)

    return count(y[pred == y]), count(pred), count(y)


def row_extremes(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row and member, the largest and smallest probability of X (n, M, C): float32 (n, M) each."""
    hi = np.empty(X.shape[:2], dtype=np.float32)
    lo = np.empty(X.shape[:2], dtype=np.float32)
    _warmup.wait("row_extremes")
    _row_extremes(X, hi, lo)  # compiled at every size: numpy's reduction over a short last axis is ~9x slower
    return hi, lo


@njit(cache=True, nogil=True)
def _row_extremes(X, hi, lo):  # pragma: no cover - compiled
    n, M, C = X.shape
    for i in range(n):
        for m in range(M):
            a = X[i, m, 0]
            b = a
            for j in range(1, C):
                v = X[i, m, j]
                if v > a:
                    a = v
                if v < b:
                    b = v
            hi[i, m] = a
            lo[i, m] = b


def add_scaled(B: np.ndarray, X: np.ndarray, m: int, t: float) -> tuple[np.ndarray, np.ndarray]:
    """B += t * X[:, m] in place (in float64, as the sweeps compute it), and return the new argmax and margins."""
    # dtype: a float32 product would round. In blocks of rows: one float64 temporary of the whole
    # (n, C) member would add ~115 MB to a 1M-row fit's peak; element by element the same bits
    for a in range(0, len(B), _ADD_ROWS):
        np.add(B[a : a + _ADD_ROWS], np.multiply(X[a : a + _ADD_ROWS, m], t, dtype=np.float64), out=B[a : a + _ADD_ROWS])
    return argmax_margin(B)


_ADD_ROWS = 1 << 14


def eval_adds(
    B: np.ndarray, amax: np.ndarray, margin: np.ndarray, X: np.ndarray, hi: np.ndarray, t: float,
    y: np.ndarray, tp: np.ndarray, pc: np.ndarray, tc: np.ndarray, code: int,
) -> np.ndarray:
    """The count metric of `B + t * X[:, m]` for every candidate m (Caruana's step), incrementally.

    Rows are the outer loop so that one row of every candidate, contiguous in the (n, M, C)
    layout, is read together: the rows visited are scattered, and this keeps them to one
    stream of cache lines instead of M.

    Args:
        B: current scores (n, C) float64; amax, margin: its argmax and margins.
        X: members (n, M, C) float32; hi: their row maxima (n, M). t: the step (>= 0).
        y, tp, pc, tc: labels and the current counts.

    Returns:
        float64 (M,) score per candidate.
    """
    M = X.shape[1]
    tp2, pc2 = np.tile(tp, (M, 1)), np.tile(pc, (M, 1))  # (M, C): each candidate's counts, updated in place
    out = np.empty(M, dtype=np.float64)
    _warmup.wait("eval_adds")
    _eval_adds(B, amax, margin, X, hi, float(t), y, tp2, pc2, tc, code, out)
    return out


@njit(cache=True, nogil=True)
def _eval_adds(B, amax, margin, X, hi, t, y, tp2, pc2, tc, code, out):  # pragma: no cover - compiled
    n, M, C = X.shape
    for i in range(n):
        if margin[i] > t:
            continue  # adding at most t to one score cannot overturn this row
        a = amax[i]
        yi = y[i]
        for m in range(M):
            # another class gains on a by at most t * (max_c P[c] - P[a])
            if margin[i] > t * (hi[i, m] - X[i, m, a]):
                continue
            k = 0
            best = B[i, 0] + t * X[i, m, 0]
            for j in range(1, C):
                v = B[i, j] + t * X[i, m, j]
                if v > best:
                    best = v
                    k = j
            if k != a:
                pc2[m, a] -= 1
                pc2[m, k] += 1
                if a == yi:
                    tp2[m, a] -= 1
                elif k == yi:
                    tp2[m, k] += 1
    for m in range(M):
        out[m] = count_compiled(tp2[m], pc2[m], tc, code)


def line_search(
    B: np.ndarray, amax: np.ndarray, margin: np.ndarray, X: np.ndarray, hi: np.ndarray, lo: np.ndarray, m: int,
    t_lo: float, t_hi: float, y: np.ndarray, tp: np.ndarray, pc: np.ndarray, tc: np.ndarray, code: int,
) -> tuple[float, float]:
    """Exact best step t in [t_lo, t_hi] for `B + t * X[:, m]`, by sweeping the argmax switch points.

    Args:
        B: current scores (n, C) float64; amax, margin: its argmax and margins.
        X: members (n, M, C) float32; hi, lo: their row extremes (n, M); m: the member moved.
            (Whole arrays and an index rather than views: one compiled signature serves all calls.)
        t_lo, t_hi: the interval (t_lo <= 0 <= t_hi).
        y, tp, pc, tc: labels and the current counts.

    Returns:
        (t, f1): the midpoint of the best constant piece and its score; t = 0 when no piece
        beats the current blend.
    """
    ev = np.empty((_events_cap(len(B)), 5), dtype=np.float64)
    _warmup.wait("line_search")
    ne = _line_events(B, amax, margin, X, hi, lo, m, t_lo, t_hi, ev)
    if ne > len(ev):  # more switches than the buffer holds: once more, into a buffer of the right size
        ev = np.empty((ne, 5), dtype=np.float64)
        _line_events(B, amax, margin, X, hi, lo, m, t_lo, t_hi, ev)
    ev = ev[:ne]  # (E, 5) float64, integers exact
    ev_d = np.ascontiguousarray(ev[:, 0])
    ev_s, ev_r, ev_from, ev_to = (ev[:, k].astype(np.int64) for k in range(1, 5))
    best_f = float(count_metric(tp, pc, tc, code))
    best_t = 0.0
    for sign in (1, -1):
        sel = np.flatnonzero(ev_s == sign)
        idx = sel[np.argsort(ev_d[sel])]
        # a piece that reaches w_j = 0 (the end of the negative sweep) is taken whole, so a member
        # can leave the blend entirely
        best_t, best_f = _sweep(
            idx, ev_d, ev_from, ev_to, ev_r, t_hi if sign > 0 else -t_lo, float(sign), sign < 0,
            y, tp.copy(), pc.copy(), tc, code, best_t, best_f,
        )
    return best_t, best_f


@njit(cache=True, nogil=True)
def _line_events(B, amax, margin, X, hi, lo, m, t_lo, t_hi, ev):  # pragma: no cover - compiled
    # every (distance, direction, row, from, to) where a row's argmax switches along +-X[:, m], one
    # float64 row each of ev (the integers are exact), as many as fit; returns how many there are
    n, C = B.shape
    reach = max(-t_lo, t_hi)
    cap = ev.shape[0]
    ne = 0
    for i in range(n):
        if margin[i] > reach:
            continue
        a0 = amax[i]
        for sign in (1, -1):
            limit = t_hi if sign > 0 else -t_lo
            # along +P another class gains on a by at most t (max P - P[a]); along -P, t (P[a] - min P)
            room = hi[i, m] - X[i, m, a0] if sign > 0 else X[i, m, a0] - lo[i, m]
            if margin[i] > limit * room:
                continue
            a = a0
            cur = 0.0
            while True:
                best_d = np.inf
                nxt = -1
                for c in range(C):
                    if c == a:
                        continue
                    slope = sign * (X[i, m, c] - X[i, m, a])  # how fast c gains on a
                    if slope <= 0.0:
                        continue
                    d = max((B[i, a] - B[i, c]) / slope, cur)
                    # on a tie the steeper line is the one that stays on top afterwards
                    if d < best_d or (d == best_d and sign * X[i, m, c] > sign * X[i, m, nxt]):
                        best_d = d
                        nxt = c
                if nxt < 0 or best_d > limit:
                    break
                if ne < cap:
                    ev[ne, 0] = best_d  # distance from t = 0 along the event's direction
                    ev[ne, 1] = sign  # direction: +1 or -1
                    ev[ne, 2] = i
                    ev[ne, 3] = a
                    ev[ne, 4] = nxt
                ne += 1
                a = nxt  # slopes only increase along the envelope: at most C - 1 switches
                cur = best_d
    return ne


@njit(cache=True, nogil=True)
def _sweep(idx, d, frm, to, rows, end, scale, end_last, y, tp, pc, tc, code, best_t, best_f):  # pragma: no cover - compiled
    # Visit the switch events in the order `idx` (sorted by `d`, the distance along the sweep): each
    # moves row rows[e] from class frm[e] to to[e]. A piece (between two distinct distances, the last
    # one up to `end`) is scored once all its switches are counted, and its middle (its end with
    # `end_last`, for the last piece) scaled by `scale` becomes the best t when it beats best_f.
    # The sort is numpy's, outside: numba's argsort alone cost ~4 s of compile per kernel.
    tp2 = tp  # copies, made by the callers (numpy): each compiled allocation costs its own compile
    pc2 = pc
    for q in range(idx.shape[0]):
        e = idx[q]
        a = frm[e]
        k = to[e]
        if a != k:
            pc2[a] -= 1
            pc2[k] += 1
            yi = y[rows[e]]
            if a == yi:
                tp2[a] -= 1
            elif k == yi:
                tp2[k] += 1
        here = d[e]
        last = q + 1 == idx.shape[0]
        there = end if last else d[idx[q + 1]]
        if there == here:
            continue  # simultaneous switches: score the piece only after all of them
        f = count_compiled(tp2, pc2, tc, code)
        if f > best_f + 1e-12:
            best_f = f
            best_t = scale * (there if (last and end_last) else 0.5 * (here + there))
    return best_t, best_f


def bias_search(
    L: np.ndarray, amax: np.ndarray, c: int, t_lo: float, t_hi: float,
    y: np.ndarray, tp: np.ndarray, pc: np.ndarray, tc: np.ndarray, code: int,
) -> tuple[float, float]:
    """Exact best shift t in [t_lo, t_hi] of class c's score column (a per-class bias), by sweep.

    Row i predicts c once `L[i, c] + t` beats its best other class, so each row switches at most
    once, at `t_i = max_{k != c} L[i, k] - L[i, c]`; the switch points are sorted and swept.

    Args:
        L: current scores (n, C) float64 (log-probabilities plus the current bias).
        amax: argmax of L. c: the class. y, tp, pc, tc: labels and counts.

    Returns:
        (t, f1) as `line_search`.
    """
    ev_t = np.empty(len(L), dtype=np.float64)
    ev_r = np.empty(len(L), dtype=np.int64)
    ev_o = np.empty(len(L), dtype=np.int64)
    _warmup.wait("bias_search")
    ne = _bias_events(L, c, t_lo, t_hi, ev_t, ev_r, ev_o)
    ev_t, ev_r, ev_o = ev_t[:ne], ev_r[:ne], ev_o[:ne]
    best_f = float(count_metric(tp, pc, tc, code))
    best_t = 0.0
    order = np.argsort(ev_t)
    ts = ev_t[order]
    frm = amax[ev_r]
    for sign in (1.0, -1.0):
        # a row switching exactly at 0 (a tie) can go either way, so it is in both sweeps; the
        # sweep skips it where it is already on that side
        if sign > 0:
            idx = order[np.searchsorted(ts, 0.0, side="left"):]
            end, to = t_hi, np.full(len(ev_r), c, dtype=np.int64)
        else:
            idx = np.ascontiguousarray(order[:np.searchsorted(ts, 0.0, side="right")][::-1])
            end, to = t_lo, ev_o
        best_t, best_f = _sweep(idx, ev_t, frm, to, ev_r, end, 1.0, False, y, tp.copy(), pc.copy(), tc, code, best_t, best_f)
    return best_t, best_f


@njit(cache=True, nogil=True)
def _bias_events(L, c, t_lo, t_hi, ev_t, ev_r, ev_o):  # pragma: no cover - compiled
    # each row's switch point t_i, its row and the other class it predicts when it is not c, into
    # the first entries of ev_t, ev_r, ev_o (n,) each; returns how many
    n, C = L.shape
    ne = 0
    for i in range(n):
        k = -1
        best = -np.inf
        for j in range(C):
            if j != c and L[i, j] > best:
                best = L[i, j]
                k = j
        s = best - L[i, c]
        if s < t_lo or s > t_hi:
            continue  # the row keeps its current side over the whole interval
        ev_t[ne] = s
        ev_r[ne] = i
        ev_o[ne] = k
        ne += 1
    return ne


def warm() -> Iterator[str]:
    """Compile (or load from numba's cache) the kernels a fit calls on tiny inputs of its types, in the
    order a fit first calls them, yielding each public name once it is ready (`ensemble._warmup`)."""
    rng = np.random.default_rng(0)
    n, M, C = 8, 2, 3
    X = rng.dirichlet(np.ones(C), (n, M)).astype(np.float32)  # (n, M, C), as the fits stack members
    y = np.arange(n, dtype=np.int64) % C
    B = np.einsum("nmc,m->nc", X, np.ones(M) / M, dtype=np.float64)
    amax, margin = _twins.argmax_margin(B)
    tp, pc, tc = class_counts(y, amax, C)
    code = _kernels.MACRO_F1
    hi, lo = row_extremes(X)
    yield "row_extremes"
    eval_adds(B, amax, margin, X, hi, 1.0, y, tp, pc, tc, code)
    yield "eval_adds"
    w = np.full(M, 0.5)
    line_search(B, amax, margin, X, hi, lo, 0, -w[0], 0.1 * w.sum(), y, tp, pc, tc, code)
    yield "line_search"
    bias_search(np.log(B), amax, 0, -1.0, 1.0, y, tp, pc, tc, code)
    yield "bias_search"
    # not the argmax and margins: compiled only from 2**20 scores, where ~0.3 s of compile is small
