"""Metric and bootstrap speed: ens against scikit-learn and plain numpy, in one process.

    .venv/bin/python benchmarks/bench_metrics.py [--rows 1000000] [--classes 18] [--repeats 15]
    .venv/bin/python benchmarks/bench_metrics.py --task multilabel [--rows 1000000] [--classes 20] [--repeats 3]

First every built-in metric of the registry beside its scikit-learn call on the same (rows x
classes) float32 probabilities: best time of each and the speed-up (target >= 10x; sklearn's time
includes the argmax for argmax metrics, as a user would call it).

Prints the best and median time of each contender, the speed-up of `ensemble.metrics.macro_f1`
over sklearn (sklearn's time includes the argmax, as a user would call it), and its ratio to the
read floor (one `sum` over the same array: no metric can read the probabilities faster). Then
1,000 bootstrap resamples of 100k rows: ens against a vectorised numpy bootstrap (index resampling
+ one bincount of (resample, true, pred) cells) on the same data.

`--task multilabel`: every entry of the multi-label registry beside scikit-learn on a uint8
indicator matrix and float32 sigmoid probabilities (1M x 20 by default, class rates 1%..30%): the
F1s as `f1_score(y, p > 0.5, average=..., zero_division=0)`, `average_precision_score` and
`roc_auc_score` (macro), and the log loss as the mean of sklearn's per-column `log_loss`; the
best time of each, the speed-up (target >= 10x) and the two values' difference. Then a bootstrap
of 1,000 resamples of 100k rows for each entry (counts, row means, weighted rank walks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) wall time in ms after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return min(times), statistics.median(times)


def numpy_bootstrap(y: np.ndarray, pred: np.ndarray, c: int, n_boot: int, seed: int, chunk: int = 40) -> np.ndarray:
    """The usual vectorised numpy bootstrap of macro-F1: resampled indices, one bincount per chunk."""
    rng = np.random.default_rng(seed)
    cell = y * c + pred
    out = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, len(y), size=(b, len(y)))
        cm = np.bincount((np.arange(b)[:, None] * c * c + cell[idx]).ravel(), minlength=b * c * c).reshape(b, c, c)
        tp = np.einsum("bii->bi", cm)
        denom = cm.sum(1) + cm.sum(2)
        f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
        out.append(f1.sum(1) / (denom > 0).sum(1))
    return np.concatenate(out)


def sklearn_calls(y: np.ndarray, probs: np.ndarray) -> dict[str, Callable[[], float]]:
    """The scikit-learn call of each built-in, as a user would write it."""
    from sklearn import metrics as skm

    c = probs.shape[1]
    labels = np.arange(c)
    f1 = lambda **kw: skm.f1_score(y, probs.argmax(1), **kw)
    return {
        "macro_f1": lambda: f1(average="macro"),
        "macro_f1_all": lambda: f1(average="macro", labels=labels),
        "micro_f1": lambda: f1(average="micro"),
        "weighted_f1": lambda: f1(average="weighted"),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, probs.argmax(1)),
        "accuracy": lambda: skm.accuracy_score(y, probs.argmax(1)),
        "qwk": lambda: skm.cohen_kappa_score(y, probs.argmax(1), weights="quadratic", labels=labels),
        "log_loss": lambda: skm.log_loss(y, probs, labels=labels),
        "roc_auc": lambda: skm.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=labels),
    }


def registry_table(y: np.ndarray, probs: np.ndarray, repeats: int) -> None:
    """Every built-in beside scikit-learn: times, the speed-up, and the two values' difference."""
    from ensemble.metrics import METRICS

    calls = sklearn_calls(y, probs)
    print(f"built-in metrics at {len(y):,} x {probs.shape[1]} float32 (best of runs, ms)")
    print(f"  {'metric':<18} {'sklearn':>10} {'ens':>9} {'speed-up':>9}  |ens - sklearn|")
    for name, metric in METRICS.items():
        ours = metric.score(y, probs)
        sk_value = calls[name]()
        sk = timed(calls[name], max(1, min(3, repeats // 5)))[0]
        ens = timed(lambda m=metric: m.score(y, probs), repeats)[0]
        print(f"  {name:<18} {sk:10.1f} {ens:9.2f} {sk / ens:8.1f}x  {abs(ours - sk_value):.1e}")


def multilabel_data(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An indicator matrix (n, C) uint8 with class rates 1%..30% and float32 sigmoid probabilities of a fair model."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c), dtype=np.float32) < np.linspace(0.01, 0.3, c, dtype=np.float32)).astype(np.uint8)
    logits = rng.standard_normal((n, c), dtype=np.float32)
    logits += 1.5 * (2.0 * y - 1) - 1.0  # separable in part, most probabilities below 0.5, as for rare labels
    return y, (1 / (1 + np.exp(-logits))).astype(np.float32)


def multilabel_sklearn_calls(y: np.ndarray, probs: np.ndarray) -> dict[str, Callable[[], float]]:
    """The scikit-learn call of each multi-label entry, as a user would write it."""
    import warnings

    from sklearn import metrics as skm

    warnings.filterwarnings("ignore", category=UserWarning)
    f1 = lambda average: lambda: skm.f1_score(y, probs > 0.5, average=average, zero_division=0)
    return {
        "macro_f1": f1("macro"),
        "micro_f1": f1("micro"),
        "samples_f1": f1("samples"),
        "map": lambda: skm.average_precision_score(y, probs, average="macro"),
        "roc_auc": lambda: skm.roc_auc_score(y, probs, average="macro"),
        "log_loss": lambda: float(np.mean([skm.log_loss(y[:, j], probs[:, j], labels=[0, 1]) for j in range(y.shape[1])])),
    }


def multilabel_main(args: argparse.Namespace) -> None:
    """The multi-label registry beside scikit-learn, then its bootstrap paths."""
    from ensemble.bootstrap import bootstrap_metric
    from ensemble.metrics import MULTILABEL_METRICS

    n, c = args.rows, args.classes or 20
    y, probs = multilabel_data(n, c, args.seed)
    calls = multilabel_sklearn_calls(y, probs)
    print(f"multi-label metrics at {n:,} x {c} (uint8 truth, float32 probabilities; best of runs, ms); "
          f"cpus: {os.cpu_count()}")
    print(f"  {'metric':<12} {'sklearn':>10} {'ens':>9} {'speed-up':>9}  |ens - sklearn|")
    for name, metric in MULTILABEL_METRICS.items():
        ours, theirs = metric.score(y, probs), calls[name]()
        # sklearn takes the float32 logs in float32 (~1e-7 apart); every other entry must agree to rounding
        tol = 1e-6 * abs(theirs) if name == "log_loss" else 1e-12
        same = "same" if abs(ours - theirs) <= tol else "DIFFERENT"
        sk = timed(calls[name], max(1, min(3, args.repeats)))[0]
        ens = timed(lambda m=metric: m.score(y, probs), args.repeats)[0]
        print(f"  {name:<12} {sk:10.1f} {ens:9.2f} {sk / ens:8.1f}x  {abs(ours - theirs):.1e} ({same})")
    if args.skip_bootstrap:
        return
    m = min(args.boot_rows, n)
    print(f"bootstrap: {args.n_boot} resamples of {m:,} x {c}, one candidate (ms)")
    for name in MULTILABEL_METRICS.names():
        best = timed(lambda k=name: bootstrap_metric(k, y[:m], probs[:m], n_boot=args.n_boot, task="multilabel"), 1)[0]
        print(f"  {name:<12} {best:10.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("multiclass", "multilabel"), default="multiclass")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=None, help="default: 18 (multiclass), 20 (multilabel)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--boot-rows", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-bootstrap", action="store_true", help="only the metric tables")
    args = ap.parse_args()
    if args.task == "multilabel":
        multilabel_main(args)
        return
    args.classes = args.classes or 18

    from sklearn.metrics import f1_score

    from ensemble import _kernels
    from ensemble.bootstrap import bootstrap_scores
    from ensemble.metrics import macro_f1

    rng = np.random.default_rng(args.seed)
    n, c = args.rows, args.classes
    y = rng.integers(0, c, n)
    logits = rng.standard_normal((n, c), dtype=np.float32)
    logits[np.arange(n), y] += 2.0  # a model that is right ~70% of the time, as real OOF would be
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    del logits

    registry_table(y, probs, args.repeats)
    assert macro_f1(y, probs) == f1_score(y, probs.argmax(1), average="macro")  # same answer before timing
    print(f"macro-F1 of {n:,} x {c} float32 probabilities ({probs.nbytes / 1e6:.0f} MB); "
          f"numba threads: {_kernels.threads()}, cpus: {os.cpu_count()}")
    rows = {
        "read floor: probs.sum()": timed(lambda: probs.sum(), args.repeats),
        "sklearn f1_score(y, probs.argmax(1))": timed(lambda: f1_score(y, probs.argmax(1), average="macro"), max(3, args.repeats // 3)),
        "numpy argmax + bincount": timed(lambda: np.bincount(y * c + probs.argmax(1), minlength=c * c), max(3, args.repeats // 3)),
        "ens macro_f1(y, probs)": timed(lambda: macro_f1(y, probs), args.repeats),
    }
    for name, (best, med) in rows.items():
        print(f"  {name:<40} best {best:8.2f} ms   median {med:8.2f} ms")
    floor, sk, ens = rows["read floor: probs.sum()"][0], rows["sklearn f1_score(y, probs.argmax(1))"][0], rows["ens macro_f1(y, probs)"][0]
    print(f"  speed-up over sklearn: {sk / ens:.1f}x (target >= 15x); ens / read floor: {ens / floor:.2f}x (target <= 3x)")

    if args.skip_bootstrap:
        return
    m = args.boot_rows
    yb = y[:m]
    pb = probs[:m].argmax(1)
    models = np.stack([np.where(rng.random(m) < 0.9, pb, rng.integers(0, c, m)) for _ in range(4)])  # related models
    print(f"bootstrap: {args.n_boot} resamples of {m:,} rows")
    brows = {
        "numpy index bootstrap, 1 model": timed(lambda: numpy_bootstrap(yb, pb, c, args.n_boot, 0), 2),
        "ens bootstrap_scores, 1 model": timed(lambda: bootstrap_scores(yb, pb, n_classes=c, n_boot=args.n_boot), 5),
        "numpy index bootstrap, 4 models": timed(lambda: [numpy_bootstrap(yb, p, c, args.n_boot, 0) for p in models], 1),
        "ens bootstrap_scores, 4 models paired": timed(lambda: bootstrap_scores(yb, models, n_classes=c, n_boot=args.n_boot), 2),
    }
    from ensemble.bootstrap import bootstrap_metric

    pm = probs[:m]
    studies = rng.integers(0, m // 4, m)  # ~4 rows per group
    for name in ("qwk", "log_loss"):
        brows[f"ens bootstrap_metric {name}, 1 model"] = timed(lambda n=name: bootstrap_metric(n, yb, pm, n_boot=args.n_boot), 1)
        brows[f"ens bootstrap_metric {name}, by groups"] = timed(
            lambda n=name: bootstrap_metric(n, yb, pm, n_boot=args.n_boot, groups=studies), 1
        )
    for name, (best, med) in brows.items():
        print(f"  {name:<44} best {best:8.1f} ms   median {med:8.1f} ms")
    one = brows["numpy index bootstrap, 1 model"][0] / brows["ens bootstrap_scores, 1 model"][0]
    four = brows["numpy index bootstrap, 4 models"][0] / brows["ens bootstrap_scores, 4 models paired"][0]
    print(f"  speed-up over numpy: {one:.1f}x (1 model), {four:.1f}x (4 models)")


if __name__ == "__main__":
    main()
