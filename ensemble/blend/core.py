"""`blend`: join the members to the labels, build the units, fit, score honestly, assemble the tables."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ensemble._io import sha256_file
from ensemble._progress import NoProgress, Progress
from ensemble.blend import methods as M
from ensemble.blend import nested as N
from ensemble.blend.assemble import (
    BlendResult,
    assemble,
    assemble_kind,
    member_weights,
    stack_units,
)
from ensemble.blend.units import build_units, check_members
from ensemble.bootstrap import bootstrap_metric_ci
from ensemble.errors import ConfigError, unknown_name
from ensemble.join import conform_tests, join_labels
from ensemble.labels import Labels
from ensemble.memory import release_freed_memory
from ensemble.metrics.base import Metric
from ensemble.metrics.choice import MetricChoice
from ensemble.recipe import BestSingle, LabelsRef, MemberScore, Scores
from ensemble.tables import PredTable
from ensemble.task import MULTICLASS, MULTILABEL

if TYPE_CHECKING:
    from concurrent.futures import Future

log = logging.getLogger(__name__)

__all__ = ["BlendOptions", "BlendResult", "blend", "with_tests"]


@dataclass(frozen=True)
class BlendOptions:
    """What a blend fits and how it is scored.

    Attributes:
        method: a METHODS key (soft, hard, rank, geometric, weighted, greedy).
        weights: fixed weights for soft / hard / geometric, one per unit (non-negative).
        top: keep the `top` units with the best OOF macro-F1 before blending.
        seed_average: the step before any method: members of one family are averaged first and
            each family enters as one unit.
        tune_bias: fit a per-class log-probability bias for the metric (multiclass argmax metrics).
        calibrate: "none", "temperature" or "temperature+bias": a temperature (and per-class bias)
            on the blended log scores (log-probabilities; logits for multi-label tables) fitted on
            the metric (probability metrics).
        tune_thresholds: "none", "per-class" or "global": multi-label decision thresholds fitted for
            the metric (decision metrics; `ensemble.blend.thresholds`), nested like every fit.
        rounds: Caruana rounds for `greedy`.
        seed: seeds the stratified split (when the labels have no folds) and the bootstrap.
        nested: compute the nested-CV estimates (the honest scores).
        all_classes: shorthand for metric "macro_f1_all" (macro-F1 over every class).
        n_boot: bootstrap resamples for the CI and the noise verdict (default 1000; 200 for a metric file).
        metric: what every fit, choice and score uses: a registry name or a `Metric` (a competition
            metric file, bound to the labels).
        group_col: a column of the labels CSV whose groups (studies, patients) the bootstrap
            resamples whole.
        solution, solution_id_col: a metric file's solution CSV (the train rows in the
            competition's format) and its id column; default: built from the labels.
        higher_is_better: a metric file's direction when the file does not say.
    """

    method: str
    weights: tuple[float, ...] | None = None
    top: int | None = None
    seed_average: bool = False
    tune_bias: bool = False
    calibrate: str = "none"
    tune_thresholds: str = "none"
    rounds: int = 100
    seed: int = 42
    nested: bool = True
    all_classes: bool = False
    n_boot: int | None = None
    metric: str | Metric = "macro_f1"
    group_col: str | None = None
    solution: str | None = None
    solution_id_col: str | None = None
    higher_is_better: bool | None = None

    def recorded(self) -> dict[str, Any]:
        """The options as the recipe records them (the metric is recorded with the scores)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("method", "metric", "weights")}
        d["fixed_weights"] = list(self.weights) if self.weights is not None else None
        return d

    def resolve_metric(self, labels: Labels, classes: Sequence[str], task: str = MULTICLASS) -> Metric:
        """The metric of the tables' `task`, bound to the labels when it is a competition metric file.

        Raises:
            ConfigError: a `Metric` given for the other task.
        """
        metric = MetricChoice(
            self.metric, self.higher_is_better, self.solution, self.solution_id_col, self.group_col, self.all_classes
        ).resolve(labels, list(classes), task=task)
        if isinstance(self.metric, Metric) and metric.task != task:
            raise ConfigError(
                f"metric {metric.name!r} scores {metric.task} tables but the members are {task}; "
                f"give a {task} metric (or its registry name)"
            )
        return metric


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
    if not oof_tables:
        raise ConfigError("no members to blend; give at least one prediction folder")
    joined = join_labels(labels, oof_tables, classes=classes)
    members, lab, y, C = joined.tables, joined.labels, joined.y, len(joined.classes)
    check_members(members, lab)
    tests = _tests(members, test_tables, joined.classes)
    units = build_units(members, seed_average=o.seed_average)
    spec = _spec(o, meth, units, o.resolve_metric(lab, joined.classes, joined.task), joined.task)
    X = stack_units(units, members)  # (n, U, C)
    same = len(units) == len(members)  # no family averaged anything: units are the members
    Xm = X if same else stack_units(build_units(members, seed_average=False), members)  # (n, M, C)
    member_scores_ = M.unit_scores(Xm, y, spec.metric)

    folds = N.nested_folds(lab.folds, y, o.seed, source=str(lab.source))[0] if o.nested else None
    with _nested_beside_fit(o, spec, X, y, C, folds) as nested_early:
        fitted = M.fit(o.method, X, y, C, spec, progress)
        release_freed_memory()  # the fit's work arrays, before the nested folds allocate theirs
        # the in-sample blend goes to `_scores` alone, which frees it once scored (before the nested folds)
        scores = _scores(o, spec, X, Xm, y, C, M.apply(o.method, fitted, X), member_scores_, members, lab, progress,
                         folds, nested_early)
    weight_of = member_weights(units, fitted, len(members))
    member_scores = [
        MemberScore(t.name, t.family, float(member_scores_[i]), weight_of[i]) for i, t in enumerate(members)
    ]
    oof, test = assemble(o.method, fitted, units, members, tests, name)
    return BlendResult(
        name=name, method=o.method, classes=joined.classes, members=members, test_members=tests, units=units,
        fitted=fitted, oof=oof, test=test, scores=scores, member_scores=member_scores, options=o.recorded(),
        folds_source=scores_folds_source(lab, o), labels=labels_ref(lab),
    )


