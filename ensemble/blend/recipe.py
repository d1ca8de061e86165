"""recipe.json: write a blend all-or-nothing, read a recipe back, and re-apply it without refitting.

Re-applying matches members by name. A member whose table hash differs from the recipe's is
re-blended with a warning (re-applying a recipe to re-predicted tables is the point), or refused
with `strict=True`; a member the recipe needs and that is not given is always an error.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ensemble._io import check_writable, read_json_object, write_json
from ensemble.blend import methods as M
from ensemble.blend.core import BlendResult
from ensemble.blend.units import Unit
from ensemble.bootstrap import bootstrap_ci
from ensemble.errors import ConfigError, preview
from ensemble.labels import Labels, read_labels
from ensemble.metrics import argmax, macro_f1
from ensemble.submission import SubmissionFormat, write_submission
from ensemble.tables import PredTable, align, conform_classes, make_table, sidecar_path, views_path, write_table

log = logging.getLogger(__name__)


def _path(t: PredTable | None) -> str | None:
    return str(t.path.resolve()) if t is not None and t.path is not None else None


def recipe_dict(result: BlendResult) -> dict[str, Any]:
    """The recipe of a blend (see the module docstring of `ensemble.blend` and DESIGN.md)."""
    from ensemble import __version__

    seed = result.method == "seed"
    units = result.units if seed else [result.units[i] for i in result.fitted.units]
    used = sorted({i for u in units for i in u.members})
    tests = result.test_members
    return {
        "method": result.method,
        "name": result.name,
        "members": [
            {
                "name": result.members[i].name,
                "family": result.members[i].family,
                "oof": _path(result.members[i]),
                "test": _path(tests[i]) if tests is not None else None,
                "oof_sha256": result.members[i].file_sha256(),
                "test_sha256": tests[i].file_sha256() if tests is not None else None,
            }
            for i in used
        ],
        "units": [u.name for u in units],
        "unit_members": {u.name: [result.members[i].name for i in u.members] for u in units},
        "weights": None if seed else [float(w) for w in result.fitted.weights],
        "bias": None if result.fitted.bias is None else [float(b) for b in result.fitted.bias],
        "classes": list(result.classes),
        "options": result.options,
        "scores": result.scores,
        "member_scores": result.member_scores,
        "candidates": [t.name for t in result.members],
        "folds_source": result.folds_source,
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_blend(
    result: BlendResult,
    out_dir: str | os.PathLike,
    *,
    submission: str | os.PathLike | None = None,
    fmt: SubmissionFormat = SubmissionFormat(),
    force: bool = False,
) -> dict[str, Path]:
    """Write oof.csv, test.csv (with sidecars), recipe.json and the submission, all or nothing.

    Everything is first written to a staging folder beside `out_dir`, then moved into place
    (recipe.json last: readers look for it). `method="seed"` writes `<out_dir>/<family>/` tables.

    Args:
        result: what `blend` or `apply_recipe` returned.
        out_dir: the blend folder (e.g. blends/NAME).
        submission: also write the competition CSV here (from the test blend).
        fmt: the submission's columns and target format.
        force: overwrite existing outputs.

    Returns:
        The written paths by role ("oof", "test", "recipe", "submission", or "<family>/oof", ...).

    Raises:
        OutputExistsError: an output exists and not `force`.
        ConfigError: a submission without test tables, or from a multi-family seed blend.
    """
    out = Path(out_dir)
    tables: dict[str, PredTable] = {}
    if result.method == "seed":
        for t in result.unit_oof:
            tables[f"{t.name}/oof"] = t
        for t in result.unit_test:
            tables[f"{t.name}/test"] = t
    else:
        tables["oof"] = result.oof
        if result.test is not None:
            tables["test"] = result.test
    sub_table = None
    if submission is not None:
        sub_tests = result.unit_test if result.method == "seed" else [result.test] if result.test else []
        if not sub_tests:
            raise ConfigError("--submission needs test tables: put test.csv beside each member's oof.csv")
        if len(sub_tests) > 1:
            raise ConfigError("--method seed with several families writes one table per family; blend them to make a submission")
        sub_table = sub_tests[0]
    finals = {role: out / f"{role}.csv" for role in tables}
    files = [p for role, p in finals.items() for p in (p, sidecar_path(p))] + [out / "recipe.json"]
    if submission is not None:
        files.append(Path(submission))
    check_writable(files, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
    try:
        moves: list[tuple[Path, Path]] = []
        for role, t in tables.items():
            staged = staging / f"{role}.csv"
            staged.parent.mkdir(parents=True, exist_ok=True)
            write_table(t, staged)
            moves += [(sidecar_path(staged), sidecar_path(finals[role])), (staged, finals[role])]
        if sub_table is not None:
            write_submission(sub_table, staging / "submission.csv", fmt)
            moves.append((staging / "submission.csv", Path(submission)))
        write_json(staging / "recipe.json", recipe_dict(result))
        moves.append((staging / "recipe.json", out / "recipe.json"))
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dst)  # a rename on one filesystem
        if result.method != "seed" and result.test is None:
            for stale in (out / "test.csv", sidecar_path(out / "test.csv"), views_path(out / "test.csv")):
                stale.unlink(missing_ok=True)  # a test table of an earlier blend would not match this one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    paths = {role: p for role, p in finals.items()} | {"recipe": out / "recipe.json"}
    if submission is not None:
        paths["submission"] = Path(submission)
    for t, role in ((t, r) for r, t in tables.items()):
        t.path = finals[role]
    return paths


def read_recipe(recipe: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """A recipe as a dict (from a dict, a recipe.json, or a blend folder holding one).

    Raises:
        ConfigError: missing file, invalid JSON, or a recipe without method/units/members/classes.
    """
    if isinstance(recipe, dict):
        raw, where = recipe, "recipe"
    else:
        p = Path(recipe)
        p = p / "recipe.json" if p.is_dir() else p
        where = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: no such recipe; give the recipe.json that `ens blend` wrote")
        raw = read_json_object(p, ConfigError, what="recipe", fix="give the recipe.json that `ens blend` wrote")
    missing = [k for k in ("method", "members", "units", "unit_members", "classes") if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise ConfigError(f"{where}: recipe lacks {', '.join(missing)}; give a recipe.json written by `ens blend`")
    M.METHODS.get(raw["method"])
    return raw


def apply_recipe(
    recipe: str | os.PathLike | dict[str, Any],
    oof_tables: Sequence[PredTable],
    test_tables: Sequence[PredTable] | None = None,
    *,
    labels: Labels | str | os.PathLike | None = None,
    strict: bool = False,
    name: str | None = None,
    n_boot: int = 1000,
) -> BlendResult:
    """Re-apply a recipe's units, weights and bias to tables, without refitting anything.

    Args:
        recipe: the recipe (dict, recipe.json, or its blend folder).
        oof_tables: OOF tables holding (at least) the recipe's members, matched by name.
        test_tables: their test tables in the same order, or None.
        labels: when given, the OOF blend is scored again (in-sample score and CI).
        strict: refuse members whose table hash differs from the recipe's (default: warn).
        name: the blend's name (default: the recipe's).
        n_boot: bootstrap resamples for the CI.

    Raises:
        ConfigError: a member the recipe needs is missing, or (strict) a hash differs.
        ClassMismatchError / AlignmentError: the tables disagree with each other or the recipe.
    """
    r = read_recipe(recipe)
    classes = [str(c) for c in r["classes"]]
    by_name = {t.name: i for i, t in enumerate(oof_tables)}
    needed = _needed_members(r)
    absent = [m for m in needed if m not in by_name]
    if absent:
        raise ConfigError(f"the recipe needs members {preview(absent)} that were not given; add their prediction folders")
    extra = [t.name for t in oof_tables if t.name not in needed]
    if extra:
        log.warning("ignoring %s: the recipe does not use them", preview(extra))
    members = conform_classes(align([oof_tables[by_name[m]] for m in needed]), classes)
    tests = None
    if test_tables is not None:
        tests = conform_classes(align([test_tables[by_name[m]] for m in needed]), classes)
    _check_hashes(r, members, tests, strict)
    index = {m: i for i, m in enumerate(needed)}
    method = r["method"]
    all_w = [1.0] * len(r["units"]) if r.get("weights") is None else [float(w) for w in r["weights"]]
    kept = [(u, w) for u, w in zip(r["units"], all_w) if w > 0]
    units = [Unit(u, tuple(index[m] for m in r["unit_members"][u])) for u, _ in kept]
    weights = np.array([w for _, w in kept])
    fitted = M.Fitted(np.arange(len(units)), weights, None if r.get("bias") is None else np.asarray(r["bias"]))
    X = np.ascontiguousarray(np.stack([u.oof(members) for u in units], axis=1))
    scores = dict(r.get("scores") or {})
    if labels is not None:
        lab = labels if isinstance(labels, Labels) else read_labels(labels, classes=classes)
        members = align(members, lab.ids, ref_name=str(lab.source))
        X = np.ascontiguousarray(np.stack([u.oof(members) for u in units], axis=1))
        all_classes = bool(r.get("options", {}).get("all_classes", False))
        pred = argmax(M.apply(method, fitted, X)) if method != "seed" else None
        if pred is not None:
            scores["oof_macro_f1"] = macro_f1(lab.y, pred, n_classes=len(classes), all_classes=all_classes)
            scores["ci95"] = list(bootstrap_ci(lab.y, pred, n_classes=len(classes), n_boot=n_boot, all_classes=all_classes))
    blend_name = name or r.get("name") or "blend"
    meta = {"model": blend_name, "family": blend_name, "method": method, "units": r["units"], "recipe": True}
    options = {**r.get("options", {}), "reapplied": True}
    result = BlendResult(
        blend_name, method, classes, members, tests, units, fitted, None, None, scores,
        r.get("member_scores", []), options, r.get("folds_source", "labels"),
    )
    if method == "seed":
        result.unit_oof = [make_table(members[0].ids, classes, u.oof(members), meta={**meta, "model": u.name, "kind": "oof"}) for u in units]
        if tests is not None:
            result.unit_test = [make_table(tests[0].ids, classes, u.test(tests), meta={**meta, "model": u.name, "kind": "test"}) for u in units]
        return result
    result.oof = make_table(members[0].ids, classes, M.apply(method, fitted, X), meta={**meta, "kind": "oof"})
    if tests is not None:
        Xt = np.ascontiguousarray(np.stack([u.test(tests) for u in units], axis=1))
        result.test = make_table(tests[0].ids, classes, M.apply(method, fitted, Xt), meta={**meta, "kind": "test"})
    return result


def _needed_members(r: dict[str, Any]) -> list[str]:
    """Members of the units that carry weight (a unit the fit gave weight 0 needs no table)."""
    weights = r.get("weights") or [1.0] * len(r["units"])
    out: list[str] = []
    for u, w in zip(r["units"], weights):
        if w > 0:
            out += [m for m in r["unit_members"][u] if m not in out]
    return out


def _check_hashes(r: dict[str, Any], members: list[PredTable], tests: list[PredTable] | None, strict: bool) -> None:
    recorded = {m["name"]: m for m in r["members"]}
    changed = []
    for i, t in enumerate(members):
        rec = recorded.get(t.name, {})
        pairs = [(rec.get("oof_sha256"), t.file_sha256(), "oof")]
        if tests is not None:
            pairs.append((rec.get("test_sha256"), tests[i].file_sha256(), "test"))
        changed += [f"{t.name} ({kind})" for old, new, kind in pairs if old and new and old != new]
    if not changed:
        return
    if strict:
        raise ConfigError(
            f"tables of {preview(changed)} differ from the ones the recipe was fitted on (SHA-256); "
            "re-fit the blend, or re-apply without --strict to use the new tables"
        )
    log.warning("tables of %s differ from the ones the recipe was fitted on; re-applying its weights anyway", preview(changed))
