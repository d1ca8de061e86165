"""Score every submission of the mosaics example against the held-back test labels.

The "private leaderboard" of the multi-label example, computed independently of ens: each
submission's space-separated sets and the held-back `3|7` label cells become indicator matrices,
scored with sklearn's f1_score(average="macro"). Printed beside each blend's recorded in-sample
and nested estimates (and, for the single models, their tables decided at 0.5), so you can see
whether tuning thresholds paid on rows no fit has seen.

Usage: python examples/mosaics/private_score.py WORK_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

SUBMISSION_SEP, LABEL_SEP = " ", "|"


def indicators(cells: pd.Series, classes: list[str], sep: str) -> np.ndarray:
    """Label cells (classes joined by `sep`; empty for none) -> an indicator matrix (n, C) uint8."""
    y = np.zeros((len(cells), len(classes)), dtype=np.uint8)
    col = {c: j for j, c in enumerate(classes)}
    for i, cell in enumerate(cells.fillna("").astype(str)):
        for name in filter(None, cell.split(sep)):
            y[i, col[name]] = 1
    return y


def read_frame(path: Path, index: pd.Index | None = None) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False).set_index("id")
    return frame if index is None else frame.reindex(index)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, average="macro", zero_division=0))


def main(work: Path) -> None:
    truth = read_frame(work / "test_labels.csv")["label"].astype(str)
    train = read_frame(work / "train.csv")["label"].astype(str)
    rows = []
    for test in sorted((work / "preds").glob("*/test.csv")):  # each single model at 0.5, for comparison
        probs = read_frame(test, truth.index)
        classes = list(probs.columns)
        oof = read_frame(test.with_name("oof.csv"))
        rows.append({
            "candidate": f"model {test.parent.name} @0.5",
            "oof_f1": macro_f1(indicators(train.reindex(oof.index), classes, LABEL_SEP), oof.to_numpy() > 0.5),
            "nested_f1": np.nan,
            "private_f1": macro_f1(indicators(truth, classes, LABEL_SEP), probs.to_numpy() > 0.5),
        })
    for sub in sorted((work / "submissions").glob("*.csv")):
        blend = work / "blends" / sub.stem
        recipe = json.loads((blend / "recipe.json").read_text())
        classes = [str(c) for c in recipe["classes"]]
        pred = read_frame(sub, truth.index)["label"]
        if pred.isna().any():
            raise SystemExit(f"{sub}: {int(pred.isna().sum())} test ids missing from the submission")
        # a tuned blend's tables are moved so that each threshold sits at 0.5: p > 0.5 is its decision
        oof = read_frame(blend / "oof.csv")
        rows.append({
            "candidate": f"blend {sub.stem}",
            "oof_f1": macro_f1(indicators(train.reindex(oof.index), classes, LABEL_SEP), oof[classes].to_numpy() > 0.5),
            "nested_f1": recipe["scores"].get("nested"),  # the recipe's metric is macro_f1 here
            "private_f1": macro_f1(indicators(truth, classes, LABEL_SEP), indicators(pred, classes, SUBMISSION_SEP)),
        })
    table = pd.DataFrame(rows).sort_values("private_f1", ascending=False)
    print(f"private leaderboard ({len(truth)} held-back test mosaics, sklearn f1_score average='macro' on indicator "
          "matrices; OOF scores recomputed with sklearn too, at 0.5 on each table):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))
    board = table.set_index("candidate")["private_f1"]
    if {"blend soft", "blend weighted_thr"} <= set(board.index):
        soft, tuned = board["blend soft"], board["blend weighted_thr"]
        print(f"held-back rows: soft average at 0.5 {soft:.4f}, weighted blend with tuned per-class thresholds "
              f"{tuned:.4f} ({tuned - soft:+.4f})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "work"))
