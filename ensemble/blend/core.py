"""`blend`: check the members, build the units, fit, score honestly, and build the output tables."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ensemble._progress import NoProgress, Progress
from ensemble.blend import methods as M
from ensemble.blend import nested as N
from ensemble.blend.units import Unit, build_units, check_members
from ensemble.bootstrap import bootstrap_ci
from ensemble.errors import ClassMismatchError, ConfigError, LabelError, preview
from ensemble.labels import Labels, read_labels
from ensemble.metrics import argmax, macro_f1
from ensemble.tables import PredTable, align, conform_classes, make_table

log = logging.getLogger(__name__)


@dataclass(eq=False)
class BlendResult:
    """Everything `ens blend` writes and prints.

    Attributes:
        name: the blend's name (the output folder's).
        method: the METHODS key.
        classes: class names in index order.
        members: the OOF tables given, aligned to the labels; test_members: their test tables or None.
        units: what was blended (seed families with `seed_average`, else the members).
        fitted: chosen units, their weights, bias.
        oof: blended OOF table; test: blended test table (None without test tables). For
            `method="seed"` both are None and `unit_oof` / `unit_test` hold the family averages.
        scores: the recipe's "scores" (in-sample, nested, CI, best single, gain, noise verdict).
        member_scores: per member: name, family, OOF macro-F1, weight in the blend.
        options: the options that made it; folds_source: where the nested folds came from.
    """

    name: str
    method: str
    classes: list[str]
    members: list[PredTable]
    test_members: list[PredTable] | None
    units: list[Unit]
    fitted: M.Fitted
    oof: PredTable | None
    test: PredTable | None
    scores: dict[str, Any]
    member_scores: list[dict[str, Any]]
    options: dict[str, Any]
    folds_source: str
    unit_oof: list[PredTable] = field(default_factory=list)
    ledger_entry: Any = None  # the ledger's AddResult when the submission was recorded
    unit_test: list[PredTable] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One honest line: the nested gain over the best single model, and whether it is noise."""
        return verdict(self.scores)


def verdict(scores: dict[str, Any]) -> str:
    """The verdict line of a recipe's scores."""
    gain = scores.get("nested_gain_over_best_single")
    if gain is None:
        return "nested estimate skipped (--no-nested): the in-sample score is optimistic"
    gain = round(gain, 3) + 0.0  # no "-0.000"
    if scores.get("within_noise"):
        return f"nested gain over best single model {gain:+.3f}, within noise: prefer the simpler blend"
    if gain < 0:
        return f"nested gain over best single model {gain:+.3f}, worse outside noise: prefer the best single model"
    return f"nested gain over best single model {gain:+.3f}, outside noise"


