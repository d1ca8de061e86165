"""recipe.json, the one typed record of a blend: written by `ens blend`, read by blend, ledger and select.

A recipe says what was blended (members and their table hashes, units, weights, bias, classes,
the tables' task and, for multi-label blends, the tuned decision thresholds),
how well (`Scores`: in-sample, nested, CI, best single, verdict) and on which labels (`LabelsRef`:
path and hash, so `ens select` finds them again). `Recipe.from_dict` validates everything a
hand-edited file can get wrong (counts, signs, finiteness, types, bias length) and names the key:
a recipe that does not validate is refused, never reinterpreted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ensemble._io import read_json_object, sha256_file
from ensemble.errors import ConfigError

_FIX = "re-create it with `ens blend` (or fix the key by hand)"


class _Reader:
    """Typed access to one JSON object of a recipe, with errors naming the recipe and the key."""

    def __init__(self, raw: Any, where: str, prefix: str = "") -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: recipe key {prefix.rstrip('.') or 'root'!r} must be an object; {_FIX}")
        self.raw, self.where, self.prefix = raw, where, prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: recipe key '{self.prefix}{key}' {problem}; {_FIX}")

    def get(self, key: str, kind: type | tuple[type, ...], *, required: bool = True, default: Any = None) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if required:
                raise self.fail(key, "is missing")
            return default
        v = self.raw[key]
        if isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"is {v!r}, not {_kind_name(kind)}")
        if not isinstance(v, kind):
            raise self.fail(key, f"is {v!r}, not {_kind_name(kind)}")
        return v

    def number(self, key: str, *, required: bool = False) -> float | None:
        v = self.get(key, (int, float), required=required)
        if v is not None and not math.isfinite(v):
            raise self.fail(key, f"is {v!r}, not a finite number")
        return None if v is None else float(v)

    def strings(self, key: str, *, required: bool = True) -> list[str] | None:
        v = self.get(key, list, required=required)
        if v is None:
            return None
        if not all(isinstance(s, str) and s for s in v):
            raise self.fail(key, "must be a list of non-empty strings")
        return list(v)

    def numbers(self, key: str, *, length: int, what: str) -> list[float] | None:
        v = self.get(key, list, required=False)
        if v is None:
            return None
        if len(v) != length:
            raise self.fail(key, f"has {len(v)} values for {length} {what}; give one per {what.rstrip('s')}")
        bad = [x for x in v if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)]
        if bad:
            raise self.fail(key, f"holds {bad[0]!r}, not a finite number")
        return [float(x) for x in v]

    def pair(self, key: str) -> tuple[float, float] | None:
        v = self.get(key, list, required=False)
        if v is None:
            return None
        if len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise self.fail(key, f"is {v!r}, not a pair of numbers")
        return float(v[0]), float(v[1])

    def child(self, key: str, *, required: bool = False) -> _Reader | None:
        v = self.get(key, dict, required=required)
        return None if v is None else _Reader(v, self.where, f"{self.prefix}{key}.")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object", bool: "true/false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


@dataclass(frozen=True)
class BestSingle:
    """The best single member, chosen by the metric on the OOF rows (and, nested, on the other folds)."""

    name: str
    oof: float
    nested: float | None = None


@dataclass(frozen=True)
class Scores:
    """How good a blend is, in one metric.

    Attributes:
        metric: the metric's name (a registry key, or `file.py:function`).
        higher_is_better: its direction.
        oof: in-sample OOF score (optimistic when the blend fits anything).
        nested: nested-CV estimate; None when nothing is fitted or nesting was skipped.
        ci95: bootstrap interval of the in-sample score.
        fitted: whether the blend learns from labels.
        best_single: the best single member.
        nested_gain_over_best_single: how much better the nested blend is than the nested best
            single member (positive is better whatever the direction); None without nesting.
        within_noise: whether the paired bootstrap interval of that gain holds 0.
        gain_ci95: that interval.
    """

    metric: str = "macro_f1"
    higher_is_better: bool = True
    oof: float | None = None
    nested: float | None = None
    ci95: tuple[float, float] | None = None
    fitted: bool = True
    best_single: BestSingle | None = None
    nested_gain_over_best_single: float | None = None
    within_noise: bool | None = None
    gain_ci95: tuple[float, float] | None = None

    @property
    def honest(self) -> float | None:
        """Nested when there is one, else in-sample (a method that fits nothing has no optimism)."""
        return self.nested if self.nested is not None else self.oof

    @property
    def label(self) -> str:
        """The metric and its direction, for tables: "log_loss (lower is better)"."""
        return f"{self.metric} ({'higher' if self.higher_is_better else 'lower'} is better)"

    @property
    def verdict(self) -> str:
        """One honest line: the nested gain over the best single model, and whether it is noise."""
        gain = self.nested_gain_over_best_single
        if gain is None:
            return "nested estimate skipped (--no-nested): the in-sample score is optimistic"
        gain = round(gain, 3) + 0.0  # no "-0.000"
        what = f"nested gain over best single model {gain:+.3f} in {self.metric}"
        if self.within_noise:
            return f"{what}, within noise: prefer the simpler blend"
        if gain < 0:
            return f"{what}, worse outside noise: prefer the best single model"
        return f"{what}, outside noise"

    def to_dict(self) -> dict[str, Any]:
        b = self.best_single
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "oof": self.oof,
            "nested": self.nested,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "fitted": self.fitted,
            "best_single": None if b is None else {"name": b.name, "oof": b.oof, "nested": b.nested},
            "nested_gain_over_best_single": self.nested_gain_over_best_single,
            "within_noise": self.within_noise,
            "gain_ci95": list(self.gain_ci95) if self.gain_ci95 is not None else None,
        }

    @classmethod
    def from_reader(cls, r: _Reader | None, *, all_classes: bool = False) -> Scores:
        if r is None:
            return cls()
        legacy = "metric" not in r.raw  # recipes written before --metric: macro-F1 under *_macro_f1 keys
        oof_key, nested_key = ("oof_macro_f1", "nested_macro_f1") if legacy else ("oof", "nested")
        b = r.child("best_single")
        best = None
        if b is not None:
            best = BestSingle(b.get("name", str), b.number(oof_key, required=True), b.number(nested_key))
        return cls(
            metric=("macro_f1_all" if all_classes else "macro_f1") if legacy else r.get("metric", str),
            higher_is_better=True if legacy else r.get("higher_is_better", bool),
            oof=r.number(oof_key), nested=r.number(nested_key), ci95=r.pair("ci95"),
            fitted=r.get("fitted", bool, required=False, default=True), best_single=best,
            nested_gain_over_best_single=r.number("nested_gain_over_best_single"),
            within_noise=r.get("within_noise", bool, required=False), gain_ci95=r.pair("gain_ci95"),
        )


@dataclass(frozen=True)
class MemberRef:
    """A member a recipe uses: its name, family, table paths and SHA-256 of the tables it was fitted on."""

    name: str
    family: str
    oof: str | None = None
    test: str | None = None
    oof_sha256: str | None = None
    test_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "oof": self.oof, "test": self.test,
                "oof_sha256": self.oof_sha256, "test_sha256": self.test_sha256}


@dataclass(frozen=True)
class MemberScore:
    """A candidate member's OOF score (in the blend's metric) and its share of the blend (0 when not used)."""

    name: str
    family: str
    oof: float
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "oof": self.oof, "weight": self.weight}


@dataclass(frozen=True)
class LabelsRef:
    """The labels CSV a blend was fitted on: where, its hash, and the column names (and the multi-label
    separator) it was read with."""

    path: str
    sha256: str
    id_col: str = "id"
    label_col: str = "label"
    fold_col: str = "fold"
    label_sep: str = "|"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "id_col": self.id_col, "label_col": self.label_col,
                "fold_col": self.fold_col, "label_sep": self.label_sep}


@dataclass(frozen=True)
class Recipe:
    """A blend's recipe (recipe.json).

    Attributes:
        method: the blend method (a METHODS key).
        name: the blend's name.
        classes: class names in index order.
        members: the members the recipe uses (those of units that carry weight).
        units: what entered the blend as one (members, or seed families), in order.
        unit_members: each unit's member names.
        weights: one non-negative weight per unit (None: equal weights).
        bias: per-class log-probability bias, or None.
        pool: "linear" (the method's own combine) or "log" (geometric pooling chosen by the fit).
        temperature: divides the blended log scores before the bias (1: none).
        task: the tables' task, "multiclass" or "multilabel" (recipes before multi-label: multiclass).
        thresholds: multi-label decision thresholds, one per class in (0, 1), or None (0.5).
        threshold_mode: how they were fitted ("per-class" or "global"), or None.
        options: the options that made it.
        scores: how good it is.
        member_scores: every candidate member's OOF score and weight.
        candidates: every member given to the fit.
        folds_source: where the nested folds came from.
        labels: the labels CSV it was fitted on, or None.
        n_test: rows of its test table, or None without one.
        tool_version, created: provenance.
        path, sha256: the file it was read from (None for a recipe built in memory).
    """

    method: str
    name: str
    classes: list[str]
    members: list[MemberRef]
    units: list[str]
    unit_members: dict[str, list[str]]
    weights: list[float] | None = None
    bias: list[float] | None = None
    pool: str = "linear"
    temperature: float = 1.0
    task: str = "multiclass"
    thresholds: list[float] | None = None
    threshold_mode: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    scores: Scores = field(default_factory=Scores)
    member_scores: list[MemberScore] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    folds_source: str = "labels"
    labels: LabelsRef | None = None
    n_test: int | None = None
    tool_version: str | None = None
    created: str | None = None
    path: Path | None = field(default=None, compare=False)
    sha256: str | None = field(default=None, compare=False)

    @property
    def folder(self) -> Path:
        """The blend folder, holding oof.csv and test.csv (the recipe's own folder)."""
        if self.path is None:
            raise ConfigError(f"recipe {self.name!r} was not read from a file; it has no blend folder")
        return self.path.parent

    @property
    def unit_weights(self) -> list[float]:
        """The weight of each unit (1 each when the recipe fixes none)."""
        return list(self.weights) if self.weights is not None else [1.0] * len(self.units)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "name": self.name,
            "members": [m.to_dict() for m in self.members],
            "units": list(self.units), "unit_members": {u: list(m) for u, m in self.unit_members.items()},
            "weights": self.weights, "bias": self.bias, "pool": self.pool, "temperature": self.temperature,
            "task": self.task, "thresholds": self.thresholds, "threshold_mode": self.threshold_mode,
            "classes": list(self.classes),
            "options": self.options, "scores": self.scores.to_dict(),
            "member_scores": [m.to_dict() for m in self.member_scores],
            "candidates": list(self.candidates), "folds_source": self.folds_source,
            "labels": None if self.labels is None else self.labels.to_dict(), "n_test": self.n_test,
            "tool_version": self.tool_version, "created": self.created,
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "recipe") -> Recipe:
        """Validate and type a recipe's JSON object.

        Raises:
            ConfigError: a key is missing, of the wrong type, or inconsistent (weights per unit,
                non-negative and finite with a positive sum; bias per class; units' members named;
                a known task; thresholds per class in (0, 1), multi-label only); the message names the key.
        """
        from ensemble.blend.methods import METHODS

        r = _Reader(raw, where)
        method = r.get("method", str)
        if method not in METHODS:
            raise r.fail("method", f"is {method!r}, not a blend method (choose one of: {', '.join(METHODS.names())})")
        classes = r.strings("classes")
        if not classes:
            raise r.fail("classes", "is empty")
        members = []
        for i, m in enumerate(r.get("members", list)):
            mr = _Reader(m, where, f"members[{i}].")
            name = mr.get("name", str)
            members.append(MemberRef(
                name, mr.get("family", str, required=False, default=name), mr.get("oof", str, required=False),
                mr.get("test", str, required=False), mr.get("oof_sha256", str, required=False),
                mr.get("test_sha256", str, required=False),
            ))
        units = r.strings("units")
        if not units:
            raise r.fail("units", "is empty")
        if len(set(units)) != len(units):
            raise r.fail("units", "names a unit twice")
        um = r.child("unit_members", required=True)
        unit_members = {u: um.strings(u) for u in units}
        weights = r.numbers("weights", length=len(units), what="units")
        if weights is not None:
            if any(w < 0 for w in weights):
                raise r.fail("weights", f"holds a negative weight ({min(weights):g}); weights must be >= 0")
            if sum(weights) <= 0:
                raise r.fail("weights", "are all zero; give at least one positive weight")
        known = {m.name for m in members}
        w = weights or [1.0] * len(units)
        absent = [n for u, wu in zip(units, w) if wu > 0 for n in unit_members[u] if n not in known]
        if absent:
            raise r.fail("members", f"lacks {absent[0]!r}, a member of a weighted unit")
        lab = r.child("labels")
        pool = r.get("pool", str, required=False, default="linear")
        if pool not in ("linear", "log"):
            raise r.fail("pool", f"is {pool!r}; choose linear or log")
        temperature = r.number("temperature")
        if temperature is not None and temperature <= 0:
            raise r.fail("temperature", f"is {temperature:g}; a temperature is > 0")
        task, thresholds, threshold_mode = _decisions(r, len(classes))
        n_test = r.get("n_test", int, required=False)
        if n_test is not None and n_test < 0:
            raise r.fail("n_test", f"is {n_test}, not a row count")
        return cls(
            method=method, name=r.get("name", str, required=False, default="blend"), classes=classes,
            members=members, units=units, unit_members=unit_members, weights=weights,
            bias=r.numbers("bias", length=len(classes), what="classes"), pool=pool,
            temperature=1.0 if temperature is None else temperature,
            task=task, thresholds=thresholds, threshold_mode=threshold_mode,
            options=r.get("options", dict, required=False, default={}),
            scores=Scores.from_reader(r.child("scores"), all_classes=bool(r.get("options", dict, required=False, default={}).get("all_classes"))),
            member_scores=[_member_score(x, where, i) for i, x in enumerate(r.get("member_scores", list, required=False, default=[]))],
            candidates=r.strings("candidates", required=False) or [m.name for m in members],
            folds_source=r.get("folds_source", str, required=False, default="labels"),
            labels=None if lab is None else LabelsRef(
                lab.get("path", str), lab.get("sha256", str), lab.get("id_col", str, required=False, default="id"),
                lab.get("label_col", str, required=False, default="label"),
                lab.get("fold_col", str, required=False, default="fold"),
                lab.get("label_sep", str, required=False, default="|"),
            ),
            n_test=n_test,
            tool_version=r.get("tool_version", str, required=False), created=r.get("created", str, required=False),
        )


def _decisions(r: _Reader, n_classes: int) -> tuple[str, list[float] | None, str | None]:
    """The task, thresholds and threshold mode of a recipe (absent in recipes before multi-label: multiclass, none)."""
    from ensemble.task import MULTILABEL, TASKS

    task = r.get("task", str, required=False, default="multiclass")
    if task not in TASKS:
        raise r.fail("task", f"is {task!r}; choose {' or '.join(TASKS)}")
    thresholds = r.numbers("thresholds", length=n_classes, what="classes")
    mode = r.get("threshold_mode", str, required=False)
    if mode is not None and mode not in ("per-class", "global"):
        raise r.fail("threshold_mode", f"is {mode!r}; choose per-class or global")
    if thresholds is None:
        return task, None, mode
    if task != MULTILABEL:
        raise r.fail("thresholds", f"are given for a {task} blend; thresholds decide multi-label classes only")
    bad = [t for t in thresholds if not 0.0 < t < 1.0]
    if bad:
        raise r.fail("thresholds", f"holds {bad[0]:g}; a threshold is a probability strictly between 0 and 1")
    return task, thresholds, mode


def _member_score(raw: Any, where: str, i: int) -> MemberScore:
    r = _Reader(raw, where, f"member_scores[{i}].")
    name = r.get("name", str)
    key = "oof" if "oof" in r.raw else "oof_macro_f1"  # the key before --metric
    return MemberScore(name, r.get("family", str, required=False, default=name), r.number(key, required=True),
                       r.number("weight", required=True))


def read_recipe(recipe: str | os.PathLike | dict[str, Any] | Recipe) -> Recipe:
    """A recipe from a recipe.json, the blend folder holding one, a dict, or a `Recipe`.

    Raises:
        ConfigError: no such file, invalid JSON, or a recipe that does not validate (the key named).
    """
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    p = Path(recipe)
    p = p / "recipe.json" if p.is_dir() else p
    if not p.is_file():
        raise ConfigError(f"{p}: no such recipe; give the recipe.json that `ens blend` wrote (or its blend folder)")
    raw = read_json_object(p, ConfigError, what="recipe", fix="give the recipe.json that `ens blend` wrote")
    return replace(Recipe.from_dict(raw, where=str(p)), path=p.resolve(), sha256=sha256_file(p))
