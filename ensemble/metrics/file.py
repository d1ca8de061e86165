"""Competition metric files: the leaderboard's own code, `score(solution, submission, row_id_column_name) -> float`.

A metric file is loaded once (`load_metric_file`), then bound to the labelled rows (`MetricFile.bind`):
the solution frame (the competition's format, or one built from the labels) is read and put in the
labels' row order once, so each `FileMetric.score` call only slices it. Each call gets fresh frames:
Kaggle metrics often `del solution[row_id_column_name]`.

Rows repeated in a bootstrap resample are told apart in both frames: the k-th repeat of a row gets
`k~` before its id (the first occurrence keeps its id) and before its group (`group_col`, when the
solution has it), so a study drawn twice is two studies to a metric that combines the rows of a
study. A prefix, not a suffix: metrics that derive the group from the id (`"<study>_<level>"` split
on "_") then see two studies as well.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ensemble._io import first_line, read_string_csv
from ensemble.errors import MetricError, UnknownNameError, preview
from ensemble.metrics.base import Metric
from ensemble.task import MULTILABEL

if TYPE_CHECKING:
    from ensemble.labels import Labels

__all__ = ["FileMetric", "MetricFile", "is_metric_file", "load_metric_file", "resolve_metric"]

DEFAULT_FUNCTION = "score"
_module_numbers = itertools.count()


def is_metric_file(spec: str | os.PathLike) -> bool:
    """Whether `spec` names a metric file (`path.py` or `path.py:function`) rather than a built-in metric."""
    text = os.fspath(spec)
    return text.endswith(".py") or ".py:" in text


def load_metric_file(spec: str | os.PathLike, *, higher_is_better: bool | None = None) -> MetricFile:
    """Import a competition metric file and find its scoring function and direction.

    Args:
        spec: `path/to/metric.py` (function `score`) or `path/to/metric.py:function`.
        higher_is_better: the direction (`--higher-is-better`/`--lower-is-better`), needed when the
            module has no `higher_is_better` attribute; must agree with it when it has one.

    Raises:
        MetricError: no such file, the file fails to import, no such function, no direction.
    """
    path, function = _split_spec(spec)
    if not path.is_file():
        raise MetricError(
            f"{path}: no such metric file; give a Python file that defines "
            f"{function}(solution, submission, row_id_column_name)"
        )
    module = _import_file(path)
    fn = getattr(module, function, None)
    if fn is None:
        defined = [n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")]
        raise MetricError(
            f"{path}: defines no function {function!r} (functions: {', '.join(defined) or 'none'}); "
            f"name the scoring function with {path}:FUNCTION"
        )
    if not callable(fn):
        raise MetricError(
            f"{path}: {function!r} is a {type(fn).__name__}, not a function; "
            f"name the scoring function with {path}:FUNCTION"
        )
    return MetricFile(f"{path}:{function}", path, function, fn, _direction(module, path, higher_is_better))


@dataclass(frozen=True)
class MetricFile:
    """A loaded metric file, not yet bound to labelled rows.

    Attributes:
        name: `path.py:function`.
        path: the file.
        function: the scoring function's name.
        fn: the scoring function.
        higher_is_better: the direction.
    """

    name: str
    path: Path
    function: str
    fn: Callable[..., Any] = field(repr=False)
    higher_is_better: bool

    def bind(
        self,
        labels: Labels,
        classes: Sequence[str],
        *,
        solution: str | os.PathLike | None = None,
        solution_id_col: str | None = None,
        group_col: str | None = None,
        task: str | None = None,
    ) -> FileMetric:
        """The metric over `labels`' rows, with `probs` columns in `classes` order.

        Args:
            labels: the labelled rows; `score`'s `index` counts into them.
            classes: class names in the probabilities' column order.
            solution: the labelled rows' solution CSV in the competition's format; default: built
                from the labels: id, `label` (the class name; for multi-label labels the row's
                classes in class order joined by the labels' `label_sep`, empty for none), and one
                0/1 int column per class.
            solution_id_col: the solution's row id column (default: its first column).
            group_col: the groups' column (`--group-col`), kept apart under repeats when the
                solution has it (without `solution`, it is copied from the labels when they have it).
            task: the tables' task, the metric's (default: the labels'); `multilabel` reads each
                label cell as a set of classes.

        Raises:
            MetricError: the solution is unreadable, or misses or adds ids.
            LabelError, ClassMismatchError: a multi-label cell names no class of `classes`.
        """
        classes = [str(c) for c in classes]
        task = labels.task if task is None else task
        if solution is None:
            if solution_id_col is not None:
                raise MetricError(
                    f"--solution-id-col {solution_id_col!r} given without --solution; give the solution CSV or drop it"
                )
            build = _sets_solution_from_labels if task == MULTILABEL else _solution_from_labels
            frame, id_col = build(labels, classes, group_col), labels.columns.id
        else:
            frame, id_col = _read_solution(Path(solution), solution_id_col, labels)
        where = solution if solution is not None else labels.source
        if id_col in classes:
            raise MetricError(f"{where}: the row id column {id_col!r} is also a class name; rename the id column")
        return FileMetric(
            self.name, self.higher_is_better, path=self.path, function=self.function, fn=self.fn,
            id_col=id_col, classes=tuple(classes), solution=frame,
            group_col=group_col if group_col in frame.columns else None, task=task,
        )


@dataclass(frozen=True, eq=False, kw_only=True)
class FileMetric(Metric):
    """A metric file bound to labelled rows: a `Metric` like any built-in.

    It runs the user's code per call, so bootstraps default to fewer resamples (`Metric.resamples`).

    Attributes:
        path: the metric file.
        function: the scoring function's name.
        fn: the scoring function.
        id_col: the solution's row id column; the submission's id column gets this name.
        classes: class names in the probabilities' column order (the submission's columns).
        solution: the solution, one row per labelled row in the labels' order, ids as strings.
        group_col: the solution column of groups kept apart when repeated, or None.
    """

    runs_user_code: ClassVar[bool] = True

    path: Path
    function: str
    fn: Callable[..., Any] = field(repr=False)
    id_col: str
    classes: tuple[str, ...]
    solution: pd.DataFrame = field(repr=False)
    group_col: str | None = None
    _cache: dict[object, Any] = field(default_factory=dict, init=False, repr=False)

    def score(
        self, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None = None, *, subset: str | None = None
    ) -> float:
        """Call the metric file on rows `index` (all rows when None) with their probabilities.

        Args:
            y: ignored (the solution holds the truth); kept for the `Metric` shape.
            probs: float (n, C) probabilities of rows `index`, columns in `classes` order.
            index: int (n,) labelled row numbers, possibly repeated; None means every row in order.
            subset: how an error names these rows, e.g. "on 1,234 rows (fold 3)"; default "on N rows".

        Raises:
            MetricError: the metric raised (re-raised as is with ENS_DEBUG=1) or did not return a
                finite number.
        """
        solution, submission = self.frames(probs, index)
        subset = subset or f"on {len(submission):,} rows"
        try:
            value = self.fn(solution, submission, self.id_col)
        except Exception as e:  # noqa: BLE001 -- the metric file may raise anything
            fix = "fix the metric file or the solution"
            raise _raised_in_user_code(e, f"{self.name} raised", subset, fix) from None
        return self._checked(value, subset)

    def frames(self, probs: np.ndarray, index: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The (solution, submission) frames `score` passes for rows `index`, both indexed 0..n-1.

        Raises:
            MetricError: `probs` or `index` do not fit the bound rows and classes.
        """
        n_rows = len(self.solution)
        rows = np.arange(n_rows) if index is None else np.asarray(index, dtype=np.int64).ravel()
        probs = np.asarray(probs)
        if probs.shape != (len(rows), len(self.classes)):
            raise MetricError(
                f"{self.name}: probabilities of shape {probs.shape} for {len(rows)} rows of "
                f"{len(self.classes)} classes; give one row per index and one column per class"
            )
        if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
            raise MetricError(f"{self.name}: row numbers outside 0..{n_rows - 1}; index the {n_rows} labelled rows")
        repeat = _repeat_numbers(rows)
        if repeat is None:
            solution = self.solution.take(rows).reset_index(drop=True)
        else:  # the tagged columns are made from cached strings, not taken
            tagged = [c for c in self.solution.columns if c in (self.id_col, self.group_col)]
            if "untagged" not in self._cache:
                self._cache["untagged"] = self.solution.drop(columns=tagged)
            solution = self._cache["untagged"].take(rows).reset_index(drop=True)
            for col in tagged:
                solution.insert(self.solution.columns.get_loc(col), col, self._tagged(col, rows, repeat))
        submission = pd.DataFrame(probs.astype(np.float64), columns=list(self.classes), copy=False)
        submission.insert(0, self.id_col, solution[self.id_col].array)
        return solution, submission

    def _tagged(self, col: str, rows: np.ndarray, repeat: np.ndarray) -> pd.api.extensions.ExtensionArray:
        """Column `col` of `rows` as strings, with `k~` before the values of a k-th repeat."""
        n_rows, depth = len(self.solution), int(repeat.max()) + 1
        if len(self._cache.get(col, ())) < depth * n_rows:
            # every row's value for its 0th..k-th repeat, stacked, made once: one take per call,
            # without pandas checking 20k fresh strings each time (bootstraps call thousands of times)
            plain = self.solution[col].to_numpy().astype(str).astype(object)
            stacked = [plain] + [np.array([f"{k}~{v}" for v in plain], dtype=object) for k in range(1, max(depth, 4))]
            self._cache[col] = pd.array(np.concatenate(stacked), dtype=self.solution[self.id_col].dtype)
        return self._cache[col].take(repeat * n_rows + rows)

    def _checked(self, value: object, subset: str) -> float:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            shown = " ".join(repr(value).split())
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise MetricError(
                f"{self.name} returned {type(value).__name__} {shown} {subset}; it must return one number"
            )
        value = float(value)
        if not math.isfinite(value):
            raise MetricError(
                f"{self.name} returned {value} {subset}; a score must be finite: check the metric on small "
                "subsets (a class or group absent from a fold, an unclipped log of 0)"
            )
        return value


def resolve_metric(
    spec: str,
    *,
    labels: Labels | None = None,
    classes: Sequence[str] | None = None,
    solution: str | os.PathLike | None = None,
    solution_id_col: str | None = None,
    group_col: str | None = None,
    higher_is_better: bool | None = None,
    task: str = "multiclass",
) -> Metric:
    """The metric `--metric` names: a built-in (e.g. `log_loss`) or a metric file bound to `labels`.

    Args:
        spec: a built-in name, or `path.py` / `path.py:function`.
        labels: the labelled rows (required for a metric file).
        classes: the probabilities' class order (default: the labels' classes).
        solution: a metric file's solution CSV (`--solution`).
        solution_id_col: the solution's row id column (`--solution-id-col`).
        group_col: a metric file's group column kept apart under repeats (`--group-col`).
        higher_is_better: `--higher-is-better` (True) / `--lower-is-better` (False), or None.
        task: the tables' task: which registry a built-in name is looked up in, and a metric file's task.

    Raises:
        MetricError: a metric file without labels, a solution for a built-in, a contradicting direction.
        UnknownNameError: neither a built-in nor a `.py` file.
    """
    if is_metric_file(spec):
        metric_file = load_metric_file(spec, higher_is_better=higher_is_better)
        classes = classes if classes is not None else (labels.classes if labels is not None else None)
        if labels is None or classes is None:
            raise MetricError(
                f"{spec}: a metric file needs the labels (their ids and classes) to build its solution and "
                "submission frames; give the labels CSV"
            )
        return metric_file.bind(
            labels, classes, solution=solution, solution_id_col=solution_id_col, group_col=group_col, task=task
        )
    if solution is not None or solution_id_col is not None:
        raise MetricError(
            f"--solution is read by a metric file (path/to/metric.py) only; the built-in metric {spec!r} "
            "scores the labels directly: drop --solution or give the metric file"
        )
    metric = _builtin(spec, task)
    if higher_is_better is not None and higher_is_better != metric.higher_is_better:
        raise MetricError(
            f"{_direction_flag(higher_is_better)} contradicts the built-in metric {spec!r}, which is "
            f"{metric.direction}; drop the flag"
        )
    return metric


def _builtin(name: str, task: str) -> Metric:
    from ensemble.metrics import (
        get_metric,  # late: ensemble.metrics may import this module
    )

    try:
        return get_metric(name, task)
    except UnknownNameError as e:
        raise UnknownNameError(f"{e}; or give a competition metric file, path/to/metric.py[:function]") from None


def _split_spec(spec: str | os.PathLike) -> tuple[Path, str]:
    text = os.fspath(spec)
    head, sep, function = text.rpartition(":")
    if not (sep and head.endswith(".py")):
        return Path(text), DEFAULT_FUNCTION
    if not function.isidentifier():
        raise MetricError(f"{text}: {function!r} is not a function name; write path/to/metric.py:function")
    return Path(head), function


def _import_file(path: Path) -> ModuleType:
    """Execute `path` as a module under a unique name, its folder importable while it runs."""
    name = f"_ens_metric_{next(_module_numbers)}_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MetricError(f"{path}: not importable as Python; give a .py file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # so `import helper` beside the metric works
    sys.modules[name] = module  # dataclasses and pickle look a module up by name while it runs
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        where = "" if e.filename is None or Path(e.filename) == path else f" in {e.filename}"
        raise MetricError(f"{path}: syntax error{where} at line {e.lineno}: {e.msg}; fix the metric file") from None
    except Exception as e:  # noqa: BLE001 -- the metric file may raise anything
        sys.modules.pop(name, None)
        fix = "fix the file or install what it imports"
        raise _raised_in_user_code(e, f"{path}: importing it raised", "", fix) from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _raised_in_user_code(e: Exception, what: str, where: str, fix: str) -> MetricError:
    """The one-line error for an exception the metric file raised; with ENS_DEBUG=1, `e` itself goes on."""
    if os.environ.get("ENS_DEBUG") == "1":
        raise e
    where = f" {where}" if where else ""
    return MetricError(
        f"{what} {type(e).__name__}{where}: {' '.join(first_line(e).split())}; {fix} (ENS_DEBUG=1 shows the traceback)"
    )


def _direction(module: ModuleType, path: Path, given: bool | None) -> bool:
    if not hasattr(module, "higher_is_better"):
        if given is None:
            raise MetricError(
                f"{path}: no direction (no `higher_is_better` in the file); pass --higher-is-better or "
                "--lower-is-better, or set higher_is_better = True/False in the file"
            )
        return given
    declared = module.higher_is_better
    if not isinstance(declared, bool):
        raise MetricError(f"{path}: higher_is_better = {declared!r}; set it to True or False")
    if given is not None and given != declared:
        raise MetricError(
            f"{path} sets higher_is_better = {declared} but {_direction_flag(given)} was given; "
            "drop the flag or fix the file"
        )
    return declared


def _direction_flag(higher_is_better: bool) -> str:
    return "--higher-is-better" if higher_is_better else "--lower-is-better"


def _read_solution(path: Path, id_col: str | None, labels: Labels) -> tuple[pd.DataFrame, str]:
    """The solution CSV's rows in the labels' order, ids as strings, other columns as pandas reads them."""
    strings = read_string_csv(
        path, MetricError, missing="no such solution CSV; give the labelled rows' solution in the competition's format"
    )
    id_col = str(strings.columns[0]) if id_col is None else id_col
    if id_col not in strings.columns:
        raise MetricError(
            f"{path}: no row id column {id_col!r} (columns: {', '.join(map(str, strings.columns))}); "
            "name it with --solution-id-col"
        )
    ids = pd.Index(strings[id_col].to_numpy(dtype=object))
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()
        raise MetricError(
            f"{path}: ids {preview(dup)} appear more than once in {id_col!r}; give one solution row per id"
        )
    position = ids.get_indexer(labels.ids)
    if (position < 0).any():
        raise MetricError(
            f"{path}: {int((position < 0).sum()):,} labelled ids are missing from {id_col!r} "
            f"({preview(labels.ids[position < 0])}); give a solution row for every id of {labels.source}"
        )
    if len(ids) > len(position):
        extra = ids[~ids.isin(labels.ids)]
        raise MetricError(
            f"{path}: {len(extra):,} solution ids are not in {labels.source} ({preview(extra)}); give the "
            f"solution of the labelled rows only, or check --solution-id-col"
        )
    frame = pd.read_csv(path, dtype={id_col: str})  # other columns typed as the competition's own reading types them
    frame[id_col] = strings[id_col].to_numpy(dtype=object)  # exactly as written: "NA" stays "NA"
    return frame.take(position).reset_index(drop=True), id_col


def _solution_from_labels(labels: Labels, classes: list[str], group_col: str | None) -> pd.DataFrame:
    """id, `label` (class name), one int 0/1 column per class, and `group_col` when the labels have it."""
    id_col = _check_solution_source(labels, classes, group_col)
    raw = labels.raw_labels.astype(str)
    if labels.by_index:  # indices into the probabilities' class order, as ensemble.join reads them
        names = np.asarray(classes, dtype=object)[raw.astype(np.int64)]
    else:
        names = raw.astype(object)
    unknown = np.setdiff1d(names.astype(str), classes)
    if len(unknown):
        raise MetricError(
            f"{labels.source}: labels {preview(unknown)} are not among the classes ({preview(classes)}); "
            "give --solution for multi-label or other targets"
        )
    frame = pd.DataFrame((names[:, None] == np.asarray(classes, dtype=object)).astype(np.int64), columns=classes)
    frame.insert(0, "label", names)
    frame.insert(0, id_col, np.asarray(labels.ids, dtype=object))
    if group_col is not None and group_col in labels.frame.columns:
        frame[group_col] = labels.frame[group_col].to_numpy(dtype=object)
    return frame


def _check_solution_source(labels: Labels, classes: list[str], group_col: str | None) -> str:
    """The id column of a solution built from `labels`, once they have labels and no class is named like a column."""
    id_col = labels.columns.id
    if labels.raw_labels is None:
        raise MetricError(
            f"{labels.source}: no label column {labels.columns.label!r} to build the metric's solution from; "
            "give --solution or name the column with --label-col"
        )
    clash = [c for c in (id_col, "label", group_col) if c in classes]
    if clash:
        raise MetricError(
            f"{labels.source}: class {clash[0]!r} has the name of a solution column; give --solution"
        )
    return id_col


def _sets_solution_from_labels(labels: Labels, classes: list[str], group_col: str | None) -> pd.DataFrame:
    """id, `label` (the row's classes in class order joined by `label_sep`), one int 0/1 column per class,
    and `group_col` when the labels have it."""
    from ensemble.labels import encode_multilabel

    id_col, sep = _check_solution_source(labels, classes, group_col), labels.columns.label_sep
    y, _, _ = encode_multilabel(labels.raw_labels.astype(str), classes, labels.source, labels.columns.label, sep)
    joined = np.full(len(y), "", dtype=object)
    for j, name in enumerate(classes):  # one pass per class, in class order
        hit = y[:, j].astype(bool)
        joined[hit] = np.where(joined[hit] == "", name, joined[hit] + sep + name)
    frame = pd.DataFrame(y.astype(np.int64), columns=classes)
    frame.insert(0, "label", joined)
    frame.insert(0, id_col, np.asarray(labels.ids, dtype=object))
    if group_col is not None and group_col in labels.frame.columns:
        frame[group_col] = labels.frame[group_col].to_numpy(dtype=object)
    return frame


def _repeat_numbers(rows: np.ndarray) -> np.ndarray | None:
    """k for the k-th repeat of each row (0 for a first occurrence), or None when no row repeats."""
    if not len(rows) or np.bincount(rows).max() == 1:
        return None
    order = np.argsort(rows, kind="stable")
    ranked = rows[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = ranked[1:] != ranked[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    repeat = np.empty(len(rows), dtype=np.int64)
    repeat[order] = np.arange(len(rows)) - run_start
    return repeat
