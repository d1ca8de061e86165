"""Competition metric files: frames, subsets, repeats and groups against independent oracles; every error one line."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from ensemble.errors import MetricError, UnknownNameError
from ensemble.labels import read_labels
from ensemble.metrics.base import Metric
from ensemble.metrics.file import (
    FileMetric,
    is_metric_file,
    load_metric_file,
    resolve_metric,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "metrics" / "weighted_logloss_any.py"
pytestmark = pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32 rows, as tables hold
CLASSES = ["severe", "normal", "moderate"]  # not sorted: a column mix-up cannot pass unnoticed

SKLEARN_LOG_LOSS = '''
from sklearn.metrics import log_loss
higher_is_better = False

def score(solution, submission, row_id_column_name):
    assert list(solution[row_id_column_name]) == list(submission[row_id_column_name])
    assert submission[row_id_column_name].is_unique
    classes = sorted(c for c in submission.columns if c != row_id_column_name)
    return log_loss(solution["label"], submission[classes].to_numpy(), labels=classes)
'''


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def labels(tmp_path: Path, rng: np.random.Generator):
    n = 60
    frame = pd.DataFrame({
        "id": [f"{i:05d}" for i in range(n)],  # leading zeros must survive
        "label": rng.choice(CLASSES, n),
        "fold": np.arange(n) % 3,
        "study": np.repeat(np.arange(n // 4), 4) + 100,
    })
    frame.to_csv(tmp_path / "train.csv", index=False)
    return read_labels(tmp_path / "train.csv", classes=CLASSES)


@pytest.fixture
def probs(labels, rng: np.random.Generator) -> np.ndarray:
    return rng.dirichlet(np.ones(len(CLASSES)), size=len(labels)).astype(np.float32)


def sklearn_metric(tmp_path: Path, labels, **bind) -> FileMetric:
    return load_metric_file(write(tmp_path / "ll.py", SKLEARN_LOG_LOSS)).bind(labels, CLASSES, **bind)


# --- the frames and the sklearn oracle ------------------------------------------------------------


def test_a_file_metric_is_a_metric_named_by_its_file(tmp_path, labels):
    metric = sklearn_metric(tmp_path, labels)
    assert isinstance(metric, Metric)
    assert metric.name == f"{tmp_path / 'll.py'}:score"
    assert (metric.higher_is_better, metric.argmax_only, metric.count_code) == (False, False, None)
    assert is_metric_file("m.py") and is_metric_file("a/m.py:fn") and not is_metric_file("log_loss")


def test_frames_have_the_competition_shape(tmp_path, labels, probs):
    metric = sklearn_metric(tmp_path, labels)
    solution, submission = metric.frames(probs[[4, 0]], np.array([4, 0]))
    assert list(solution.columns) == ["id", "label", *CLASSES]
    assert list(submission.columns) == ["id", *CLASSES]
    assert list(submission["id"]) == list(solution["id"]) == ["00004", "00000"]
    assert all(submission[c].dtype == np.float64 for c in CLASSES)
    np.testing.assert_array_equal(submission[CLASSES].to_numpy(), probs[[4, 0]].astype(np.float64))
    onehot = solution[CLASSES].to_numpy()
    assert onehot.dtype == np.int64 and (onehot.sum(axis=1) == 1).all()
    assert [CLASSES[j] for j in onehot.argmax(axis=1)] == list(solution["label"])
    assert list(solution.index) == list(submission.index) == [0, 1]


@pytest.mark.parametrize("kind", ["all", "fold", "reversed", "bootstrap"])
def test_scores_equal_sklearn_on_the_same_rows(tmp_path, labels, probs, rng, kind):
    n = len(labels)
    index = {
        "all": None,
        "fold": np.flatnonzero(labels.folds == 1),
        "reversed": np.arange(n)[::-1].copy(),
        "bootstrap": rng.integers(0, n, n),
    }[kind]
    rows = np.arange(n) if index is None else index
    expected = log_loss(labels.y[rows], probs[rows].astype(np.float64), labels=range(len(CLASSES)))
    got = sklearn_metric(tmp_path, labels).score(labels.y[rows], probs[rows], index)
    assert got == pytest.approx(expected, rel=1e-12)


def test_repeats_get_a_number_before_id_and_group_in_both_frames(tmp_path, labels, probs):
    metric = sklearn_metric(tmp_path, labels, group_col="study")
    index = np.array([3, 1, 3, 3, 1])
    solution, submission = metric.frames(probs[index], index)
    assert list(solution["id"]) == list(submission["id"]) == ["00003", "00001", "1~00003", "2~00003", "1~00001"]
    assert list(solution["study"]) == ["100", "100", "1~100", "2~100", "1~100"]
    assert list(solution.columns) == ["id", "label", *CLASSES, "study"]


def test_a_group_column_the_solution_lacks_leaves_groups_alone(tmp_path, labels, probs):
    metric = sklearn_metric(tmp_path, labels, group_col="site")
    solution, _ = metric.frames(probs[[3, 3]], np.array([3, 3]))
    assert metric.group_col is None and list(solution["id"]) == ["00003", "1~00003"]


def test_a_solution_csv_is_aligned_to_the_labels_and_passed_through(tmp_path, labels, probs):
    order = np.random.default_rng(1).permutation(len(labels))
    written = pd.DataFrame({
        "row": labels.ids[order],
        "target": labels.frame["label"].to_numpy()[order],
        "sample_weight": np.linspace(0.5, 2.0, len(labels))[order],
    })
    written.to_csv(tmp_path / "solution.csv", index=False)
    metric = sklearn_metric(tmp_path, labels, solution=tmp_path / "solution.csv")
    solution, submission = metric.frames(probs[:3], np.arange(3))
    assert metric.id_col == "row" and list(submission.columns) == ["row", *CLASSES]
    assert list(solution["row"]) == ["00000", "00001", "00002"]
    assert solution["sample_weight"].dtype == np.float64
    np.testing.assert_allclose(solution["sample_weight"], np.linspace(0.5, 2.0, len(labels))[:3])


def test_a_metric_that_deletes_the_id_column_does_not_break_the_next_call(tmp_path, labels, probs):
    text = "higher_is_better = True\ndef score(solution, submission, row_id_column_name):\n" \
           "    del solution[row_id_column_name]\n    del submission[row_id_column_name]\n    return len(solution)\n"
    metric = load_metric_file(write(tmp_path / "d.py", text)).bind(labels, CLASSES)
    assert metric.score(None, probs, None) == metric.score(None, probs, None) == len(labels)


def test_a_helper_beside_the_file_imports_and_nothing_stays_behind(tmp_path, labels, probs):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "ens_test_helper_mod.py", "VALUE = 7.0\n")
    text = "import ens_test_helper_mod\ndef f(solution, submission, row_id_column_name):\n" \
           "    return ens_test_helper_mod.VALUE\n"
    path_before, modules_before = list(sys.path), set(sys.modules)
    metric = load_metric_file(f"{write(tmp_path / 'sub' / 'metric.py', text)}:f", higher_is_better=True)
    assert metric.bind(labels, CLASSES).score(None, probs, None) == 7.0
    assert sys.path == path_before
    added = set(sys.modules) - modules_before
    assert "metric" not in added and all(m.startswith("_ens_metric_") or m == "ens_test_helper_mod" for m in added)


# --- the example metric: repeated groups equal a materialised resample -----------------------------


def example_solution(tmp_path: Path, labels) -> Path:
    make_solution = runpy.run_path(str(EXAMPLE.with_name("make_solution.py")))["make_solution"]
    frame = make_solution(labels.frame, CLASSES, {"moderate": 2.0, "severe": 4.0}, id_col="id", label_col="label", group_col="study")
    frame.to_csv(tmp_path / "solution.csv", index=False)
    return tmp_path / "solution.csv"


def test_the_example_metric_terms_equal_sklearn(tmp_path, labels, probs):
    example = runpy.run_path(str(EXAMPLE))
    solution = pd.read_csv(example_solution(tmp_path, labels), dtype={"id": str})
    submission = pd.DataFrame(probs.astype(np.float64), columns=CLASSES)
    submission.insert(0, "id", solution["id"])
    weight = solution["sample_weight"].to_numpy()
    rows = log_loss(labels.y, probs.astype(np.float64), sample_weight=weight, labels=range(3))
    by_study = pd.DataFrame({"s": solution["study"], "p": probs[:, 0], "t": labels.y == 0, "w": weight}).groupby("s").max()
    groups = log_loss(by_study["t"], by_study["p"].astype(np.float64), sample_weight=by_study["w"], labels=[False, True])
    assert example["score"](solution, submission, "id") == pytest.approx((rows + groups) / 2, rel=1e-9)


def test_the_example_on_repeated_groups_equals_a_materialised_resample(tmp_path, labels, probs, rng):
    path = example_solution(tmp_path, labels)
    metric = load_metric_file(EXAMPLE).bind(labels, CLASSES, solution=path, group_col="study")
    studies = labels.frame["study"].to_numpy()
    drawn = rng.choice(np.unique(studies), size=20)  # with repeats, as a group bootstrap draws
    assert len(np.unique(drawn)) < len(drawn)
    index = np.concatenate([np.flatnonzero(studies == s) for s in drawn])

    # the oracle: copy c of a study gets new, unique ids and study names, built by hand
    written = pd.read_csv(path, dtype={"id": str})
    parts, seen = [], {}
    for s in drawn:
        copy = seen[s] = seen.get(s, -1) + 1
        part = written[written["study"] == int(s)].copy()
        part["id"] = part["id"] + f"#{copy}"
        part["study"] = f"{s}#{copy}"
        parts.append(part)
    solution = pd.concat(parts, ignore_index=True)
    submission = pd.DataFrame(probs[index].astype(np.float64), columns=CLASSES)
    submission.insert(0, "id", solution["id"])
    expected = runpy.run_path(str(EXAMPLE))["score"](solution, submission, "id")

    assert metric.higher_is_better is False
    assert metric.score(labels.y[index], probs[index], index) == pytest.approx(expected, rel=1e-12)
    # without keeping repeated studies apart the group term differs: the test can tell
    merged = load_metric_file(EXAMPLE).bind(labels, CLASSES, solution=path)
    assert merged.score(labels.y[index], probs[index], index) != pytest.approx(expected, rel=1e-9)


# --- resolve_metric --------------------------------------------------------------------------------


def test_resolve_gives_built_ins_and_bound_files(tmp_path, labels):
    assert resolve_metric("log_loss").higher_is_better is False
    assert resolve_metric("log_loss", higher_is_better=False).name == "log_loss"
    metric = resolve_metric(str(write(tmp_path / "ll.py", SKLEARN_LOG_LOSS)), labels=labels, classes=CLASSES)
    assert isinstance(metric, FileMetric) and metric.classes == tuple(CLASSES)


# --- every error is one line -----------------------------------------------------------------------


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def raises_line(fn, *args, error=MetricError, **kwargs) -> str:
    with pytest.raises(error) as e:
        fn(*args, **kwargs)
    return one_line(e)


def metric_returning(tmp_path: Path, labels, body: str) -> FileMetric:
    text = f"higher_is_better = True\ndef score(solution, submission, row_id_column_name):\n    {body}\n"
    return load_metric_file(write(tmp_path / "m.py", text)).bind(labels, CLASSES)


def test_an_exception_inside_the_metric_names_file_subset_and_exception(tmp_path, labels, probs, monkeypatch):
    monkeypatch.delenv("ENS_DEBUG", raising=False)
    metric = metric_returning(tmp_path, labels, "raise ValueError('boom\\nsecond line')")
    fold = np.flatnonzero(labels.folds == 2)
    text = raises_line(metric.score, None, probs[fold], fold, subset="on 20 rows (fold 2)")
    assert text == (
        f"{tmp_path / 'm.py'}:score raised ValueError on 20 rows (fold 2): boom; fix the metric file or the "
        "solution (ENS_DEBUG=1 shows the traceback)"
    )
    assert "raised ValueError on 60 rows:" in raises_line(metric.score, None, probs, None)


def test_ens_debug_re_raises_the_original_exception(tmp_path, labels, probs, monkeypatch):
    monkeypatch.setenv("ENS_DEBUG", "1")
    metric = metric_returning(tmp_path, labels, "raise KeyError('sample_weight')")
    with pytest.raises(KeyError, match="sample_weight"):
        metric.score(None, probs, None)


@pytest.mark.parametrize("body, shown", [
    ("return float('nan')", "returned nan on 60 rows; a score must be finite"),
    ("return float('-inf')", "returned -inf on 60 rows; a score must be finite"),
    ("return 'a string'", "returned str 'a string' on 60 rows; it must return one number"),
    ("return None", "returned NoneType None on 60 rows; it must return one number"),
    ("return True", "returned bool True on 60 rows; it must return one number"),
])
def test_a_result_that_is_not_a_finite_number_is_one_line(tmp_path, labels, probs, body, shown):
    text = raises_line(metric_returning(tmp_path, labels, body).score, None, probs, None)
    assert text.startswith(f"{tmp_path / 'm.py'}:score {shown}")


def test_numpy_results_are_numbers(tmp_path, labels, probs):
    assert metric_returning(tmp_path, labels, "import numpy as np; return np.float32(0.5)").score(None, probs) == 0.5
    assert metric_returning(tmp_path, labels, "import numpy as np; return np.array(2)").score(None, probs) == 2.0


def test_loading_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("ENS_DEBUG", raising=False)
    missing = tmp_path / "nope.py"
    assert raises_line(load_metric_file, missing) == (
        f"{missing}: no such metric file; give a Python file that defines score(solution, submission, row_id_column_name)"
    )
    good = write(tmp_path / "good.py", "higher_is_better = True\ndef other(a, b, c):\n    return 1.0\nSCORE = 3\n")
    assert raises_line(load_metric_file, good) == (
        f"{good}: defines no function 'score' (functions: other); name the scoring function with {good}:FUNCTION"
    )
    assert raises_line(load_metric_file, f"{good}:SCORE") == (
        f"{good}: 'SCORE' is a int, not a function; name the scoring function with {good}:FUNCTION"
    )
    assert raises_line(load_metric_file, f"{good}:1x") == f"{good}:1x: '1x' is not a function name; write path/to/metric.py:function"
    bad = write(tmp_path / "bad.py", "def score(:\n")
    assert raises_line(load_metric_file, bad).startswith(f"{bad}: syntax error at line 1: ")
    failing = write(tmp_path / "failing.py", "import ens_no_such_module_here\n")
    assert raises_line(load_metric_file, failing) == (
        f"{failing}: importing it raised ModuleNotFoundError: No module named 'ens_no_such_module_here'; fix the "
        "file or install what it imports (ENS_DEBUG=1 shows the traceback)"
    )


def test_the_direction_is_required_and_checked(tmp_path):
    plain = write(tmp_path / "plain.py", "def score(a, b, c):\n    return 1.0\n")
    assert raises_line(load_metric_file, plain) == (
        f"{plain}: no direction (no `higher_is_better` in the file); pass --higher-is-better or "
        "--lower-is-better, or set higher_is_better = True/False in the file"
    )
    assert load_metric_file(plain, higher_is_better=False).higher_is_better is False
    odd = write(tmp_path / "odd.py", "higher_is_better = 'yes'\ndef score(a, b, c):\n    return 1.0\n")
    assert raises_line(load_metric_file, odd) == f"{odd}: higher_is_better = 'yes'; set it to True or False"
    declared = write(tmp_path / "declared.py", "higher_is_better = True\ndef score(a, b, c):\n    return 1.0\n")
    assert raises_line(load_metric_file, declared, higher_is_better=False) == (
        f"{declared} sets higher_is_better = True but --lower-is-better was given; drop the flag or fix the file"
    )


def test_solution_errors_are_one_line(tmp_path, labels):
    mf = load_metric_file(write(tmp_path / "ll.py", SKLEARN_LOG_LOSS))
    sol = tmp_path / "solution.csv"

    def bind_with(frame: pd.DataFrame, **kw) -> str:
        frame.to_csv(sol, index=False)
        return raises_line(mf.bind, labels, CLASSES, solution=sol, **kw)

    ids = list(labels.ids)
    assert bind_with(pd.DataFrame({"id": ids[2:], "w": 1})) == (
        f"{sol}: 2 labelled ids are missing from 'id' (\"00000\", \"00001\"); give a solution row for every id "
        f"of {labels.source}"
    )
    assert bind_with(pd.DataFrame({"id": [*ids, "x1"], "w": 1})) == (
        f"{sol}: 1 solution ids are not in {labels.source} (\"x1\"); give the solution of the labelled rows "
        "only, or check --solution-id-col"
    )
    assert bind_with(pd.DataFrame({"id": [*ids, ids[0]], "w": 1})) == (
        f"{sol}: ids \"00000\" appear more than once in 'id'; give one solution row per id"
    )
    assert bind_with(pd.DataFrame({"id": ids}), solution_id_col="row") == (
        f"{sol}: no row id column 'row' (columns: id); name it with --solution-id-col"
    )
    assert raises_line(mf.bind, labels, CLASSES, solution=tmp_path / "none.csv") == (
        f"{tmp_path / 'none.csv'}: no such solution CSV; give the labelled rows' solution in the competition's format"
    )
    assert raises_line(mf.bind, labels, CLASSES, solution_id_col="row") == (
        "--solution-id-col 'row' given without --solution; give the solution CSV or drop it"
    )


def test_a_solution_from_labels_needs_labels_the_classes_know(tmp_path, labels):
    mf = load_metric_file(write(tmp_path / "ll.py", SKLEARN_LOG_LOSS))
    assert raises_line(mf.bind, labels, ["severe", "normal", "mild"]).startswith(
        f"{labels.source}: labels \"moderate\" are not among the classes (\"severe\", \"normal\", \"mild\"); give --solution"
    )
    assert raises_line(mf.bind, labels, ["label", "severe", "normal", "moderate"]) == (
        f"{labels.source}: class 'label' has the name of a solution column; give --solution"
    )
    unlabelled = read_labels(labels.source, require=(), columns=type(labels.columns)(label="grade"))
    assert raises_line(mf.bind, unlabelled, CLASSES) == (
        f"{labels.source}: no label column 'grade' to build the metric's solution from; give --solution or name "
        "the column with --label-col"
    )


def test_resolve_errors_are_one_line(tmp_path, labels):
    path = str(write(tmp_path / "ll.py", SKLEARN_LOG_LOSS))
    assert raises_line(resolve_metric, path) == (
        f"{path}: a metric file needs the labels (their ids and classes) to build its solution and submission "
        "frames; give the labels CSV"
    )
    assert raises_line(resolve_metric, "log_loss", higher_is_better=True) == (
        "--higher-is-better contradicts the built-in metric 'log_loss', which is lower is better; drop the flag"
    )
    assert raises_line(resolve_metric, "log_loss", solution="s.csv") == (
        "--solution is read by a metric file (path/to/metric.py) only; the built-in metric 'log_loss' scores "
        "the labels directly: drop --solution or give the metric file"
    )
    text = raises_line(resolve_metric, "no_such_metric", error=UnknownNameError)
    assert text.startswith("unknown metric 'no_such_metric'; choose one of: ")
    assert text.endswith("; or give a competition metric file, path/to/metric.py[:function]")


def test_bad_rows_or_shapes_are_one_line(tmp_path, labels, probs):
    metric = sklearn_metric(tmp_path, labels)
    assert raises_line(metric.score, None, probs[:2], np.array([0, 60])) == (
        f"{metric.name}: row numbers outside 0..59; index the 60 labelled rows"
    )
    assert raises_line(metric.score, None, probs[:2], np.array([0])) == (
        f"{metric.name}: probabilities of shape (2, 3) for 1 rows of 3 classes; give one row per index and one "
        "column per class"
    )


def test_groups_read_from_the_id_prefix_stay_apart_under_repeats(tmp_path):
    pd.DataFrame({"id": ["s1_a", "s1_b", "s2_a"], "label": ["x", "y", "x"]}).to_csv(tmp_path / "l.csv", index=False)
    labels = read_labels(tmp_path / "l.csv")
    text = "higher_is_better = True\ndef score(solution, submission, row_id_column_name):\n" \
           "    return solution[row_id_column_name].str.split('_').str[0].nunique()\n"
    metric = load_metric_file(write(tmp_path / "studies.py", text)).bind(labels, ["x", "y"])
    index = np.array([0, 1, 0, 1, 2])  # study s1 drawn twice, s2 once: three studies
    assert metric.score(None, np.full((5, 2), 0.5, dtype=np.float32), index) == 3.0


def test_ens_debug_re_raises_an_import_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ENS_DEBUG", "1")
    with pytest.raises(ModuleNotFoundError):
        load_metric_file(write(tmp_path / "failing.py", "import ens_no_such_module_here\n"))
