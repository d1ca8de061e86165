"""An example competition metric in Kaggle's format: weighted log loss plus an "any severe" group term.

The setting: each row is one finding (e.g. one level of one spine study), graded into classes, and
rows belong to groups (the studies). The solution holds, per row id: one 0/1 column per class,
`sample_weight` (optional, 1 when absent) and the group column `study`. The submission holds one
probability column per class.

score = (row term + group term) / 2, lower is better:

- row term: the sample-weighted multi-class log loss, sum_i w_i * -log p_i[y_i] / sum_i w_i, after
  each submission row is renormalised to sum to 1 and clipped to [1e-15, 1 - 1e-15];
- group term: per study, the truth is whether any of its rows is in a SEVERE class, the prediction
  is the largest severe probability over its rows (each row's severe columns summed); a binary log
  loss over studies, each weighted by the largest sample weight among its rows.

Use: ens blend ... --metric examples/metrics/weighted_logloss_any.py --solution solution.csv
--group-col study (make solution.csv with examples/metrics/make_solution.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

higher_is_better = False

GROUP_COLUMN = "study"
SEVERE = ("severe",)
EPS = 1e-15


class ParticipantVisibleError(Exception):
    """A problem with the submission that the participant may see."""


def score(solution: pd.DataFrame, submission: pd.DataFrame, row_id_column_name: str) -> float:
    """The weighted log loss with the "any severe" group term (see the module docstring)."""
    sol = solution.set_index(row_id_column_name)
    sub = submission.set_index(row_id_column_name)
    if sub.index.has_duplicates or len(sub) != len(sol) or not sub.index.isin(sol.index).all():
        raise ParticipantVisibleError("the submission's row ids are not the solution's, once each")
    sub = sub.loc[sol.index]
    classes = list(sub.columns)
    missing = [c for c in [*classes, GROUP_COLUMN] if c not in sol.columns]
    if missing:
        raise ParticipantVisibleError(f"the solution has no column {missing[0]!r}")
    severe = [classes.index(c) for c in SEVERE if c in classes]
    if not severe:
        raise ParticipantVisibleError(f"no severe class {SEVERE} among the submission's columns")

    probs = sub.to_numpy(dtype=np.float64)
    probs = np.clip(probs / probs.sum(axis=1, keepdims=True), EPS, 1 - EPS)
    truth = sol[classes].to_numpy(dtype=np.float64)
    weight = sol["sample_weight"].to_numpy(dtype=np.float64) if "sample_weight" in sol else np.ones(len(sol))
    row_term = np.sum(weight * -np.log((probs * truth).sum(axis=1))) / weight.sum()

    rows = pd.DataFrame({
        "group": sol[GROUP_COLUMN].to_numpy(),
        "pred": probs[:, severe].sum(axis=1),
        "true": truth[:, severe].sum(axis=1) > 0,
        "weight": weight,
    })
    groups = rows.groupby("group", sort=False).max()
    pred = np.clip(groups["pred"].to_numpy(dtype=np.float64), EPS, 1 - EPS)
    true = groups["true"].to_numpy(dtype=np.float64)
    group_weight = groups["weight"].to_numpy(dtype=np.float64)
    group_loss = -(true * np.log(pred) + (1 - true) * np.log(1 - pred))
    group_term = np.sum(group_weight * group_loss) / group_weight.sum()
    return float((row_term + group_term) / 2)
