"""`blend`: join the members to the labels, build the units, fit, score honestly, assemble the tables."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ensemble._io import sha256_file
from ensemble._progress import NoProgress, Progress
from ensemble.blend import methods as M
from ensemble.blend import nested as N
from ensemble.blend.assemble import BlendResult, assemble, member_weights, stack_units
from ensemble.blend.units import build_units, check_members
from ensemble.bootstrap import bootstrap_ci
from ensemble.errors import ConfigError
from ensemble.join import conform_tests, join_labels
from ensemble.labels import Labels
from ensemble.metrics import argmax, macro_f1
from ensemble.recipe import BestSingle, LabelsRef, MemberScore, Scores
from ensemble.tables import PredTable

log = logging.getLogger(__name__)

__all__ = ["BlendOptions", "BlendResult", "blend"]


@dataclass(frozen=True)
class BlendOptions:
    """What a blend fits and how it is scored.

    Attributes:
        method: a METHODS key (soft, hard, rank, geometric, weighted, greedy).
        weights: fixed weights for soft / hard / geometric, one per unit (non-negative).
        top: keep the `top` units with the best OOF macro-F1 before blending.
        seed_average: the step before any method: members of one family are averaged first and
            each family enters as one unit.
        tune_bias: fit a per-class log-probability bias that maximises macro-F1.
        rounds: Caruana rounds for `greedy`.
        seed: seeds the stratified split (when the labels have no folds) and the bootstrap.
        nested: compute the nested-CV estimates (the honest scores).
        all_classes: macro-F1 over every class, not only those present.
        n_boot: bootstrap resamples for the CI and the noise verdict.
    """

    method: str
    weights: tuple[float, ...] | None = None
    top: int | None = None
    seed_average: bool = False
    tune_bias: bool = False
    rounds: int = 100
    seed: int = 42
    nested: bool = True
    all_classes: bool = False
    n_boot: int = 1000

    def recorded(self) -> dict[str, Any]:
        """The options as the recipe records them."""
        d = asdict(self)
        d.pop("method")
        d["fixed_weights"] = list(d.pop("weights")) if self.weights is not None else None
        return d


def blend(
    oof_tables: Sequence[PredTable],
    labels: Labels | str | os.PathLike,
    *,
    test_tables: Sequence[PredTable] | None = None,
    options: BlendOptions | None = None,
    classes: Sequence[str] | None = None,
    name: str = "blend",
    progress: Progress | None = None,
    **option_values: Any,
) -> BlendResult:
    """Blend members' OOF (and test) probabilities and score the blend honestly.

    Args:
        oof_tables: one OOF table per member (model), all over the same ids and classes.
        labels: the labels (a `Labels`, or the CSV path); its fold column drives the nested CV.
        test_tables: the members' test tables, in the same order, or None.
        options: what to fit (`BlendOptions`); or give its fields as keywords (`method="soft"`, ...).
        classes: the class order integer labels refer to (default: the tables' recorded order).
        name: the blend's name, recorded in its tables.
        progress: progress hook.

    Raises:
        EnsembleError: members disagree on ids, classes or folds; test tables missing or not
            matching; bad weights, top or option combination; unknown method.
    """
    if options is None:
        options = BlendOptions(**option_values)
    elif option_values:
        raise ConfigError(f"give the options as `options` or as keywords, not both ({', '.join(option_values)})")
    progress = progress or NoProgress()
    o = options
    meth = M.METHODS.get(o.method)
    joined = join_labels(labels, oof_tables, classes=classes) if oof_tables else _no_members()
    members, lab, y, C = joined.tables, joined.labels, joined.y, len(joined.classes)
    check_members(members, lab)
    tests = _tests(members, test_tables, joined.classes)
    units = build_units(members, seed_average=o.seed_average)
    spec = _spec(o, meth, units)
    X = stack_units(units, members)  # (n, U, C)
    same = len(units) == len(members)  # no family averaged anything: units are the members
    Xm = X if same else np.ascontiguousarray(np.stack([t.probs for t in members], axis=1))  # (n, M, C)
    member_f1 = M.unit_scores(Xm, y, C, o.all_classes)

    fitted = M.fit(o.method, X, y, C, spec, progress)
    oof_pred = argmax(M.apply(o.method, fitted, X))
    scores = _scores(o, spec, X, Xm, y, C, oof_pred, fitted, member_f1, members, lab, progress)
    weight_of = member_weights(units, fitted, len(members))
    member_scores = [
        MemberScore(t.name, t.family, float(member_f1[i]), weight_of[i]) for i, t in enumerate(members)
    ]
    oof, test = assemble(o.method, fitted, units, members, tests, name)
    return BlendResult(
        name=name, method=o.method, classes=joined.classes, members=members, test_members=tests, units=units,
        fitted=fitted, oof=oof, test=test, scores=scores, member_scores=member_scores, options=o.recorded(),
        folds_source=scores_folds_source(lab, o), labels=labels_ref(lab),
    )


def _no_members() -> Any:
    raise ConfigError("no members to blend; give at least one prediction folder")


def _tests(members: list[PredTable], test_tables: Sequence[PredTable] | None, classes: list[str]) -> list[PredTable] | None:
    if test_tables is None:
        return None
    if len(test_tables) != len(members):
        raise ConfigError(f"{len(test_tables)} test tables for {len(members)} members; give one test table per member")
    for o, t in zip(members, test_tables):
        if t.name != o.name:
            raise ConfigError(f"test table {t.source} is model {t.name!r} but its OOF table is {o.name!r}; give them in the same order")
    return conform_tests(test_tables, classes)


def _scores(
    o: BlendOptions, spec: M.Spec, X: np.ndarray, Xm: np.ndarray, y: np.ndarray, C: int, oof_pred: np.ndarray,
    fitted: M.Fitted, member_f1: np.ndarray, members: list[PredTable], lab: Labels, progress: Progress,
) -> Scores:
    """In-sample and nested scores, the best single model, and the paired-bootstrap verdict."""
    f1 = macro_f1(y, oof_pred, n_classes=C, all_classes=o.all_classes)
    ci = bootstrap_ci(y, oof_pred, n_classes=C, n_boot=o.n_boot, seed=o.seed, all_classes=o.all_classes)
    best = int(np.argmax(member_f1))
    fits = M.fits_anything(o.method, spec)
    nested_f1 = best_nested = gain = None
    blend_pred, ref_pred = oof_pred, argmax(Xm[:, best])
    if o.nested:
        folds, _ = N.nested_folds(lab.folds, y, o.seed, source=str(lab.source))
        if fits:
            blend_pred = N.nested_predictions(o.method, X, y, C, spec, folds, progress)
            nested_f1 = macro_f1(y, blend_pred, n_classes=C, all_classes=o.all_classes)
        ref_pred = N.nested_best_single(Xm, y, C, folds, o.all_classes)
        best_nested = macro_f1(y, ref_pred, n_classes=C, all_classes=o.all_classes)
        gain = (nested_f1 if fits else f1) - best_nested
    lo, hi = N.paired_gain_ci(y, blend_pred, ref_pred, C, n_boot=o.n_boot, seed=o.seed, all_classes=o.all_classes)
    return Scores(
        oof_macro_f1=f1, nested_macro_f1=nested_f1, ci95=(ci[0], ci[1]), fitted=fits,
        best_single=BestSingle(members[best].name, float(member_f1[best]), best_nested),
        nested_gain_over_best_single=gain, within_noise=bool(lo <= 0.0 <= hi),
        gain_ci95=(lo, hi),  # paired bootstrap of (blend - best single), nested predictions when nested
    )


def scores_folds_source(lab: Labels, o: BlendOptions) -> str:
    """Where the nested folds come from: the labels' fold column, or a seeded stratified split."""
    return "labels" if lab.folds is not None else f"stratified(seed={o.seed})"


def labels_ref(lab: Labels) -> LabelsRef | None:
    """The labels CSV a blend was fitted on (path, hash, columns), or None for labels built in memory."""
    p = lab.source
    if p is None or not os.path.isfile(p):
        return None
    c = lab.columns
    return LabelsRef(str(os.path.abspath(p)), sha256_file(p), c.id, c.label, c.fold)


def _spec(o: BlendOptions, meth: M.Method, units: list) -> M.Spec:
    """Check the option combination and build the fit spec."""
    top, weights = o.top, o.weights
    if top is not None:
        if top < 1:
            raise ConfigError(f"--top {top}: keep at least 1 member")
        if top >= len(units):
            log.warning("--top %d keeps all %d units; nothing is dropped", top, len(units))
            top = None
    if o.rounds < 1:
        raise ConfigError(f"--rounds {o.rounds}: give at least 1 round")
    if o.n_boot < 1:
        raise ConfigError(f"--n-boot {o.n_boot}: give at least 1 bootstrap resample")
    if weights is not None:
        if not meth.takes_weights:
            ok = ", ".join(n for n, m in M.METHODS.items() if m.takes_weights)
            raise ConfigError(f"--weights does not apply to --method {o.method}; fixed weights go with: {ok}")
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
    return M.Spec(top=top, weights=weights, tune_bias=o.tune_bias, rounds=o.rounds, all_classes=o.all_classes)
