"""The peer of `ens blend --method weighted` in `bench_cli.py`: a plain numpy Caruana script, as a
Kaggler writes it: read every member's oof.csv and test.csv with pandas, 100 rounds of greedy
selection with replacement on OOF macro-F1 (best round kept, no nested estimate), write the blend.

Usage:

    python benchmarks/caruana_numpy.py LABELS.csv OUT_DIR PRED_DIR...
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp, pc, tc = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    denom = pc + tc
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return float(f1.sum() / max((denom > 0).sum(), 1))


def main() -> None:
    labels_path, out, *dirs = sys.argv[1:]
    labels = pd.read_csv(labels_path, dtype={"id": str})
    oofs = [pd.read_csv(Path(d) / "oof.csv", dtype={"id": str}).set_index("id") for d in dirs]
    tests = [pd.read_csv(Path(d) / "test.csv", dtype={"id": str}).set_index("id") for d in dirs]
    classes = list(oofs[0].columns)
    X = np.stack([o.loc[labels["id"]].to_numpy(np.float32) for o in oofs], axis=1)  # (n, M, C)
    y = labels["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    n_classes = len(classes)
    S = np.zeros((X.shape[0], n_classes), dtype=np.float32)
    counts = np.zeros(X.shape[1])
    best, best_counts = -1.0, counts
    for _ in range(100):
        scores = [macro_f1(y, (S + X[:, m]).argmax(axis=1), n_classes) for m in range(X.shape[1])]
        m = int(np.argmax(scores))
        S += X[:, m]
        counts[m] += 1
        if scores[m] > best:
            best, best_counts = scores[m], counts.copy()
    w = best_counts / best_counts.sum()
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, tables in (("oof", oofs), ("test", tests)):
        blend = sum(wi * t.to_numpy(np.float32) for wi, t in zip(w, tables))
        pd.DataFrame(blend, index=tables[0].index, columns=classes).to_csv(Path(out) / f"{name}.csv", float_format="%.9g")
    print(f"macro-F1 {best:.4f}")


if __name__ == "__main__":
    main()