def with_tests(result: BlendResult, test_tables: Sequence[PredTable]) -> BlendResult:
    """A blend fitted without test tables, with its members' test tables and its blended test table
    (the same as `blend(..., test_tables=...)` gives; `blend_folders` reads them after the fit).

    Raises:
        EnsembleError: test tables missing, out of order or not matching (as `blend` raises).
    """
    tests = _tests(result.members, test_tables, result.classes)
    test = assemble_kind(result.method, result.fitted, result.units, result.members, tests, result.name, "test")
    return replace(result, test_members=tests, test=test)


def _tests(members: list[PredTable], test_tables: Sequence[PredTable] | None, classes: list[str]) -> list[PredTable] | None:
    if test_tables is None:
        return None
    if len(test_tables) != len(members):
        raise ConfigError(f"{len(test_tables)} test tables for {len(members)} members; give one test table per member")
    for o, t in zip(members, test_tables):
        if t.name != o.name:
            raise ConfigError(f"test table {t.source} is model {t.name!r} but its OOF table is {o.name!r}; give them in the same order")
    return conform_tests(test_tables, classes)


@contextmanager
def _nested_beside_fit(
    o: BlendOptions, spec: M.Spec, X: np.ndarray, y: np.ndarray, C: int, folds: np.ndarray | None,
) -> Iterator[Future[np.ndarray] | None]:
    """The nested predictions, started in a thread beside the full fit when the outer folds are
    fitted in threads anyway (a small stack, a built-in metric: `nested.fold_workers`), else None.

    Those folds fit on copies of their rows, so the full fit and the in-sample blend read X while
    they run; the six fits then share the cores instead of the full fit running alone first (0.1 s of
    bench_cli.py's 2 s blend). Their progress is not shown: they finish in about a second.
    """
    if folds is None or not M.fits_anything(o.method, spec):
        yield None
        return
    if N.fold_workers(X, spec, len(np.unique(folds))) < 2:
        yield None
        return
    import threading
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()
    pool = ThreadPoolExecutor(1)
    try:
        yield pool.submit(N.nested_predictions, o.method, X, y, C, spec, folds, stop=stop)
    except BaseException:  # the fit failed or was interrupted: folds not yet begun are skipped
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _scores(
    o: BlendOptions, spec: M.Spec, X: np.ndarray, Xm: np.ndarray, y: np.ndarray, C: int, oof_probs: np.ndarray,
    member_scores: np.ndarray, members: list[PredTable], lab: Labels, progress: Progress,
    folds: np.ndarray | None, nested_early: Future[np.ndarray] | None = None,
) -> Scores:
    """In-sample and nested scores in the metric, the best single model, and the paired-bootstrap verdict.

    `folds`: the nested CV's outer folds (`nested.nested_folds`), None without nested estimates;
    `nested_early`: the nested predictions, already started (`_nested_beside_fit`).
    """
    metric = spec.metric
    groups = lab.groups(o.group_col)
    n_boot = metric.resamples(o.n_boot, 1000)
    score = metric.score(y, oof_probs)
    ci = bootstrap_metric_ci(metric, y, oof_probs, n_boot=n_boot, seed=o.seed, groups=groups, progress=progress)
    best = metric.best(member_scores)
    fits = M.fits_anything(o.method, spec)
    nested = best_nested = gain = None
    blend_probs, ref_probs = oof_probs, Xm[:, best]
    if folds is not None:
        if fits:
            del blend_probs, oof_probs  # scored: 0.07 GB at 1M x 18 that the nested folds need not share memory with
            if nested_early is not None:
                blend_probs = nested_early.result()
            else:
                blend_probs = N.nested_predictions(o.method, X, y, C, spec, folds, progress)
            nested = metric.score(y, blend_probs)
        ref_probs = N.nested_best_single(Xm, y, metric, folds)
        best_nested = metric.score(y, ref_probs)
        gain = float(metric.oriented((nested if fits else score) - best_nested))
    lo, hi = N.paired_gain_ci(y, blend_probs, ref_probs, metric, n_boot=n_boot, seed=o.seed, groups=groups,
                              progress=progress)
    return Scores(
        metric=metric.name, higher_is_better=metric.higher_is_better, oof=float(score), nested=nested,
        ci95=(float(ci[0]), float(ci[1])), fitted=fits,
        best_single=BestSingle(members[best].name, float(member_scores[best]), best_nested),
        nested_gain_over_best_single=gain, within_noise=bool(lo <= 0.0 <= hi),
        gain_ci95=(lo, hi),  # paired bootstrap of the oriented gain, nested probabilities when nested
    )


