"""What blending math differs by task: one `TaskMath` per task, looked up in `TASK_MATH`.

Every method, pool, surrogate and calibration is written once against these hooks, so no fit
branches on the task:

- `multiclass`: a row is a distribution (softmax). Log scores are log-probabilities (defined up to
  a per-row shift), pooled log scores go back through a row softmax, a vote is over each member's
  argmax, rank averages are renormalised to sum to 1, the surrogate loss is the cross-entropy of the
  true class, and a per-class bias is centred (a common shift changes nothing).
- `multilabel`: each class is its own sigmoid. Log scores are logits log p - log(1 - p) (so
  geometric pooling pools p and 1 - p per class), pooled logits go back through the sigmoid, a
  vote is per class (the weighted share of members with p > 0.5, see `vote_multilabel`), rank
  averages stay per class (no row renormalisation), the surrogate loss is the mean binary
  cross-entropy over the classes, and a bias is not centred (each class has its own scale).
  The argmax count kernels (exact weighted / greedy / bias searches) do not apply: fits go through
  `ensemble.blend.search`, scored by the metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ensemble._registry import Registry
from ensemble.task import MULTICLASS, MULTILABEL, sigmoid

EPS = 1e-12  # floor of a probability (and of 1 - p) before its log

# hard vote: how far a tie-broken winner is lifted above the vote shares, so the table's decision is
# the tie-broken one (vote shares alone can tie)
HARD_LIFT = 1e-4


@dataclass(frozen=True)
class TaskMath:
    """The hooks of one task (see the module docstring).

    Attributes:
        scores: probabilities (..., C) -> float64 log scores (log p, or logits).
        activate: log scores (n, C) -> float64 probabilities (row softmax, or sigmoid).
        vote: (X (n, U, C), weights (U,)) -> float32 (n, C): the `hard` method.
        finish_rank: averaged ranks (n, C) in (0, 1] -> the `rank` method's float32 output.
        targets: labels -> float64 (n, C) targets (one-hot, or the indicator matrix).
        outcome: (X (n, U, C), labels) -> float64 (rows, U): each unit's probability of what happened
            (the true class per row; per (row, class) p or 1 - p), whose log is the surrogate loss of a
            linear pool.
        loss: (log scores z (n, C), targets) -> (mean surrogate loss, d loss / d z (n, C)).
        centre_bias: whether a per-class bias is defined up to a common shift (then it is centred).
        count_kernels: whether the compiled argmax count searches apply.
        decision_flag: the CLI option that moves this task's decisions (for error messages).
    """

    scores: Callable[[np.ndarray], np.ndarray]
    activate: Callable[[np.ndarray], np.ndarray]
    vote: Callable[[np.ndarray, np.ndarray], np.ndarray]
    finish_rank: Callable[[np.ndarray], np.ndarray]
    targets: Callable[[np.ndarray, int], np.ndarray]
    outcome: Callable[[np.ndarray, np.ndarray], np.ndarray]
    loss: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    centre_bias: bool
    count_kernels: bool
    decision_flag: str


def log_probs(p: np.ndarray) -> np.ndarray:
    """float64 log-probabilities, floored at EPS."""
    return np.log(np.maximum(np.asarray(p, dtype=np.float64), EPS))


def logits(p: np.ndarray) -> np.ndarray:
    """float64 logits log p - log(1 - p), both floored at EPS (finite for p = 0 and p = 1)."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(np.maximum(p, EPS)) - np.log(np.maximum(1.0 - p, EPS))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row softmax, float64."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def vote_multiclass(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted majority vote of each member's argmax; ties broken by the (weighted) summed probabilities.

    The output rows are the vote shares with the winner lifted by HARD_LIFT, so their argmax is the
    decision (never the lowest tied class index, as sklearn's VotingClassifier would choose).
    """
    n, U, C = X.shape
    votes = np.zeros((n, C))
    rows = np.arange(n)
    top = X.argmax(axis=2)  # (n, U)
    for u in range(U):  # a loop over members, not rows
        np.add.at(votes, (rows, top[:, u]), w[u])
    most = votes.max(axis=1, keepdims=True)
    tied = votes >= most - 1e-9 * w.sum()
    summed = np.einsum("nuc,u->nc", X, w, dtype=np.float64)
    winner = np.where(tied, summed, -np.inf).argmax(axis=1)
    shares = votes / w.sum()
    shares[rows, winner] += HARD_LIFT
    return (shares / (1.0 + HARD_LIFT)).astype(np.float32)


def vote_multilabel(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-class weighted majority vote: the share of members with p > 0.5.

    A class is predicted when more than half the (weighted) members predict it. An exact tie (half
    of them, e.g. 2 of 4) is broken by the weighted mean probability: predicted when it is above
    0.5, written as 0.5 + HARD_LIFT; otherwise written as 0.5 (not predicted: decisions are p > 0.5).
    """
    shares = np.einsum("nuc,u->nc", (X > 0.5).astype(np.float64), w) / w.sum()  # (n, C)
    tied = np.abs(shares - 0.5) <= 1e-9
    mean = np.einsum("nuc,u->nc", X, w, dtype=np.float64) / w.sum()
    out = np.where(tied, np.where(mean > 0.5, 0.5 + HARD_LIFT, 0.5), shares)
    return out.astype(np.float32)


def _renormalise(z: np.ndarray) -> np.ndarray:
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def _onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y), n_classes))
    out[np.arange(len(y)), y] = 1.0
    return out


def _indicators(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.asarray(y, dtype=np.float64)


def _true_class(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return X[np.arange(len(y)), :, y].astype(np.float64)  # (n, U)


def _outcomes(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    n, U, C = X.shape
    G = np.where(np.asarray(y, dtype=bool)[:, None, :], X, 1.0 - X.astype(np.float64))  # (n, U, C)
    return np.ascontiguousarray(G.transpose(0, 2, 1)).reshape(n * C, U)  # one row per (row, class)


def _cross_entropy(z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    se = e.sum(axis=1, keepdims=True)
    lse = np.log(se[:, 0]) + m[:, 0]
    n = len(z)
    return float((lse - (z * T).sum(axis=1)).mean()), (e / se - T) / n


def _binary_cross_entropy(z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
    loss = np.logaddexp(0.0, z) - T * z  # -log sigmoid(z) for a positive, -log(1 - sigmoid(z)) for a negative
    return float(loss.mean()), (sigmoid(z) - T) / z.size


TASK_MATH: Registry[TaskMath] = Registry("task")
TASK_MATH.add(MULTICLASS, TaskMath(
    scores=log_probs, activate=softmax, vote=vote_multiclass, finish_rank=_renormalise, targets=_onehot,
    outcome=_true_class, loss=_cross_entropy, centre_bias=True, count_kernels=True, decision_flag="--tune-bias",
))
TASK_MATH.add(MULTILABEL, TaskMath(
    scores=logits, activate=sigmoid, vote=vote_multilabel, finish_rank=lambda z: z.astype(np.float32),
    targets=_indicators, outcome=_outcomes, loss=_binary_cross_entropy, centre_bias=False, count_kernels=False,
    decision_flag="--tune-thresholds",
))
