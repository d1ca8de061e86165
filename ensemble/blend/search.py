"""Searches for any metric: the weights, greedy selection and calibration of metrics without count kernels.

Metrics defined by per-class counts (macro-F1, accuracy, ...) have exact compiled searches
(`weighted`, `greedy`, `bias`). Everything else goes through here:

- Argmax metrics without counts (QWK): Caruana's greedy selection scored by the metric itself, and a
  per-class log-probability bias found by a grid line search per class.
- Probability metrics (log loss, ROC-AUC, a competition's metric file): *search with a smooth
  surrogate, decide with the metric*. The surrogate is the log loss, whose linear-pool weights need
  only each row's true-class probability (an (n, U) matrix: an L-BFGS step costs O(nU)); the metric
  then chooses among a few surrogate-optimal candidates (linear and log pooling, the uniform
  average) and picks the best Caruana round. A metric that costs ~10 ms a call is called tens of
  times per fit, not thousands.
- Calibration (`--calibrate`): a temperature on the blended log-probabilities fitted on the metric by
  a bounded 1-D search, and optionally a per-class bias fitted on the surrogate and kept only when the
  metric agrees that it helps.

Every function maximises `metric.oriented(score)`, so a lower-is-better metric is never maximised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ensemble.metrics.base import Metric

EPS = 1e-12  # floor of a probability before its log
T_BOUNDS = (0.05, 20.0)  # temperatures searched
BIAS_GRID = np.linspace(-3.0, 3.0, 25)  # per-class offsets tried by the argmax bias search
BIAS_SWEEPS = 3
GREEDY_CANDIDATE_ROUNDS = 30  # Caruana rounds of `weighted`'s greedy candidate (its linear-pool optimum is exact)


def objective(metric: Metric, y: np.ndarray, index: np.ndarray | None) -> Callable[[np.ndarray], float]:
    """probs (n, C) -> the metric turned higher-is-better, on these labelled rows."""
    return lambda probs: float(metric.oriented(metric.score(y, probs.astype(np.float32, copy=False), index)))


def linear(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of the units' probabilities, float64 (n, C)."""
    return np.einsum("nuc,u->nc", X, w / w.sum(), dtype=np.float64)


def log_pool(X: np.ndarray, w: np.ndarray, logX: np.ndarray | None = None) -> np.ndarray:
    """softmax of the weighted mean of log-probabilities (geometric pooling), float64 (n, C)."""
    logX = np.log(np.maximum(X, EPS), dtype=np.float64) if logX is None else logX
    return softmax(np.einsum("nuc,u->nc", logX, w / w.sum()))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


POOLS = {"linear": linear, "log": log_pool}


def caruana(score: Callable[[np.ndarray], float], X: np.ndarray, rounds: int) -> np.ndarray:
    """Greedy selection with replacement by `score` (higher better); the best round's counts (U,)."""
    n, U, C = X.shape
    B = np.zeros((n, C))
    counts = np.zeros(U, dtype=np.int64)
    best, best_counts = -np.inf, counts.copy()
    for k in range(1, max(1, rounds) + 1):
        cand = [score((B + X[:, j]) / k) for j in range(U)]
        j = int(np.argmax(cand))  # ties: the first member
        B += X[:, j]
        counts[j] += 1
        if cand[j] > best:
            best, best_counts = cand[j], counts.copy()
    return best_counts


def surrogate_path(X: np.ndarray, y: np.ndarray, rounds: int) -> list[int]:
    """Caruana's picks by log loss, one per round, in O(nU) per round."""
    n, U, _ = X.shape
    G = X[np.arange(n), :, y].astype(np.float64)  # (n, U): each unit's probability of the true class
    b = np.zeros(n)
    picks = []
    for k in range(1, max(1, rounds) + 1):
        j = int(np.argmin(-np.log(np.maximum((b[:, None] + G) / k, EPS)).mean(axis=0)))
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


def greedy(X: np.ndarray, y: np.ndarray, metric: Metric, rounds: int, index: np.ndarray | None) -> np.ndarray:
    """Caruana weights (U,) for a metric without count kernels."""
    score = objective(metric, y, index)
    if metric.argmax_only:
        counts = caruana(score, X, rounds)
    else:  # search by the surrogate, keep the round the metric likes best among a few checkpoints
        picks = surrogate_path(X, y, rounds)
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


