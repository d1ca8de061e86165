"""Searches for any metric: the weights, greedy selection and calibration of metrics without count kernels.

Metrics defined by per-class counts (macro-F1, accuracy, ...) have exact compiled searches
(`weighted`, `greedy`, `bias`). Everything else goes through here:

- Argmax metrics without counts (QWK): Caruana's greedy selection scored by the metric itself, and a
  per-class log-probability bias found by a grid line search per class.
- Probability metrics (log loss, ROC-AUC, a competition's metric file): *search with a smooth
  surrogate, decide with the metric*. The surrogate is the log loss (multi-label: the mean binary
  cross-entropy over the classes), whose linear-pool weights need only each unit's probability of
  what happened (multiclass: each row's true class, an (n, U) matrix, so an L-BFGS step costs O(nU);
  multi-label: p or 1 - p of each (row, class), an (nC, U) matrix); the metric
  then chooses among a few surrogate-optimal candidates (linear and log pooling, the uniform
  average) and picks the best Caruana round. A metric that costs ~10 ms a call is called tens of
  times per fit, not thousands.
- Calibration (`--calibrate`): a temperature on the blended log-probabilities fitted on the metric by
  a bounded 1-D search, and optionally a per-class bias fitted on the surrogate and kept only when the
  metric agrees that it helps.

Every function maximises `metric.oriented(score)`, so a lower-is-better metric is never maximised.
Where the math differs by task (log pool, surrogate, calibration) it goes through the task's hooks
(`ensemble.blend.tasks`); `task` is the tables' task.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ensemble.blend.tasks import TASK_MATH, softmax
from ensemble.metrics.base import Metric
from ensemble.task import MULTICLASS

EPS = 1e-12  # floor of a probability before its log
T_BOUNDS = (0.05, 20.0)  # temperatures searched
BIAS_GRID = np.linspace(-3.0, 3.0, 25)  # per-class offsets tried by the argmax bias search
BIAS_SWEEPS = 3
ROWS_PER_BLOCK = 8192  # rows of the surrogate path's (rows, U) work at a time: it stays in cache
GREEDY_CANDIDATE_ROUNDS = 30  # Caruana rounds of `weighted`'s greedy candidate (its linear-pool optimum is exact)


def objective(metric: Metric, y: np.ndarray, index: np.ndarray | None) -> Callable[[np.ndarray], float]:
    """probs (n, C) -> the metric turned higher-is-better, on these labelled rows."""
    return lambda probs: float(metric.oriented(metric.score(y, probs.astype(np.float32, copy=False), index)))


def linear(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of the units' probabilities, float64 (n, C)."""
    return np.einsum("nuc,u->nc", X, w / w.sum(), dtype=np.float64)


def log_pool(X: np.ndarray, w: np.ndarray, logX: np.ndarray | None = None, task: str = MULTICLASS) -> np.ndarray:
    """The task's activation of the weighted mean of log scores (geometric pooling), float64 (n, C).

    `logX`: the units' log scores (`TaskMath.scores` of X), when the caller has them.
    """
    tm = TASK_MATH.get(task)
    logX = tm.scores(X) if logX is None else logX
    return tm.activate(np.einsum("nuc,u->nc", logX, w / w.sum()))


def caruana(score: Callable[[np.ndarray], float], X: np.ndarray, rounds: int) -> np.ndarray:
    """Greedy selection with replacement by `score` (higher better); the best round's counts (U,)."""
    n, U, C = X.shape
    Xu = np.ascontiguousarray(X.transpose(1, 0, 2))  # (U, n, C): each candidate contiguous
    B = np.zeros((n, C))
    counts = np.zeros(U, dtype=np.int64)
    best, best_counts = -np.inf, counts.copy()
    for k in range(1, max(1, rounds) + 1):
        cand = [score((B + Xu[j]) / k) for j in range(U)]
        j = int(np.argmax(cand))  # ties: the first member
        B += Xu[j]
        counts[j] += 1
        if cand[j] > best:
            best, best_counts = cand[j], counts.copy()
    return best_counts


