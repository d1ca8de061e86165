"""Build a solution CSV for examples/metrics/weighted_logloss_any.py from a labels CSV.

Writes: the id column, one 0/1 column per class (in --classes order), `sample_weight` (by class,
from --weights) and the group column copied from the labels.

Usage: python examples/metrics/make_solution.py train.csv solution.csv --classes normal,moderate,severe
       [--weights normal=1,moderate=2,severe=4] [--id-col id] [--label-col label] [--group-col study]
"""

from __future__ import annotations

import argparse

import pandas as pd


def make_solution(
    labels: pd.DataFrame, classes: list[str], weights: dict[str, float], *, id_col: str, label_col: str, group_col: str
) -> pd.DataFrame:
    """The solution frame of `labels` (every cell a string, as read with dtype=str)."""
    unknown = sorted(set(labels[label_col]) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among --classes {classes}")
    out = pd.DataFrame({id_col: labels[id_col]})
    for c in classes:
        out[c] = (labels[label_col] == c).astype(int)
    out["sample_weight"] = labels[label_col].map(lambda c: weights.get(c, 1.0))
    out[group_col] = labels[group_col]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("out")
    parser.add_argument("--classes", required=True, help="comma-separated class names")
    parser.add_argument("--weights", default="", help="class=weight pairs, comma-separated (default 1)")
    parser.add_argument("--id-col", default="id")
    parser.add_argument("--label-col", default="label")
    parser.add_argument("--group-col", default="study")
    args = parser.parse_args()
    weights = {k: float(v) for k, v in (pair.split("=") for pair in args.weights.split(",") if pair)}
    labels = pd.read_csv(args.labels, dtype=str, keep_default_na=False)
    solution = make_solution(
        labels, args.classes.split(","), weights, id_col=args.id_col, label_col=args.label_col, group_col=args.group_col
    )
    solution.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