def surrogate_weights(X: np.ndarray, y: np.ndarray, pool: str, logX: np.ndarray | None = None) -> np.ndarray:
    """Weights (U,) minimising the log loss of the pooled blend (L-BFGS on softmax parameters).

    `logX`: float64 log-probabilities of X, when the caller has them (the log pool needs them).
    """
    from scipy.optimize import minimize

    n, U, _ = X.shape
    if U == 1:
        return np.ones(1)
    if pool == "linear":
        G = X[np.arange(n), :, y].astype(np.float64)  # (n, U)

        def f(a: np.ndarray) -> tuple[float, np.ndarray]:
            w = _softmax1(a)
            p = np.maximum(G @ w, EPS)
            gw = -(G / p[:, None]).mean(axis=0)  # d loss / d w
            return float(-np.log(p).mean()), w * (gw - gw @ w)  # chain rule through the softmax
    else:
        C = X.shape[2]
        # (U, n*C) so that the pooled logits and their gradient are two matrix-vector products (BLAS)
        logX = np.log(np.maximum(X, EPS), dtype=np.float64) if logX is None else logX
        Lr = logX.transpose(1, 0, 2).reshape(U, n * C)
        ly = Lr.reshape(U, n, C)[:, np.arange(n), y].sum(axis=1)  # (U,): summed true-class log-probabilities

        def f(a: np.ndarray) -> tuple[float, np.ndarray]:
            w = _softmax1(a)
            z = (w @ Lr).reshape(n, C)
            m = z.max(axis=1, keepdims=True)
            e = np.exp(z - m)
            se = e.sum(axis=1)
            lse = np.log(se) + m[:, 0]
            q = e / se[:, None]  # (n, C) pooled probabilities
            gw = (Lr @ q.ravel() - ly) / n
            return float(lse.mean() - (w @ ly) / n), w * (gw - gw @ w)

    res = minimize(f, np.zeros(U), jac=True, method="L-BFGS-B", options={"maxiter": 200})
    return _softmax1(res.x)


def weights(X: np.ndarray, y: np.ndarray, metric: Metric, rounds: int, index: np.ndarray | None) -> tuple[np.ndarray, str]:
    """(weights (U,), pool) for a metric without count kernels: the metric decides among surrogate fits."""
    if metric.argmax_only:
        return greedy(X, y, metric, rounds, index), "linear"
    score = objective(metric, y, index)
    U = X.shape[1]
    logX = np.log(np.maximum(X, EPS), dtype=np.float64)  # once, for the log pool's fit and its score
    cands = [(surrogate_weights(X, y, "linear"), "linear"), (surrogate_weights(X, y, "log", logX), "log"),
             (np.ones(U) / U, "linear"), (greedy(X, y, metric, min(rounds, GREEDY_CANDIDATE_ROUNDS), index), "linear")]
    scored = [score(log_pool(X, w, logX) if pool == "log" else linear(X, w)) for w, pool in cands]
    return cands[int(np.argmax(scored))]


def _softmax1(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max())
    return e / e.sum()


def calibrate(
    probs: np.ndarray, y: np.ndarray, metric: Metric, index: np.ndarray | None, *, with_bias: bool
) -> tuple[float, np.ndarray | None]:
    """A temperature (and per-class bias) on log `probs` that improves the metric; (1.0, None) if none does."""
    from scipy.optimize import minimize, minimize_scalar

    score = objective(metric, y, index)
    z = np.log(np.maximum(probs.astype(np.float64), EPS))
    base = score(probs)
    res = minimize_scalar(lambda lt: -score(softmax(z / np.exp(lt))), bounds=tuple(np.log(T_BOUNDS)), method="bounded",
                          options={"xatol": 1e-2})  # 1% of a temperature: below any metric's noise
    t, best = (float(np.exp(res.x)), -float(res.fun)) if -res.fun > base else (1.0, base)
    if not with_bias:
        return t, None
    n, C = z.shape
    onehot = np.zeros((n, C))
    onehot[np.arange(n), y] = 1.0

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:  # the surrogate: log loss of softmax(z / T + b)
        s = z / np.exp(theta[0]) + theta[1:]
        q = softmax(s)
        g = (q - onehot) / n  # d loss / d s
        return float(-np.log(np.maximum(q[np.arange(n), y], EPS)).mean()), np.concatenate(
            [[-(g * (s - theta[1:])).sum()], g.sum(axis=0)]
        )

    fit = minimize(f, np.concatenate([[np.log(t)], np.zeros(C)]), jac=True, method="L-BFGS-B")
    t_b, bias = float(np.exp(fit.x[0])), fit.x[1:] - fit.x[1:].mean()
    if score(softmax(z / t_b + bias)) > best:  # the metric decides whether the bias helps
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
