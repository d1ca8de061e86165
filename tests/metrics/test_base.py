"""The Metric shape: direction helpers and the bootstrap budget of metrics that run user code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.labels import Labels
from ensemble.metrics import get_metric
from ensemble.metrics.file import load_metric_file


def test_metric_files_default_to_fewer_resamples_built_ins_to_the_full_count(tmp_path):
    (tmp_path / "m.py").write_text("higher_is_better = False\n\ndef score(solution, submission, row_id_column_name):\n    return 1.0\n")
    ids = np.array(["a", "b"], dtype=object)
    lab = Labels(ids, ["x", "y"], np.array([0, 1]), None, None, pd.DataFrame({"id": ids}), Path("t.csv"),
                 raw_labels=np.array(["x", "y"], dtype=object))
    user = load_metric_file(tmp_path / "m.py").bind(lab, ["x", "y"])
    built_in = get_metric("log_loss")
    assert built_in.resamples(None, 1000) == 1000 and user.resamples(None, 1000) == user.USER_CODE_RESAMPLES < 1000
    assert user.resamples(700, 1000) == 700 and built_in.resamples(5, 1000) == 5  # an explicit count wins
    assert user.better(0.1, 0.2) and not built_in.better(0.3, 0.2) and get_metric("qwk").better(0.3, 0.2)
