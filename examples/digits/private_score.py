"""Score every submission of the digits example against the held-back test labels.

This is the "private leaderboard" the user never sees in a real competition: an independent
sklearn computation, printed beside each blend's OOF estimates so you can see whether the OOF
ranking held. Usage: python examples/digits/private_score.py WORK_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score


def main(work: Path) -> None:
    truth = pd.read_csv(work / "test_labels.csv", dtype=str).set_index("id")["label"]
    rows = []
    for test in sorted((work / "preds").glob("*/test.csv")):  # each single model, for comparison
        probs = pd.read_csv(test, dtype={"id": str}).set_index("id")
        pred = probs.idxmax(axis=1).reindex(truth.index)
        oof = pd.read_csv(test.with_name("oof.csv"), dtype={"id": str}).set_index("id")
        train = pd.read_csv(work / "train.csv", dtype={"id": str}).set_index("id")["label"].reindex(oof.index)
        rows.append({
            "candidate": f"model {test.parent.name}",
            "oof_f1": f1_score(train, oof.idxmax(axis=1), average="macro"),
            "nested_f1": None,
            "private_f1": f1_score(truth, pred, average="macro"),
            "private_acc": accuracy_score(truth, pred),
        })
    for sub in sorted((work / "submissions").glob("*.csv")):
        pred = pd.read_csv(sub, dtype=str).set_index("id")["label"].reindex(truth.index)
        if pred.isna().any():
            raise SystemExit(f"{sub}: {int(pred.isna().sum())} test ids missing from the submission")
        recipe = json.loads((work / "blends" / sub.stem / "recipe.json").read_text())["scores"]
        oof = pd.read_csv(work / "blends" / sub.stem / "oof.csv", dtype={"id": str}).set_index("id")
        train = pd.read_csv(work / "train.csv", dtype={"id": str}).set_index("id")["label"].reindex(oof.index)
        rows.append({
            "candidate": f"blend {sub.stem}",
            "oof_f1": f1_score(train, oof.idxmax(axis=1), average="macro"),
            "nested_f1": recipe.get("nested"),  # the recipe's metric is macro_f1 here
            "private_f1": f1_score(truth, pred, average="macro"),
            "private_acc": accuracy_score(truth, pred),
        })
    table = pd.DataFrame(rows).sort_values("private_f1", ascending=False)
    print(f"private leaderboard ({len(truth)} held-back test images, sklearn f1_score average='macro'; "
          "OOF scores recomputed with sklearn too):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "work"))
