"""A competition metric file on multi-label labels: the default solution frame of label sets, the
submission of per-class probabilities, the task, and bootstraps, against scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from ensemble.bootstrap import bootstrap_metric
from ensemble.errors import EnsembleError
from ensemble.labels import read_labels
from ensemble.metrics.file import load_metric_file, resolve_metric

CLASSES = ["effusion", "atelectasis", "mass"]  # not sorted: a column mix-up cannot pass unnoticed

SAMPLES_F1 = '''
import numpy as np
from sklearn.metrics import f1_score
higher_is_better = True

def score(solution, submission, row_id_column_name):
    assert list(solution[row_id_column_name]) == list(submission[row_id_column_name])
    classes = [c for c in submission.columns if c != row_id_column_name]
    # the label column and the 0/1 columns say the same thing
    sets = solution["label"].map(lambda s: set(s.split("|")) if s else set())
    assert all(sets[i] == {c for c in classes if solution[c][i] == 1} for i in range(len(solution)))
    return f1_score(solution[classes].to_numpy(), submission[classes].to_numpy() > 0.5, average="samples", zero_division=0)
'''


@pytest.fixture
def labels(tmp_path: Path, rng: np.random.Generator):
    n = 40
    y = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    cells = ["|".join(c for c, hit in zip(CLASSES[::-1], row[::-1]) if hit) for row in y]  # written in another order
    frame = pd.DataFrame({"id": [f"{i:04d}" for i in range(n)], "label": cells, "patient": np.arange(n) // 4})
    frame.to_csv(tmp_path / "train.csv", index=False)
    return read_labels(tmp_path / "train.csv", classes=CLASSES, task="multilabel"), y


@pytest.fixture
def metric_file(tmp_path: Path):
    (tmp_path / "samples.py").write_text(SAMPLES_F1)
    return load_metric_file(tmp_path / "samples.py")


def test_the_default_solution_holds_the_label_sets_and_one_column_per_class(labels, metric_file, rng):
    lab, y = labels
    metric = metric_file.bind(lab, CLASSES)
    assert metric.task == "multilabel"
    probs = rng.random((len(lab), 3)).astype(np.float32)
    solution, submission = metric.frames(probs)
    assert list(solution.columns) == ["id", "label", *CLASSES] and list(submission.columns) == ["id", *CLASSES]
    np.testing.assert_array_equal(solution[CLASSES].to_numpy(), y)
    assert (solution[CLASSES].dtypes == np.int64).all()
    expected = ["|".join(c for c, hit in zip(CLASSES, row) if hit) for row in y]  # class order, "" for none
    assert solution["label"].tolist() == expected and "" in expected
    np.testing.assert_array_equal(submission[CLASSES].to_numpy(), probs.astype(np.float64))
    assert metric.score(y, probs) == pytest.approx(f1_score(y, probs > 0.5, average="samples", zero_division=0))


def test_the_solution_follows_the_tables_class_order_and_the_label_sep(tmp_path, rng, metric_file):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "label": ["mass;effusion", "", "atelectasis"]})
    frame.to_csv(tmp_path / "semi.csv", index=False)
    from ensemble.columns import Columns

    lab = read_labels(tmp_path / "semi.csv", task="multilabel", columns=Columns(label_sep=";"))
    metric = metric_file.bind(lab, CLASSES)  # the labels' own classes are sorted; the tables' order wins
    solution, _ = metric.frames(np.zeros((3, 3)))
    assert solution["label"].tolist() == ["effusion;mass", "", "atelectasis"]
    np.testing.assert_array_equal(solution[CLASSES].to_numpy(), [[1, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_resolve_metric_binds_a_file_for_the_tables_task(labels, metric_file, tmp_path):
    lab, y = labels
    metric = resolve_metric(str(tmp_path / "samples.py"), labels=lab, classes=CLASSES, task="multilabel")
    assert (metric.task, metric.higher_is_better) == ("multilabel", True)
    assert resolve_metric("map", task="multilabel").task == "multilabel"


def test_a_label_outside_the_classes_is_refused(labels, metric_file):
    lab, _ = labels
    with pytest.raises(EnsembleError, match="are not among the 2 classes"):
        metric_file.bind(lab, CLASSES[:2])


def test_a_bootstrap_of_a_multilabel_metric_file_scores_whole_groups(labels, metric_file, rng):
    lab, y = labels
    metric = metric_file.bind(lab, CLASSES, group_col="patient")
    probs = np.clip(0.4 * y + 0.6 * rng.random(y.shape), 0, 1).astype(np.float32)
    groups = lab.groups("patient")
    scores = bootstrap_metric(metric, y, probs, n_boot=6, seed=4, groups=groups)
    hand = np.random.default_rng(4)
    names = np.unique(groups)
    for b in range(6):  # the documented group resamples, scored by sklearn
        drawn = hand.integers(0, len(names), size=len(names))
        rows = np.concatenate([np.flatnonzero(groups == names[g]) for g in drawn])
        expected = f1_score(y[rows], probs[rows] > 0.5, average="samples", zero_division=0)
        assert scores[b] == pytest.approx(expected)
