"""Macro-F1 and bootstrap speed: ens against scikit-learn and plain numpy, in one process.

    .venv/bin/python benchmarks/bench_metrics.py [--rows 1000000] [--classes 18] [--repeats 15]

Prints the best and median time of each contender, the speed-up of `ensemble.metrics.macro_f1`
over sklearn (sklearn's time includes the argmax, as a user would call it), and its ratio to the
read floor (one `sum` over the same array: no metric can read the probabilities faster). Then
1,000 bootstrap resamples of 100k rows: ens against a vectorised numpy bootstrap (index resampling
+ one bincount of (resample, true, pred) cells) on the same data.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=18)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--boot-rows", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

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
    for name, (best, med) in brows.items():
        print(f"  {name:<40} best {best:8.1f} ms   median {med:8.1f} ms")
    one = brows["numpy index bootstrap, 1 model"][0] / brows["ens bootstrap_scores, 1 model"][0]
    four = brows["numpy index bootstrap, 4 models"][0] / brows["ens bootstrap_scores, 4 models paired"][0]
    print(f"  speed-up over numpy: {one:.1f}x (1 model), {four:.1f}x (4 models)")


if __name__ == "__main__":
    main()
