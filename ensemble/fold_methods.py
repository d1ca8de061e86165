"""The fold splitters (one registry), kept free of numpy and pandas so `ens --help` lists them at once.

A method is a factory `(n_splits, seed) -> scikit-learn splitter` (imported when a split is made)
and what it needs; `ensemble.folds` assigns and checks folds with them. The `multilabel-*` methods
stratify label sets (an indicator matrix) with the `iterative-stratification` package
(`ensemble.multilabel_folds`); the others take one class per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ensemble._registry import Registry


@dataclass(frozen=True)
class FoldMethod:
    """A splitter factory `(n_splits, seed) -> sklearn splitter` and what it needs.

    `multilabel`: the splitter stratifies label sets (y an indicator matrix (n, C)); one class per
    row is given to it one-hot.
    """

    make: Callable[[int, int], Any]
    needs_labels: bool
    needs_groups: bool
    multilabel: bool = False


def _stratified(n_splits: int, seed: int) -> Any:
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _group(n_splits: int, seed: int) -> Any:
    from sklearn.model_selection import GroupKFold

    return GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _stratified_group(n_splits: int, seed: int) -> Any:
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _kfold(n_splits: int, seed: int) -> Any:
    from sklearn.model_selection import KFold

    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _multilabel(n_splits: int, seed: int) -> Any:
    from ensemble.multilabel_folds import multilabel_kfold

    return multilabel_kfold(n_splits, seed)


def _multilabel_group(n_splits: int, seed: int) -> Any:
    from ensemble.multilabel_folds import MultilabelStratifiedGroupKFold

    return MultilabelStratifiedGroupKFold(n_splits, seed)


FOLD_METHODS: Registry[FoldMethod] = Registry("fold method")
FOLD_METHODS.add("stratified", FoldMethod(_stratified, needs_labels=True, needs_groups=False))
FOLD_METHODS.add("group", FoldMethod(_group, needs_labels=False, needs_groups=True))
FOLD_METHODS.add("stratified-group", FoldMethod(_stratified_group, needs_labels=True, needs_groups=True))
FOLD_METHODS.add("kfold", FoldMethod(_kfold, needs_labels=False, needs_groups=False))
FOLD_METHODS.add("multilabel-stratified", FoldMethod(_multilabel, needs_labels=True, needs_groups=False, multilabel=True))
FOLD_METHODS.add(
    "multilabel-stratified-group", FoldMethod(_multilabel_group, needs_labels=True, needs_groups=True, multilabel=True)
)
