"""Multi-label thresholds: fit time beside a naive scikit-learn grid, and in-sample vs nested scores.

On a seeded synthetic multi-label problem (benchmarks/synthetic.py: sigmoid members whose 0.5 is
the wrong threshold for rare classes), in one process:

1. Fit time of `--tune-thresholds` for macro-F1 on the soft blend of all members (the blend itself
   included): per-class (the exact vectorised sweep), global, and the coupled micro/samples-F1
   coordinate ascents. The peer is what a notebook does: for each class, a grid of 99 thresholds
   (0.01 ... 0.99), each scored with `sklearn.metrics.f1_score`. Both F1s are printed (the sweep is
   exact over every distinct cut, so it is never below the grid's in-sample).
2. In-sample vs nested 5-fold scores (macro-F1, `ensemble.metrics` registry = sklearn) of soft@0.5,
   soft + per-class thresholds, weighted@0.5 and weighted + per-class thresholds, as `ens blend`
   fits them (every threshold refitted inside each nested fold).

    .venv/bin/python benchmarks/bench_thresholds.py [--models 20 --rows 20000 --classes 20 --seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import f1_score

from ensemble.blend import methods as M
from ensemble.blend import nested as N
from ensemble.blend.thresholds import fit_thresholds, shift
from ensemble.metrics import get_metric
from synthetic import make_multilabel_problem  # benchmarks/synthetic.py (run as python benchmarks/bench_thresholds.py)

ML = "multilabel"


def best_of(fn, repeat: int = 5) -> tuple[float, object]:
    """Minimum wall time of `repeat` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def sklearn_grid(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The peer: per class, the best of 99 thresholds by sklearn's f1_score."""
    grid = np.linspace(0.01, 0.99, 99)
    out = np.empty(P.shape[1])
    for c in range(P.shape[1]):
        scores = [f1_score(Y[:, c], P[:, c] > t, zero_division=0) for t in grid]
        out[c] = grid[int(np.argmax(scores))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    p = make_multilabel_problem(a.models, a.rows, a.classes, seed=a.seed)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))  # (n, M, C)
    Y, C = p.y, a.classes
    macro = get_metric("macro_f1", ML)
    print(f"{a.models} models x {a.rows} rows x {C} classes (positive rates {Y.mean(0).min():.3f} - {Y.mean(0).max():.3f})")

    print("\n1. threshold fit time (soft blend of all members + fit, best of 5)")
    blend_t, P = best_of(lambda: M.soft(X, np.ones(a.models), ML))
    rows = []
    for name, metric, mode in [("macro_f1", macro, "per-class"), ("macro_f1", macro, "global"),
                               ("micro_f1", get_metric("micro_f1", ML), "per-class"),
                               ("samples_f1", get_metric("samples_f1", ML), "per-class")]:
        t, thr = best_of(lambda: fit_thresholds(P, Y, metric, mode=mode))
        rows.append((f"{name} {mode}", blend_t + t, metric.score(Y, shift(P, thr)), metric.score(Y, P)))
    peer_t, peer = best_of(lambda: sklearn_grid(P, Y), repeat=1)
    peer_f1 = f1_score(Y, P > peer, average="macro", zero_division=0)
    print(f"  {'fit':<26} {'seconds':>8} {'F1 tuned':>9} {'F1 @0.5':>8}")
    for name, t, tuned, base in rows:
        print(f"  {'ens ' + name:<26} {t:8.3f} {tuned:9.4f} {base:8.4f}")
    print(f"  {'sklearn grid per-class':<26} {peer_t:8.3f} {peer_f1:9.4f}")
    print(f"  ratio (sklearn grid / ens macro_f1 per-class): {peer_t / rows[0][1]:.0f}x")

    print("\n2. in-sample vs nested 5-fold macro-F1 (thresholds refitted in every nested fold)")
    print(f"  {'blend':<32} {'in-sample':>9} {'nested':>8} {'fit+nested s':>12}")
    for method, mode in [("soft", "none"), ("soft", "per-class"), ("weighted", "none"), ("weighted", "per-class")]:
        spec = M.Spec(metric=macro, task=ML, thresholds=mode)
        t0 = time.perf_counter()
        fitted = M.fit(method, X, Y, C, spec)
        ins = macro.score(Y, M.apply(method, fitted, X))
        fits = M.fits_anything(method, spec)
        nested = macro.score(Y, N.nested_predictions(method, X, Y, C, spec, p.folds)) if fits else ins
        label = f"{method}" + ("@0.5" if mode == "none" else f" + {mode} thresholds")
        print(f"  {label:<32} {ins:9.4f} {nested:8.4f} {time.perf_counter() - t0:12.1f}")


if __name__ == "__main__":
    main()
