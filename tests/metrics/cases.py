"""Shared random cases for the metric tests, and scikit-learn as the oracle of every built-in."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import strategies as st
from sklearn import metrics as skm


@st.composite
def labelled(draw, quantise: bool = False, min_classes: int = 1):
    """Labels and probabilities with classes absent from truth and/or prediction, ties when quantised."""
    c = draw(st.integers(min_classes, 9))
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    used_true = rng.choice(c, size=draw(st.integers(1, c)), replace=False)  # some classes never true
    y = rng.choice(used_true, size=n).astype(np.int64)
    probs = rng.dirichlet(np.full(c, 0.3), size=n)
    if quantise:  # coarse values make exact ties: the first maximum must win, as in np.argmax
        probs = np.round(probs * 2) / 2 + 1e-12
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return y, probs.astype(dtype), c


def ovr_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """sklearn's ROC-AUC per class, averaged over the classes present in y (class 1's for two classes)."""
    c = probs.shape[1]
    if c == 2:
        return skm.roc_auc_score(y == 1, probs[:, 1])
    return float(np.mean([skm.roc_auc_score(y == j, probs[:, j]) for j in np.unique(y)]))


def _f1(average: str, all_labels: bool = False):
    return lambda y, p, c: skm.f1_score(y, p.argmax(1), average=average, labels=np.arange(c) if all_labels else None)


ORACLES = {
    "macro_f1": _f1("macro"),
    "macro_f1_all": _f1("macro", all_labels=True),
    "micro_f1": _f1("micro"),
    "weighted_f1": _f1("weighted"),
    "accuracy": lambda y, p, c: skm.accuracy_score(y, p.argmax(1)),
    "balanced_accuracy": lambda y, p, c: skm.balanced_accuracy_score(y, p.argmax(1)),
    "qwk": lambda y, p, c: skm.cohen_kappa_score(y, p.argmax(1), weights="quadratic", labels=np.arange(c)),
    "log_loss": lambda y, p, c: skm.log_loss(y, p, labels=np.arange(c)),
    "roc_auc": lambda y, p, c: ovr_auc(y, p),
}


def sklearn_score(name: str, y: np.ndarray, probs: np.ndarray) -> float:
    """The scikit-learn value of the built-in `name` (warnings about undefined classes silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(ORACLES[name](y, probs, probs.shape[1]))
