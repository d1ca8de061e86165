"""The one result shape of a blend, and the one assembler of its output tables and recipe.

`blend` (fit) and `apply_recipe` (replay) both end here: units and a fitted blend become the
blended OOF and test tables (`assemble`), and a `BlendResult` knows its `Recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ensemble.blend import methods as M
from ensemble.blend.units import Unit
from ensemble.recipe import LabelsRef, MemberRef, MemberScore, Recipe, Scores
from ensemble.tables import PredTable, make_table, stacked_probs


@dataclass(eq=False)
class BlendResult:
    """Everything `ens blend` writes and prints.

    Attributes:
        name: the blend's name (the output folder's).
        method: the METHODS key.
        classes: class names in index order.
        members: the OOF tables given, aligned to the labels; test_members: their test tables or None.
        units: what was blended (seed families with `seed_average`, else the members).
        fitted: chosen units, their weights, bias, thresholds, task.
        oof: blended OOF table; test: blended test table (None without test tables).
        scores: in-sample, nested, CI, best single, gain, noise verdict.
        member_scores: per member: name, family, OOF macro-F1, weight in the blend.
        options: the options that made it (as the recipe records them).
        folds_source: where the nested folds came from.
        labels: the labels CSV it was scored on, or None.
    """

    name: str
    method: str
    classes: list[str]
    members: list[PredTable]
    test_members: list[PredTable] | None
    units: list[Unit]
    fitted: M.Fitted
    oof: PredTable
    test: PredTable | None
    scores: Scores
    member_scores: list[MemberScore]
    options: dict[str, Any]
    folds_source: str
    labels: LabelsRef | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def verdict(self) -> str:
        """One honest line: the nested gain over the best single model, and whether it is noise."""
        return self.scores.verdict

    @property
    def recipe(self) -> Recipe:
        """The blend's recipe: what re-applying it needs, its scores and provenance."""
        from ensemble import __version__

        units = [self.units[i] for i in self.fitted.units]
        used = sorted({i for u in units for i in u.members})
        tests = self.test_members
        return Recipe(
            method=self.method, name=self.name, classes=list(self.classes),
            members=[
                MemberRef(
                    self.members[i].name, self.members[i].family, _path(self.members[i]),
                    _path(tests[i]) if tests is not None else None, self.members[i].file_sha256(),
                    tests[i].file_sha256() if tests is not None else None,
                )
                for i in used
            ],
            units=[u.name for u in units],
            unit_members={u.name: [self.members[i].name for i in u.members] for u in units},
            weights=[float(w) for w in self.fitted.weights],
            bias=None if self.fitted.bias is None else [float(b) for b in self.fitted.bias],
            pool=self.fitted.pool, temperature=float(self.fitted.temperature), task=self.fitted.task,
            thresholds=None if self.fitted.thresholds is None else [float(t) for t in self.fitted.thresholds],
            threshold_mode=self.options.get("tune_thresholds") if self.fitted.thresholds is not None else None,
            options=self.options, scores=self.scores, member_scores=list(self.member_scores),
            candidates=[t.name for t in self.members], folds_source=self.folds_source, labels=self.labels,
            n_test=None if self.test is None else len(self.test), tool_version=__version__, created=self.created,
        )


def _path(t: PredTable) -> str | None:
    return str(t.path.resolve()) if t.path is not None else None


def stack_units(units: list[Unit], tables: list[PredTable]) -> np.ndarray:
    """The units' probabilities side by side, float32 of shape (n, U, C).

    When the units are the tables themselves, in order, and the tables were read into one stack
    (`read_tables(..., stack=True)`), that stack is returned: no second copy of every member.
    """
    if [u.members for u in units] == [(i,) for i in range(len(tables))]:
        base = stacked_probs(tables)
        if base is not None:
            return base
    return np.ascontiguousarray(np.stack([u.probs(tables) for u in units], axis=1))


def assemble(
    method: str, fitted: M.Fitted, units: list[Unit], members: list[PredTable], tests: list[PredTable] | None,
    name: str, *, meta: dict[str, Any] | None = None,
) -> tuple[PredTable, PredTable | None]:
    """The blended OOF table and (with test tables) test table of a fitted blend, of its task; with
    thresholds, each class's probabilities are moved so its threshold sits at 0.5 (the sidecar records them)."""
    oof = assemble_kind(method, fitted, units, members, members, name, "oof", meta=meta)
    test = None if tests is None else assemble_kind(method, fitted, units, members, tests, name, "test", meta=meta)
    return oof, test


def assemble_kind(
    method: str, fitted: M.Fitted, units: list[Unit], members: list[PredTable], tables: list[PredTable],
    name: str, kind: str, *, meta: dict[str, Any] | None = None,
) -> PredTable:
    """One blended table of `assemble`: of `tables` (the members' OOF or test tables), recorded as `kind`."""
    meta = {"model": name, "family": name, "method": method, "units": [units[i].name for i in fitted.units], **(meta or {})}
    if fitted.thresholds is not None:
        meta["thresholds"] = [float(t) for t in fitted.thresholds]
    probs = M.apply(method, fitted, stack_units(units, tables))
    return make_table(tables[0].ids, members[0].classes, probs, meta={**meta, "kind": kind}, task=fitted.task)


def member_weights(units: list[Unit], fitted: M.Fitted, n_members: int) -> list[float]:
    """Each member's share of the blend: its unit's weight split evenly over the unit's members."""
    out = [0.0] * n_members
    for u, w in zip(fitted.units, fitted.weights):
        for i in units[u].members:
            out[i] += float(w) / len(units[u].members)
    return out