def blend(
    oof_tables: Sequence[PredTable],
    labels: Labels | str | os.PathLike,
    *,
    method: str,
    test_tables: Sequence[PredTable] | None = None,
    weights: Sequence[float] | None = None,
    top: int | None = None,
    seed_average: bool = False,
    tune_bias: bool = False,
    rounds: int = 100,
    seed: int = 42,
    nested: bool = True,
    all_classes: bool = False,
    n_boot: int = 1000,
    name: str = "blend",
    progress: Progress | None = None,
) -> BlendResult:
    """Blend members' OOF (and test) probabilities and score the blend honestly.

    Args:
        oof_tables: one OOF table per member (model), all over the same ids and classes.
        labels: the labels (a `Labels`, or the CSV path); its fold column drives the nested CV.
        method: a METHODS key (soft, hard, rank, geometric, weighted, greedy, seed).
        test_tables: the members' test tables, in the same order, or None.
        weights: fixed weights for soft / hard / geometric, one per unit (non-negative).
        top: keep the `top` units with the best OOF macro-F1 before blending.
        seed_average: average members of one family first; each family enters as one unit.
        tune_bias: fit a per-class log-probability bias that maximises macro-F1.
        rounds: Caruana rounds for `greedy`.
        seed: seeds the stratified split (when the labels have no folds) and the bootstrap.
        nested: compute the nested-CV estimates (the honest scores).
        all_classes: macro-F1 over every class, not only those present.
        n_boot: bootstrap resamples for the CI and the noise verdict.
        name: the blend's name, recorded in its tables.
        progress: progress hook.

    Raises:
        EnsembleError: members disagree on ids, classes or folds; test tables missing or not
            matching; bad weights, top or option combination; unknown method.
    """
    progress = progress or NoProgress()
    meth = M.METHODS.get(method)
    members, test_members, lab = _inputs(oof_tables, test_tables, labels)
    classes, C, y = members[0].classes, len(members[0].classes), lab.y
    units = build_units(members, seed_average=seed_average or method == "seed")
    spec = _spec(method, meth, units, weights, top, tune_bias, rounds, all_classes)
    X = np.ascontiguousarray(np.stack([u.oof(members) for u in units], axis=1))  # (n, U, C)
    same = len(units) == len(members)  # no family averaged anything: units are the members
    Xm = X if same else np.ascontiguousarray(np.stack([t.probs for t in members], axis=1))  # (n, M, C)
    member_f1 = M.unit_scores(Xm, y, C, all_classes)
    folds, folds_source = N.make_folds(lab.folds, y, seed)

    if method == "seed":
        spec = M.Spec(top=1, all_classes=all_classes)  # its score is that of the best family average
    fitted = M.fit(method, X, y, C, spec)
    oof_probs = M.apply(method, fitted, X)
    oof_pred = argmax(oof_probs)
    f1 = macro_f1(y, oof_pred, n_classes=C, all_classes=all_classes)
    ci = bootstrap_ci(y, oof_pred, n_classes=C, n_boot=n_boot, seed=seed, all_classes=all_classes)
    best = int(np.argmax(member_f1))

    fits = M.fits_anything(method, spec)
    nested_f1 = best_nested = gain = None
    blend_pred, ref_pred = oof_pred, argmax(Xm[:, best])
    if nested:
        if fits:
            blend_pred = N.nested_predictions(method, X, y, C, spec, folds, progress)
            nested_f1 = macro_f1(y, blend_pred, n_classes=C, all_classes=all_classes)
        ref_pred = N.nested_best_single(Xm, y, C, folds, all_classes)
        best_nested = macro_f1(y, ref_pred, n_classes=C, all_classes=all_classes)
        gain = (nested_f1 if fits else f1) - best_nested
    lo, hi = N.paired_gain_ci(y, blend_pred, ref_pred, C, n_boot=n_boot, seed=seed, all_classes=all_classes)
    scores = {
        "oof_macro_f1": f1,
        "nested_macro_f1": nested_f1,
        "ci95": [ci[0], ci[1]],
        "fitted": fits,
        "best_single": {"name": members[best].name, "oof_macro_f1": float(member_f1[best]), "nested_macro_f1": best_nested},
        "nested_gain_over_best_single": gain,
        "within_noise": bool(lo <= 0.0 <= hi),
        "gain_ci95": [lo, hi],  # paired bootstrap of (blend - best single), nested predictions when nested
    }

    weight_of = _member_weights(units, fitted, len(members))
    member_scores = [
        {"name": t.name, "family": t.family, "oof_macro_f1": float(member_f1[i]), "weight": weight_of[i]}
        for i, t in enumerate(members)
    ]
    options = {
        "top": top, "seed_average": seed_average, "tune_bias": tune_bias, "rounds": rounds, "seed": seed,
        "all_classes": all_classes, "nested": nested, "fixed_weights": list(weights) if weights is not None else None,
        "n_boot": n_boot,
    }
    meta = {"model": name, "family": name, "method": method, "units": [units[i].name for i in fitted.units]}
    result = BlendResult(
        name, method, classes, members, test_members, units, fitted, None, None, scores, member_scores, options,
        folds_source,
    )
    if method == "seed":
        result.unit_oof = [_table(members[0].ids, classes, X[:, i], u.name, "oof", meta) for i, u in enumerate(units)]
        if test_members is not None:
            result.unit_test = [
                _table(test_members[0].ids, classes, u.test(test_members), u.name, "test", meta) for u in units
            ]
        return result
    result.oof = make_table(members[0].ids, classes, oof_probs, meta={**meta, "kind": "oof"})
    if test_members is not None:
        Xt = np.ascontiguousarray(np.stack([u.test(test_members) for u in units], axis=1))
        result.test = make_table(test_members[0].ids, classes, M.apply(method, fitted, Xt), meta={**meta, "kind": "test"})
    return result


