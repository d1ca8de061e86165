"""Multi-label fold splitters on the `iterative-stratification` package (Sechidis et al.'s iterative
stratification), in scikit-learn's splitter shape (`split(X, y, groups)`).

- `multilabel_kfold`: the package's `MultilabelStratifiedKFold` on the indicator matrix, as is.
- `MultilabelStratifiedGroupKFold`: whole groups (patients, studies) go to one fold. Each group
  becomes one sample of the package's splitter whose labels are the classes any of its rows holds
  (the package stratifies binary indicators), so every class's positive groups spread evenly over
  the folds and no group is ever split.

A single-class indicator matrix is given a complement column ("no positive") so the package, which
needs two columns or more, balances positives and negatives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def multilabel_kfold(n_splits: int, seed: int) -> Any:
    """The package's `MultilabelStratifiedKFold`, shuffled with `seed` (it also breaks ties with it)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    return _Indicators(MultilabelStratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed))


class _Indicators:
    """A splitter wrapper that gives the package an indicator matrix it accepts (2+ columns)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.n_splits = inner.n_splits

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any, y: np.ndarray, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.inner.split(X, indicators(y))


def indicators(y: np.ndarray) -> np.ndarray:
    """uint8 (n, C) as the package needs it: C >= 2 (one class gets its complement column)."""
    y = np.asarray(y, dtype=np.uint8)
    if y.ndim == 2 and y.shape[1] == 1:
        y = np.concatenate([y, 1 - y], axis=1)
    return y


class MultilabelStratifiedGroupKFold:
    """Multi-label stratified folds of whole groups (see the module docstring).

    Args:
        n_splits: number of folds.
        seed: shuffles the groups and breaks the package's ties.
    """

    def __init__(self, n_splits: int, seed: int) -> None:
        self.n_splits = n_splits
        self.seed = seed

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any, y: np.ndarray, groups: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(train, validation) row indices per fold; `y` is (n, C) indicators, `groups` (n,)."""
        names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        group_y = group_indicators(y, inverse, len(names))  # (G, C)
        group_fold = np.full(len(names), -1, dtype=np.int64)
        for k, (_, val) in enumerate(multilabel_kfold(self.n_splits, self.seed).split(np.zeros(len(names)), group_y)):
            group_fold[val] = k
        folds = group_fold[inverse]  # (n,)
        for k in range(self.n_splits):
            yield np.flatnonzero(folds != k), np.flatnonzero(folds == k)


def group_indicators(y: np.ndarray, inverse: np.ndarray, n_groups: int) -> np.ndarray:
    """uint8 (G, C): 1 where any row of the group holds the class."""
    out = np.zeros((n_groups, y.shape[1]), dtype=np.uint8)
    np.maximum.at(out, inverse, np.asarray(y, dtype=np.uint8))
    return out
