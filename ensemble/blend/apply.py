"""`apply_recipe`: replay a recipe's units, weights, bias and thresholds on (new) tables without refitting.

Members are matched by name. A member whose table hash differs from the recipe's is re-blended
with a warning (re-applying a recipe to re-predicted tables is the point), or refused with
`strict=True`; a member the recipe needs and that is not given is always an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ensemble._progress import Progress
from ensemble.blend import methods as M
from ensemble.blend.assemble import BlendResult, assemble, stack_units
from ensemble.blend.core import labels_ref
from ensemble.blend.units import Unit
from ensemble.bootstrap import bootstrap_metric_ci
from ensemble.errors import ConfigError, preview
from ensemble.join import conform_tests, join_labels
from ensemble.labels import Labels
from ensemble.metrics.choice import MetricChoice
from ensemble.recipe import Recipe, read_recipe
from ensemble.tables import PredTable, align, conform_classes

log = logging.getLogger(__name__)


def apply_recipe(
    recipe: str | os.PathLike | dict[str, Any] | Recipe,
    oof_tables: Sequence[PredTable],
    test_tables: Sequence[PredTable] | None = None,
    *,
    labels: Labels | str | os.PathLike | None = None,
    strict: bool = False,
    name: str | None = None,
    n_boot: int | None = None,
    progress: Progress | None = None,
) -> BlendResult:
    """Re-apply a recipe's units, weights and bias to tables, without refitting anything.

    Args:
        recipe: the recipe (`Recipe`, dict, recipe.json, or its blend folder).
        oof_tables: OOF tables holding (at least) the recipe's members, matched by name.
        test_tables: their test tables in the same order, or None.
        labels: when given, the OOF blend is scored again (in-sample score and CI).
        strict: refuse members whose table hash differs from the recipe's (default: warn).
        name: the blend's name (default: the recipe's).
        n_boot: bootstrap resamples for the CI.
        progress: told about the bootstrap.

    Raises:
        ConfigError: the recipe does not validate, a member it needs is missing, or (strict) a hash differs.
        ClassMismatchError / AlignmentError: the tables disagree with each other or the recipe.
    """
    r = read_recipe(recipe)
    classes = list(r.classes)
    by_name = {t.name: i for i, t in enumerate(oof_tables)}
    kept = [(u, w) for u, w in zip(r.units, r.unit_weights) if w > 0]  # a unit of weight 0 needs no table
    needed = list(dict.fromkeys(m for u, _ in kept for m in r.unit_members[u]))
    absent = [m for m in needed if m not in by_name]
    if absent:
        raise ConfigError(f"the recipe needs members {preview(absent)} that were not given; add their prediction folders")
    extra = [t.name for t in oof_tables if t.name not in needed]
    if extra:
        log.warning("ignoring %s: the recipe does not use them", preview(extra))
    members = conform_classes(align([oof_tables[by_name[m]] for m in needed]), classes)
    _check_task(r, members)
    tests = None if test_tables is None else conform_tests([test_tables[by_name[m]] for m in needed], classes)
    _check_hashes(r, members, tests, strict)
    index = {m: i for i, m in enumerate(needed)}
    units = [Unit(u, tuple(index[m] for m in r.unit_members[u])) for u, _ in kept]
    weights = np.array([w for _, w in kept], dtype=np.float64)
    fitted = M.Fitted(  # as fitted: no renormalising
        np.arange(len(units)), weights, None if r.bias is None else np.asarray(r.bias), r.pool, r.temperature,
        None if r.thresholds is None else np.asarray(r.thresholds, dtype=np.float64), r.task,
    )
    scores, lab = r.scores, None
    if labels is not None:
        joined = join_labels(labels, members, classes=classes)
        members, lab = joined.tables, joined.labels
        o = r.options  # the metric the recipe was scored in, with its recorded solution and groups
        metric = MetricChoice(
            r.scores.metric, r.scores.higher_is_better, o.get("solution"), o.get("solution_id_col"), o.get("group_col")
        ).resolve(lab, classes, task=joined.task)
        probs = M.apply(r.method, fitted, stack_units(units, members))
        ci = bootstrap_metric_ci(metric, joined.y, probs, n_boot=metric.resamples(n_boot, 1000), progress=progress)
        scores = replace(scores, oof=metric.score(joined.y, probs), ci95=(float(ci[0]), float(ci[1])))
    blend_name = name or r.name
    oof, test = assemble(r.method, fitted, units, members, tests, blend_name, meta={"recipe": True})
    return BlendResult(
        name=blend_name, method=r.method, classes=classes, members=members, test_members=tests, units=units,
        fitted=fitted, oof=oof, test=test, scores=scores, member_scores=list(r.member_scores),
        options={**r.options, "reapplied": True}, folds_source=r.folds_source,
        labels=labels_ref(lab) if lab is not None else r.labels,
    )


def _check_task(r: Recipe, members: list[PredTable]) -> None:
    """Refuse tables of the other task than the recipe's (a sigmoid blend replayed on softmax tables)."""
    other = [t for t in members if t.task != r.task]
    if other:
        raise ConfigError(
            f"the recipe blends {r.task} tables but {other[0].source} is {other[0].task}; "
            "re-apply it to tables of its task, or fit a new blend"
        )


def _check_hashes(r: Recipe, members: list[PredTable], tests: list[PredTable] | None, strict: bool) -> None:
    recorded = {m.name: m for m in r.members}
    changed = []
    for i, t in enumerate(members):
        rec = recorded.get(t.name)
        if rec is None:
            continue
        pairs = [(rec.oof_sha256, t.file_sha256(), "oof")]
        if tests is not None:
            pairs.append((rec.test_sha256, tests[i].file_sha256(), "test"))
        changed += [f"{t.name} ({kind})" for old, new, kind in pairs if old and new and old != new]
    if not changed:
        return
    if strict:
        raise ConfigError(
            f"tables of {preview(changed)} differ from the ones the recipe was fitted on (SHA-256); "
            "re-fit the blend, or re-apply without --strict to use the new tables"
        )
    log.warning("tables of %s differ from the ones the recipe was fitted on; re-applying its weights anyway", preview(changed))
