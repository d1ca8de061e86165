"""Multi-label folds: per-class balance of `ens folds --method multilabel-stratified` beside KFold.

A seeded skewed multi-label problem (class positive rates falling as a power law, a few per cent
for the rarest classes, as in ChestX-ray14) is split into K folds three ways: a plain shuffled
KFold (what `--method kfold` gives), `multilabel-stratified` (iterative stratification by the
iterative-stratification package) and `multilabel-stratified-group` (whole groups of rows, e.g.
patients). For each we print the worst and the mean per-class relative deviation of a fold's
positive count from the even share, |positives in fold - positives / K| / (positives / K), and the
folds' row counts. Fold assignment time is printed, not asserted.

    .venv/bin/python benchmarks/bench_folds_multilabel.py [--rows 20000 --classes 20 --folds 5 --seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from ensemble.folds import make_folds


def problem(rows: int, classes: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rates = 0.4 / np.arange(1, classes + 1) ** 1.2  # 0.40 ... ~0.01
    Y = (rng.random((rows, classes)) < rates).astype(np.uint8)
    names = [f"c{j:02d}" for j in range(classes)]
    labels = ["|".join(n for n, v in zip(names, row) if v) for row in Y]
    groups = rng.integers(0, rows // 4, rows).astype(str)  # ~4 rows per patient
    return pd.DataFrame({"id": np.arange(rows).astype(str), "label": labels, "patient": groups}), Y


def deviation(Y: np.ndarray, folds: np.ndarray, k: int) -> tuple[float, float]:
    """(worst, mean) over (fold, class) of |positives - even share| / even share."""
    per_fold = np.stack([Y[folds == f].sum(axis=0) for f in range(k)])  # (K, C)
    even = Y.sum(axis=0) / k
    rel = np.abs(per_fold - even) / np.maximum(even, 1e-12)
    return float(rel.max()), float(rel.mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    frame, Y = problem(a.rows, a.classes, a.seed)
    print(f"{a.rows} rows x {a.classes} classes, positives per class {Y.sum(0).min()}..{Y.sum(0).max()}, {a.folds} folds")
    kfold = np.empty(a.rows, dtype=np.int64)
    for f, (_, val) in enumerate(KFold(a.folds, shuffle=True, random_state=a.seed).split(Y)):
        kfold[val] = f
    runs = {"kfold (sklearn KFold)": (kfold, 0.0)}
    for method, extra in (("multilabel-stratified", {}), ("multilabel-stratified-group", {"group_col": "patient"})):
        t0 = time.perf_counter()
        folds = make_folds(frame, method=method, n_splits=a.folds, seed=a.seed, **extra)
        runs[method] = (folds, time.perf_counter() - t0)
    print(f"{'method':32s} {'worst dev':>10s} {'mean dev':>10s} {'fold rows':>28s} {'time s':>8s}")
    for name, (folds, secs) in runs.items():
        worst, mean = deviation(Y, folds, a.folds)
        sizes = np.bincount(folds, minlength=a.folds)
        print(f"{name:32s} {worst:10.2%} {mean:10.2%} {str(sizes.tolist()):>28s} {secs:8.2f}")


if __name__ == "__main__":
    main()