def surrogate_path(X: np.ndarray, y: np.ndarray, rounds: int, task: str = MULTICLASS) -> list[int]:
    """Caruana's picks by log loss, one per round, in O(nU) per round (O(nCU) multi-label).

    Round k picks the j minimising the mean of -log((b + G_j) / k); log k is common to every j, so
    the sums of -log(b + G_j) decide, taken in blocks of rows that stay in cache, in place.
    """
    G = TASK_MATH.get(task).outcome(X, y)  # (rows, U): each unit's probability of what happened
    n, U = G.shape
    b = np.zeros(n)
    buf = np.empty((min(n, ROWS_PER_BLOCK), U))
    picks = []
    for k in range(1, max(1, rounds) + 1):
        loss = np.zeros(U)
        for a in range(0, n, ROWS_PER_BLOCK):
            S = buf[: min(ROWS_PER_BLOCK, n - a)]
            np.add(b[a : a + ROWS_PER_BLOCK, None], G[a : a + ROWS_PER_BLOCK], out=S)
            np.log(np.maximum(S, k * EPS, out=S), out=S)  # the floor EPS of (b + G_j) / k
            loss -= S.sum(axis=0)
        j = int(np.argmin(loss))  # ties: the first unit
        b += G[:, j]
        picks.append(j)
    return picks


def checkpoints(rounds: int) -> set[int]:
    """The rounds whose ensembles the metric scores: every early one, then geometrically spaced (~20 in all).

    Late rounds change the ensemble by 1/k each; scoring every one would call a slow metric file
    `rounds` times per fit for differences below its noise.
    """
    marks = {int(round(1.3**i)) for i in range(40)} | {rounds}
    return {k for k in marks if 1 <= k <= rounds}


def greedy(
    X: np.ndarray, y: np.ndarray, metric: Metric, rounds: int, index: np.ndarray | None, task: str = MULTICLASS
) -> np.ndarray:
    """Caruana weights (U,) for a metric without count kernels (or a task they do not serve)."""
    score = objective(metric, y, index)
    if metric.argmax_only:
        counts = caruana(score, X, rounds)
    else:  # search by the surrogate, keep the round the metric likes best among a few checkpoints
        picks = surrogate_path(X, y, rounds, task)
        marks = checkpoints(len(picks))
        B = np.zeros(X.shape[::2])
        scores = []
        for k, j in enumerate(picks, 1):
            B += X[:, j]
            if k in marks:
                scores.append((score(B / k), -k))  # ties: the earlier (simpler) round
        best_k = -max(scores)[1]
        counts = np.bincount(picks[:best_k], minlength=X.shape[1])
    return counts / counts.sum()


def surrogate_weights(
    X: np.ndarray, y: np.ndarray, pool: str, logX: np.ndarray | None = None, task: str = MULTICLASS
) -> np.ndarray:
    """Weights (U,) minimising the surrogate log loss of the pooled blend (L-BFGS on softmax parameters).

    `logX`: float64 log scores of X (`TaskMath.scores`), when the caller has them (the log pool needs them).
    """
    from scipy.optimize import minimize

    n, U, C = X.shape
    if U == 1:
        return np.ones(1)
    tm = TASK_MATH.get(task)
    if pool == "linear":
        G = tm.outcome(X, y)  # (rows, U)

        def f(a: np.ndarray) -> tuple[float, np.ndarray]:
            w = _softmax1(a)
            p = np.maximum(G @ w, EPS)
            gw = -(G / p[:, None]).mean(axis=0)  # d loss / d w
            return float(-np.log(p).mean()), w * (gw - gw @ w)  # chain rule through the softmax
    else:
        # (U, n*C) so that the pooled log scores and their gradient are two matrix-vector products (BLAS)
        logX = tm.scores(X) if logX is None else logX
        Lr = logX.transpose(1, 0, 2).reshape(U, n * C)
        T = tm.targets(y, C)

        def f(a: np.ndarray) -> tuple[float, np.ndarray]:
            w = _softmax1(a)
            loss, dz = tm.loss((w @ Lr).reshape(n, C), T)
            gw = Lr @ dz.ravel()
            return loss, w * (gw - gw @ w)

    res = minimize(f, np.zeros(U), jac=True, method="L-BFGS-B", options={"maxiter": 200})
    return _softmax1(res.x)


