"""Seeded synthetic blending problems: models of varied quality with correlated errors.

`make_problem` is multiclass (softmax rows); `make_multilabel_problem` is multi-label (a sigmoid
per class, labels an indicator matrix).

Used by `benchmarks/bench_blend.py` and the tests. Each model's logits are a class signal of its
own strength, plus noise shared by every model (the hard rows stay hard for all: correlated
errors), plus noise shared within a family, plus its own noise, plus a per-model class bias that
leans towards frequent classes (as models trained on imbalanced data do). The classes are
imbalanced, so macro-F1 rewards blends that do not follow the majority.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Problem:
    """Member probabilities and labels.

    Attributes:
        probs: float32 (n_models, n_samples, n_classes), rows sum to 1 (multi-label: each value in [0, 1]).
        y: int64 labels of shape (n_samples,) (multi-label: uint8 indicator matrix (n_samples, n_classes)).
        folds: int64 fold numbers of shape (n_samples,), stratified (multi-label: random).
        names: model names; families: their seed families.
    """

    probs: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    names: list[str]
    families: list[str]


def make_problem(
    n_models: int = 20,
    n_samples: int = 20_000,
    n_classes: int = 18,
    *,
    n_noise: int = 0,
    n_folds: int = 5,
    seeds_per_family: int = 2,
    seed: int = 0,
) -> Problem:
    """Draw a problem.

    Args:
        n_models: informative models.
        n_samples: rows.
        n_classes: classes, with priors decaying geometrically (most / least frequent ~ 30).
        n_noise: extra members that carry no signal at all (pure noise), for leakage tests.
        n_folds: folds of the stratified fold column.
        seeds_per_family: consecutive informative models share a family (seeds of one config).
        seed: the random seed; the same seed gives the same problem.
    """
    rng = np.random.default_rng(seed)
    prior = 0.82 ** np.arange(n_classes)
    prior /= prior.sum()
    y = rng.choice(n_classes, size=n_samples, p=prior).astype(np.int64)
    onehot = np.eye(n_classes, dtype=np.float64)[y]  # (n, C)
    shared = rng.standard_normal((n_samples, n_classes))  # errors every model shares
    # a confusion structure: each class is mistaken mostly for a few neighbours
    confuse = rng.standard_normal((n_classes, n_classes)) * 0.9
    row_conf = confuse[y]  # (n, C)
    log_prior = np.log(prior)

    probs, names, families = [], [], []
    fam_noise = None
    for m in range(n_models):
        fam = m // seeds_per_family
        if m % seeds_per_family == 0:
            fam_noise = rng.standard_normal((n_samples, n_classes))
        strength = rng.uniform(1.4, 3.8)
        weak = (3.8 - strength) / 2.4  # 0 for the best models, 1 for the worst
        lean = rng.uniform(0.2, 0.6) + weak  # how much the model follows the class prior
        class_off = rng.normal(0.0, 0.35, n_classes)  # miscalibrated per-class offsets
        logits = (
            strength * onehot
            + 1.05 * shared
            + 0.6 * row_conf
            + 0.8 * fam_noise
            + rng.uniform(0.4, 1.0) * rng.standard_normal((n_samples, n_classes))
            + lean * log_prior
            + class_off
        )
        logits *= rng.uniform(0.7, 1.1) * (1.0 + 0.8 * weak)  # weak models are the overconfident ones
        probs.append(_softmax(logits))
        names.append(f"model{m:02d}")
        families.append(f"family{fam:02d}")
    for k in range(n_noise):
        probs.append(_softmax(rng.standard_normal((n_samples, n_classes)) * 1.5))
        names.append(f"noise{k:02d}")
        families.append(f"noise{k:02d}")
    folds = _stratified_folds(y, n_folds, rng)
    return Problem(np.stack(probs).astype(np.float32), y, folds, names, families)


def make_multilabel_problem(
    n_models: int = 20,
    n_samples: int = 20_000,
    n_classes: int = 20,
    *,
    n_noise: int = 0,
    n_folds: int = 5,
    seeds_per_family: int = 2,
    seed: int = 0,
) -> Problem:
    """Draw a multi-label problem: sigmoid members whose 0.5 is the wrong threshold for rare classes.

    Each class is present independently, its rate decaying geometrically from ~35% to ~2% (images
    with several findings). Each model's logit of a class is a signal of its own strength for the
    positives, plus noise shared by every model, within a family and its own, plus the class's log
    prior odds scaled by how much the model leans on it and a miscalibrated offset: rare classes sit
    far below 0.5, so tuned thresholds matter, as they do for BCE-trained heads on rare findings.

    Args:
        n_models: informative models.
        n_samples: rows.
        n_classes: classes.
        n_noise: extra members whose probabilities are random, independent of the labels (pure noise).
        n_folds: folds of the (random) fold column.
        seeds_per_family: consecutive informative models share a family.
        seed: the random seed; the same seed gives the same problem.
    """
    rng = np.random.default_rng(seed)
    rate = 0.35 * (0.02 / 0.35) ** (np.arange(n_classes) / max(n_classes - 1, 1))
    y = (rng.random((n_samples, n_classes)) < rate).astype(np.uint8)
    log_odds = np.log(rate / (1 - rate))
    shared = rng.standard_normal((n_samples, n_classes))
    probs, names, families = [], [], []
    fam_noise = None
    for m in range(n_models):
        if m % seeds_per_family == 0:
            fam_noise = rng.standard_normal((n_samples, n_classes))
        strength = rng.uniform(1.5, 3.5)
        logits = (
            strength * y
            + 0.9 * shared
            + 0.7 * fam_noise
            + rng.uniform(0.4, 1.0) * rng.standard_normal((n_samples, n_classes))
            + rng.uniform(0.6, 1.0) * log_odds
            - strength / 2
            + rng.normal(0.0, 0.4, n_classes)
        )
        probs.append(1.0 / (1.0 + np.exp(-logits * rng.uniform(0.8, 1.2))))
        names.append(f"model{m:02d}")
        families.append(f"family{m // seeds_per_family:02d}")
    for k in range(n_noise):
        probs.append(rng.random((n_samples, n_classes)))
        names.append(f"noise{k:02d}")
        families.append(f"noise{k:02d}")
    folds = rng.permutation(n_samples) % n_folds
    return Problem(np.stack(probs).astype(np.float32), y, folds.astype(np.int64), names, families)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _stratified_folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    folds = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        folds[idx] = np.arange(len(idx)) % k
    return folds
