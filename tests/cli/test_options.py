"""The CLI spells the built-in metric names without importing the metrics: they must stay the registries' names."""

from __future__ import annotations

from ensemble.cli._options import (
    BUILTIN_METRICS,
    METRIC_HELP,
    MULTILABEL_BUILTIN_METRICS,
)
from ensemble.metrics import METRICS, MULTILABEL_METRICS


def test_builtin_metric_names_are_the_registrys_in_order():
    assert BUILTIN_METRICS == tuple(METRICS.names())


def test_multilabel_metric_names_are_the_registrys_in_order():
    assert MULTILABEL_BUILTIN_METRICS == tuple(MULTILABEL_METRICS.names())


def test_the_metric_help_lists_every_name():
    for name in (*BUILTIN_METRICS, *MULTILABEL_BUILTIN_METRICS):
        assert name in METRIC_HELP
