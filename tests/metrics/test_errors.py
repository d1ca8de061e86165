"""Every user-facing error of the metrics and the bootstrap: one line naming the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ensemble.bootstrap import bootstrap_metric, bootstrap_metric_ci, bootstrap_scores
from ensemble.errors import MetricError
from ensemble.labels import Labels
from ensemble.metrics import accuracy, macro_f1
from ensemble.metrics.file import load_metric_file

PROBS = np.full((4, 2), 0.5, dtype=np.float32)
Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("call,message", [
    (lambda: bootstrap_metric("log_loss", np.zeros((2, 2), dtype=int), PROBS[:2]), "expected labels of shape (n_samples,), n >= 1"),
    (lambda: bootstrap_metric("log_loss", np.array([], dtype=int), PROBS[:0]), "expected labels of shape (n_samples,), n >= 1"),
    (lambda: bootstrap_metric_ci("log_loss", Y, PROBS, alpha=1.5), "give a level between 0 and 1 (0.05 for a 95% interval)"),
    (lambda: bootstrap_scores(Y, np.zeros((2, 3), dtype=int), n_classes=2), "expected (n,) and (n,) or (k, n)"),
    (lambda: bootstrap_scores(np.array([], dtype=int), np.array([], dtype=int), n_classes=2), "no samples: y_true is empty"),
    (lambda: bootstrap_scores(Y.astype(float), Y, n_classes=2), "have dtype float64; expected integer class indices"),
    (lambda: macro_f1(np.array([], dtype=int), PROBS[:0]), "no samples: y_true is empty"),
    (lambda: macro_f1(np.array([], dtype=int), np.array([], dtype=int)), "no samples: y_true is empty"),
    (lambda: macro_f1(Y[:, None], Y), "has shape (4, 1); expected labels of shape (n_samples,)"),
    (lambda: accuracy(np.array([], dtype=int), np.array([], dtype=int), n_classes=2), "no samples: y_true is empty"),
])
def test_metric_input_errors_are_one_line(call, message):
    with pytest.raises(MetricError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_class_named_like_the_solutions_id_column_is_refused(tmp_path):
    (tmp_path / "m.py").write_text("higher_is_better = True\n\ndef score(solution, submission, row_id_column_name):\n    return 1.0\n")
    ids = np.array(["a", "b"], dtype=object)
    lab = Labels(ids, ["id", "other"], np.array([0, 1]), None, None, pd.DataFrame({"id": ids}), Path(tmp_path / "train.csv"))
    (tmp_path / "solution.csv").write_text("id,target\na,1\nb,0\n")
    with pytest.raises(MetricError, match="the row id column 'id' is also a class name; rename the id column"):
        load_metric_file(tmp_path / "m.py").bind(lab, ["id", "other"], solution=tmp_path / "solution.csv")
