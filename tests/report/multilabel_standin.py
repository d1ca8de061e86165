"""A stand-in for `ensemble.metrics.multilabel` (scikit-learn per metric) while that module is being written.

`install()` puts it in `sys.modules` only when the real module cannot be imported, so the report's
tests run against the real registry as soon as it lands.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn import metrics as skm

from ensemble._registry import Registry
from ensemble.metrics.base import Metric


@dataclass(frozen=True)
class _Sk(Metric):
    fn: Callable = None  # type: ignore[assignment]

    def score(self, y, probs, index=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.fn(np.asarray(y), np.asarray(probs, dtype=np.float64)))


def _f1(average):
    return lambda y, p: skm.f1_score(y, p > 0.5, average=average, zero_division=0)


def _bce(y, p):
    return float(np.mean([skm.log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(y.shape[1])]))


def _registry() -> Registry:
    reg: Registry = Registry("metric")
    for name, fn, hib, am in (
        ("macro_f1", _f1("macro"), True, True), ("micro_f1", _f1("micro"), True, True),
        ("samples_f1", _f1("samples"), True, True), ("map", lambda y, p: skm.average_precision_score(y, p), True, False),
        ("roc_auc", lambda y, p: skm.roc_auc_score(y, p), True, False), ("log_loss", _bce, False, False),
    ):
        reg.add(name, _Sk(name, higher_is_better=hib, argmax_only=am, task="multilabel", fn=fn))
    return reg


def use(monkeypatch) -> bool:
    """Put the stand-in in `sys.modules` for one test if the real module is missing; True when it is in use."""
    try:
        importlib.import_module("ensemble.metrics.multilabel")
        return False
    except ImportError:  # missing, or mid-edit in a shared checkout
        mod = types.ModuleType("ensemble.metrics.multilabel")
        mod.MULTILABEL_METRICS = _registry()
        monkeypatch.setitem(sys.modules, "ensemble.metrics.multilabel", mod)
        return True


def bootstrap_takes_sets() -> bool:
    """Whether `ensemble.bootstrap` accepts an indicator matrix y yet (the metrics helper's change)."""
    from ensemble.bootstrap import bootstrap_metric

    y = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    metric = _Sk("log_loss", higher_is_better=False, task="multilabel", fn=_bce)
    try:
        bootstrap_metric(metric, y, np.full((3, 2), 0.5, dtype=np.float32), n_boot=2)
        return True
    except Exception:
        return False