def weights(
    X: np.ndarray, y: np.ndarray, metric: Metric, rounds: int, index: np.ndarray | None, task: str = MULTICLASS
) -> tuple[np.ndarray, str]:
    """(weights (U,), pool) for a metric without count kernels: the metric decides among surrogate fits."""
    if metric.argmax_only:
        return greedy(X, y, metric, rounds, index, task), "linear"
    score = objective(metric, y, index)
    U = X.shape[1]
    logX = TASK_MATH.get(task).scores(X)  # once, for the log pool's fit and its score
    cands = [(surrogate_weights(X, y, "linear", task=task), "linear"),
             (surrogate_weights(X, y, "log", logX, task), "log"), (np.ones(U) / U, "linear"),
             (greedy(X, y, metric, min(rounds, GREEDY_CANDIDATE_ROUNDS), index, task), "linear")]
    scored = [score(log_pool(X, w, logX, task) if pool == "log" else linear(X, w)) for w, pool in cands]
    return cands[int(np.argmax(scored))]


def _softmax1(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max())
    return e / e.sum()


def calibrate(
    probs: np.ndarray, y: np.ndarray, metric: Metric, index: np.ndarray | None, *, with_bias: bool,
    task: str = MULTICLASS,
) -> tuple[float, np.ndarray | None]:
    """A temperature (and per-class bias) on the log scores of `probs` (log-probabilities, or logits)
    that improves the metric; (1.0, None) if none does."""
    from scipy.optimize import minimize, minimize_scalar

    tm = TASK_MATH.get(task)
    score = objective(metric, y, index)
    z = tm.scores(probs)
    base = score(probs)
    res = minimize_scalar(lambda lt: -score(tm.activate(z / np.exp(lt))), bounds=tuple(np.log(T_BOUNDS)),
                          method="bounded", options={"xatol": 1e-2})  # 1% of a temperature: below any metric's noise
    t, best = (float(np.exp(res.x)), -float(res.fun)) if -res.fun > base else (1.0, base)
    if not with_bias:
        return t, None
    C = z.shape[1]
    T = tm.targets(y, C)

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:  # the surrogate: log loss of activate(z / T + b)
        s = z / np.exp(theta[0]) + theta[1:]
        loss, g = tm.loss(s, T)  # g: d loss / d s
        return loss, np.concatenate([[-(g * (s - theta[1:])).sum()], g.sum(axis=0)])

    fit = minimize(f, np.concatenate([[np.log(t)], np.zeros(C)]), jac=True, method="L-BFGS-B")
    t_b, bias = float(np.exp(fit.x[0])), fit.x[1:]
    if tm.centre_bias:  # softmax: a common shift changes nothing
        bias = bias - bias.mean()
    if score(tm.activate(z / t_b + bias)) > best:  # the metric decides whether the bias helps
        return t_b, bias
    return t, None


def bias_grid(probs: np.ndarray, y: np.ndarray, metric: Metric, index: np.ndarray | None) -> np.ndarray:
    """Per-class log-probability bias (C,) for an argmax metric without count kernels (coordinate grid search)."""
    score = objective(metric, y, index)
    L = np.log(np.maximum(probs.astype(np.float64), EPS))
    C = L.shape[1]
    bias = np.zeros(C)
    onehot = np.eye(C)
    best = score(softmax(L))
    for _ in range(BIAS_SWEEPS):
        improved = False
        for c in range(C):
            vals = [score(softmax(L + bias + t * onehot[c])) for t in BIAS_GRID]
            k = int(np.argmax(vals))
            if vals[k] > best and BIAS_GRID[k] != 0.0:
                best, bias = vals[k], bias + BIAS_GRID[k] * onehot[c]
                improved = True
        if not improved:
            break
    return bias - bias.mean()