def scores_folds_source(lab: Labels, o: BlendOptions) -> str:
    """Where the nested folds come from: the labels' fold column, or a seeded stratified split of the task."""
    return "labels" if lab.folds is not None else f"{N.NESTED_SPLIT[lab.task]}(seed={o.seed})"


def labels_ref(lab: Labels) -> LabelsRef | None:
    """The labels CSV a blend was fitted on (path, hash, columns), or None for labels built in memory."""
    p = lab.source
    if p is None or not os.path.isfile(p):
        return None
    c = lab.columns
    return LabelsRef(str(os.path.abspath(p)), sha256_file(p), c.id, c.label, c.fold, c.label_sep)


def _spec(o: BlendOptions, meth: M.Method, units: list, metric: Metric, task: str = MULTICLASS) -> M.Spec:
    """Check the option combination and build the fit spec."""
    top, weights = o.top, o.weights
    _check_decision_tools(o, metric, task)
    if top is not None:
        if top < 1:
            raise ConfigError(f"--top {top}: keep at least 1 member")
        if top >= len(units):
            log.warning("--top %d keeps all %d units; nothing is dropped", top, len(units))
            top = None
    if o.rounds < 1:
        raise ConfigError(f"--rounds {o.rounds}: give at least 1 round")
    if o.n_boot is not None and o.n_boot < 1:
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
    return M.Spec(
        metric=metric, top=top, weights=weights, tune_bias=o.tune_bias, calibrate=o.calibrate, rounds=o.rounds,
        thresholds=o.tune_thresholds, task=task,
    )


def _check_decision_tools(o: BlendOptions, metric: Metric, task: str) -> None:
    """Refuse a bias, thresholds or calibration the task or the metric cannot use (one line naming the fix)."""
    from ensemble.blend.tasks import TASK_MATH

    if o.calibrate not in M.CALIBRATIONS:
        raise unknown_name("calibration", o.calibrate, M.CALIBRATIONS)
    if o.tune_thresholds not in M.THRESHOLD_MODES:
        raise unknown_name("threshold mode", o.tune_thresholds, M.THRESHOLD_MODES)
    if o.tune_bias and task == MULTILABEL:
        raise ConfigError(
            "--tune-bias moves multiclass argmax decisions; multi-label decisions are per-class thresholds — "
            "use --tune-thresholds per-class (or global)"
        )
    if o.tune_thresholds != "none" and task != MULTILABEL:
        raise ConfigError(
            "--tune-thresholds is for multi-label (sigmoid) tables; these members are multiclass — "
            "use --tune-bias to move argmax decisions"
        )
    if o.tune_thresholds != "none" and not metric.argmax_only and not metric.runs_user_code:
        raise ConfigError(
            f"--tune-thresholds moves decisions (p > t), but {metric.name} scores the probabilities themselves "
            "(a threshold does not change their ranking) — tune thresholds for a decision metric "
            "(macro_f1, micro_f1, samples_f1) or use --calibrate temperature"
        )
    if o.tune_bias and not metric.argmax_only:
        raise ConfigError(
            f"--tune-bias moves argmax decisions; {metric.name} scores probabilities — use --calibrate temperature"
        )
    if o.calibrate != "none" and metric.argmax_only:
        raise ConfigError(
            f"--calibrate changes probabilities, not the decisions, so {metric.name} cannot see it — "
            f"use {TASK_MATH.get(task).decision_flag}"
        )