def _inputs(
    oof_tables: Sequence[PredTable], test_tables: Sequence[PredTable] | None, labels: Labels | str | os.PathLike
) -> tuple[list[PredTable], list[PredTable] | None, Labels]:
    """Aligned members (to the labels' id order), aligned test tables, and labels with classes."""
    if not oof_tables:
        raise ConfigError("no members to blend; give at least one prediction folder")
    members = align(list(oof_tables))  # same ids and classes, or a clear error
    classes = members[0].classes
    lab = labels if isinstance(labels, Labels) else read_labels(labels, classes=classes)
    if lab.y is None:
        raise LabelError(f"{lab.source}: no label column; blending needs the true labels")
    if list(lab.classes or []) != list(classes):
        raise ClassMismatchError(
            f"{lab.source}: labels were read with classes {preview(lab.classes or [])}, the tables have "
            f"{preview(classes)}; read them with read_labels(path, classes=table.classes)"
        )
    members = align(members, lab.ids, ref_name=str(lab.source))
    check_members(members, lab)
    tests = None
    if test_tables is not None:
        if len(test_tables) != len(members):
            raise ConfigError(f"{len(test_tables)} test tables for {len(members)} members; give one test table per member")
        for o, t in zip(members, test_tables):
            if t.name != o.name:
                raise ConfigError(f"test table {t.source} is model {t.name!r} but its OOF table is {o.name!r}; give them in the same order")
        tests = conform_classes(align(list(test_tables)), classes)
    return members, tests, lab


def _spec(
    method: str, meth: M.Method, units: list[Unit], weights: Sequence[float] | None, top: int | None,
    tune_bias: bool, rounds: int, all_classes: bool,
) -> M.Spec:
    """Check the option combination and build the fit spec."""
    if top is not None:
        if top < 1:
            raise ConfigError(f"--top {top}: keep at least 1 member")
        if top >= len(units):
            log.warning("--top %d keeps all %d units; nothing is dropped", top, len(units))
            top = None
    if rounds < 1:
        raise ConfigError(f"--rounds {rounds}: give at least 1 round")
    if weights is not None:
        if not meth.takes_weights:
            ok = ", ".join(n for n, m in M.METHODS.items() if m.takes_weights)
            raise ConfigError(f"--weights does not apply to --method {method}; fixed weights go with: {ok}")
        if top is not None:
            raise ConfigError("--weights and --top together are ambiguous; give weights for the members you want instead")
        w = np.asarray(weights, dtype=np.float64)
        if len(w) != len(units):
            names = ", ".join(u.name for u in units)
            raise ConfigError(f"--weights has {len(w)} values for {len(units)} units ({names}); give one weight per unit")
        if not np.all(np.isfinite(w)) or (w < 0).any():
            raise ConfigError(f"--weights {','.join(f'{v:g}' for v in w)} holds a negative or non-finite value; weights must be >= 0")
        if w.sum() <= 0:
            raise ConfigError("--weights are all zero; give at least one positive weight")
        weights = tuple(float(v) for v in w)
    return M.Spec(top=top, weights=weights, tune_bias=tune_bias, rounds=rounds, all_classes=all_classes)


def _member_weights(units: list[Unit], fitted: M.Fitted, n_members: int) -> list[float]:
    """Each member's share of the blend: its unit's weight split evenly over the unit's members."""
    out = [0.0] * n_members
    for u, w in zip(fitted.units, fitted.weights):
        for i in units[u].members:
            out[i] += float(w) / len(units[u].members)
    return out


def _table(ids: np.ndarray, classes: list[str], probs: np.ndarray, name: str, kind: str, meta: dict[str, Any]) -> PredTable:
    return make_table(ids, classes, probs, meta={**meta, "model": name, "family": name, "kind": kind})
