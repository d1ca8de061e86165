"""Blend methods on a seeded synthetic problem: OOF macro-F1, nested 5-fold estimate, fit time.

Peers run in the same process on the same data: scipy Nelder-Mead on softmax-parametrised weights
(initial simplex of +2 logit steps: scipy's default 5% steps around 0 never leave the first
plateau of macro-F1) and a plain Caruana loop (numpy sums, every candidate scored from scratch).
The peers' inner loops score with a plain numpy argmax + bincount macro-F1 (as fast as it gets in
numpy); every reported score uses `ensemble.metrics.macro_f1` (sklearn-exact). Fit times are one
fit on all rows (wall clock, and CPU time of this process), after a warm-up that compiles the
numba kernels.

Then the same problem under probability metrics, lower is better: `log_loss`, and the example
competition metric file (examples/metrics/weighted_logloss_any.py: a sample-weighted log loss plus
a per-study "any severe" term, studies of 5 rows), each beside scipy Nelder-Mead minimising that
same metric; "+nested s" is the fit plus the five nested refits, as `ens blend` runs them.

    .venv/bin/python benchmarks/bench_blend.py [--models 20 --rows 20000 --classes 18 --seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize

from ensemble.blend import methods as M
from ensemble.blend import nested as N
from ensemble.metrics import argmax, macro_f1
from synthetic import make_problem  # benchmarks/synthetic.py (run as python benchmarks/bench_blend.py)

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]  # (X, y) -> predict(X) -> labels


def ours(method: str, spec: M.Spec, C: int) -> Fit:
    def fit(X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        fitted = M.fit(method, X, y, C, spec)
        return lambda Z: argmax(M.apply(method, fitted, Z))

    return fit


def f1_numpy(y: np.ndarray, scores: np.ndarray, C: int) -> float:
    """Macro-F1 of the row argmax by bincounts (sklearn's definition): the peers' inner-loop scorer."""
    pred = scores.argmax(axis=1)
    tp = np.bincount(y[pred == y], minlength=C)
    denom = np.bincount(pred, minlength=C) + np.bincount(y, minlength=C)
    return float((2.0 * tp[denom > 0] / denom[denom > 0]).mean())


def nelder_mead(C: int, maxfev: int) -> Fit:
    """scipy Nelder-Mead on z, weights = softmax(z), from equal weights."""

    def fit(X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        def weights(z: np.ndarray) -> np.ndarray:
            e = np.exp(z - z.max())
            return e / e.sum()

        def loss(z: np.ndarray) -> float:
            return -f1_numpy(y, np.einsum("nmc,m->nc", X, weights(z)), C)

        U = X.shape[1]
        simplex = np.vstack([np.zeros(U), 2.0 * np.eye(U)])
        res = minimize(loss, np.zeros(U), method="Nelder-Mead", options={"maxfev": maxfev, "initial_simplex": simplex})
        w = weights(res.x)
        return lambda Z: argmax(np.einsum("nmc,m->nc", Z, w))

    return fit


def plain_caruana(C: int, rounds: int) -> Fit:
    """Caruana with replacement and use-best, the usual way: rescore every candidate sum each round."""

    def fit(X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        S = np.zeros((X.shape[0], C), dtype=np.float32)
        counts = np.zeros(X.shape[1])
        best, best_counts = -1.0, counts
        for _ in range(rounds):
            scores = [f1_numpy(y, S + X[:, m], C) for m in range(X.shape[1])]
            m = int(np.argmax(scores))
            S += X[:, m]
            counts[m] += 1
            if scores[m] > best:
                best, best_counts = scores[m], counts.copy()
        w = best_counts / best_counts.sum()
        return lambda Z: argmax(np.einsum("nmc,m->nc", Z, w))

    return fit


def best_single(C: int) -> Fit:
    def fit(X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        m = int(np.argmax([macro_f1(y, X[:, u], n_classes=C) for u in range(X.shape[1])]))
        return lambda Z: argmax(Z[:, m])

    return fit


def evaluate(fit: Fit, X: np.ndarray, y: np.ndarray, folds: np.ndarray, C: int) -> tuple[float, float, float, float]:
    """(in-sample OOF macro-F1, nested macro-F1, wall and CPU seconds of the in-sample fit)."""
    t0, c0 = time.perf_counter(), time.process_time()
    predict = fit(X, y)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    in_sample = macro_f1(y, predict(X), n_classes=C)
    pred = np.empty(len(y), dtype=np.int64)
    for k in np.unique(folds):
        test = folds == k
        pred[test] = fit(np.ascontiguousarray(X[~test]), y[~test])(np.ascontiguousarray(X[test]))
    return in_sample, macro_f1(y, pred, n_classes=C), seconds, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--classes", type=int, default=18)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--maxfev", type=int, default=1000, help="Nelder-Mead function evaluations")
    ap.add_argument("--maxfev-prob", type=int, default=300, help="Nelder-Mead evaluations on probability metrics")
    ap.add_argument("--no-probability-metrics", action="store_true", help="only the macro-F1 part")
    args = ap.parse_args()

    warm = make_problem(n_models=3, n_samples=300, n_classes=4, seed=1)  # compile the kernels first
    Xw = np.ascontiguousarray(warm.probs.transpose(1, 0, 2))
    for method in ("weighted", "greedy"):
        M.fit(method, Xw, warm.y, 4, M.Spec(tune_bias=True, rounds=3))

    p = make_problem(n_models=args.models, n_samples=args.rows, n_classes=args.classes, seed=args.seed)
    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))  # (n, M, C)
    y, folds, C = p.y, p.folds, args.classes
    print(f"synthetic: {args.models} models x {args.rows} rows x {C} classes (seed {args.seed}), "
          f"class counts {np.bincount(y).max()}..{np.bincount(y).min()}, 5 folds")
    rows = [
        ("best single model", best_single(C)),
        ("soft", ours("soft", M.Spec(), C)),
        ("hard", ours("hard", M.Spec(), C)),
        ("rank", ours("rank", M.Spec(), C)),
        ("geometric", ours("geometric", M.Spec(), C)),
        (f"peer: scipy Nelder-Mead (softmax w, maxfev {args.maxfev})", nelder_mead(C, args.maxfev)),
        ("peer: plain Caruana (100 rounds, best kept)", plain_caruana(C, 100)),
        ("ens greedy (Caruana, 100 rounds)", ours("greedy", M.Spec(rounds=100), C)),
        ("ens weighted", ours("weighted", M.Spec(), C)),
        ("ens soft --tune-bias", ours("soft", M.Spec(tune_bias=True), C)),
        ("ens weighted --tune-bias", ours("weighted", M.Spec(tune_bias=True), C)),
    ]
    results = {}
    print(f"{'method':<52} {'OOF macro-F1':>12} {'nested':>8} {'fit s':>8} {'fit cpu s':>9}")
    for name, fit in rows:
        f, nf, s, cpu = evaluate(fit, X, y, folds, C)
        results[name] = (f, nf, s)
        print(f"{name:<52} {f:>12.4f} {nf:>8.4f} {s:>8.3f} {cpu:>9.3f}", flush=True)
    w = results["ens weighted"]
    for peer in (k for k in results if k.startswith("peer")):
        f, nf, s = results[peer]
        print(f"ens weighted vs {peer}: OOF {w[0] - f:+.4f}, nested {w[1] - nf:+.4f}, fit {s / w[2]:.1f}x faster")
    if not args.no_probability_metrics:
        probability_metrics(p, C, args.maxfev_prob)


# --- probability metrics: the same problem scored by log loss, and by a competition metric file ---------

ProbFit = Callable[[np.ndarray, np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]  # (X, y, rows) -> probs


def ours_probs(method: str, spec: M.Spec, C: int) -> ProbFit:
    def fit(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        fitted = M.fit(method, X, y, C, spec, index=rows)
        return lambda Z: M.apply(method, fitted, Z)

    return fit


def scipy_nelder_mead(score: Callable[[np.ndarray, np.ndarray, np.ndarray], float], maxfev: int) -> ProbFit:
    """The usual peer: scipy Nelder-Mead on softmax weights, minimising the metric itself (a loss)."""

    def fit(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        def weights(z: np.ndarray) -> np.ndarray:
            e = np.exp(z - z.max())
            return e / e.sum()

        U = X.shape[1]
        res = minimize(lambda z: score(y, np.einsum("nmc,m->nc", X, weights(z)), rows), np.zeros(U), method="Nelder-Mead",
                       options={"maxfev": maxfev, "initial_simplex": np.vstack([np.zeros(U), 2.0 * np.eye(U)])})
        w = weights(res.x)
        return lambda Z: np.einsum("nmc,m->nc", Z, w)

    return fit


def best_single_probs(score: Callable[[np.ndarray, np.ndarray, np.ndarray], float]) -> ProbFit:
    def fit(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        m = int(np.argmin([score(y, X[:, u], rows) for u in range(X.shape[1])]))
        return lambda Z: Z[:, m]

    return fit


def evaluate_probs(fit: ProbFit, X: np.ndarray, y: np.ndarray, folds: np.ndarray, score: Callable) -> tuple[float, ...]:
    """(in-sample score, nested score, wall seconds of the in-sample fit, wall seconds in all)."""
    t0 = time.perf_counter()
    rows = np.arange(len(y))
    in_sample = score(y, fit(X, y, rows)(X), rows)
    seconds = time.perf_counter() - t0
    out = np.empty(X.shape[::2])
    for k in np.unique(folds):
        test = folds == k
        out[test] = fit(np.ascontiguousarray(X[~test]), y[~test], rows[~test])(np.ascontiguousarray(X[test]))
    return in_sample, score(y, out, rows), seconds, time.perf_counter() - t0


def metric_file_problem(p, C: int):
    """The example competition metric (weighted log loss + an any-severe study term) bound to `p`'s rows."""
    import pandas as pd

    from ensemble.labels import Labels
    from ensemble.metrics.choice import MetricChoice

    classes = [f"c{i}" for i in range(C - 1)] + ["severe"]
    ids = np.array([f"{i:06d}" for i in range(len(p.y))], dtype=object)
    frame = pd.DataFrame({"id": ids, "label": np.array(classes)[p.y], "study": [f"s{i // 5}" for i in range(len(p.y))]})
    lab = Labels(ids, classes, p.y, p.folds, None, frame, Path("train.csv"))
    root = Path(__file__).resolve().parents[1] / "examples" / "metrics"
    solution = frame[["id"]].copy()
    for j, c in enumerate(classes):
        solution[c] = (p.y == j).astype(int)
    solution["sample_weight"] = np.where(p.y == C - 1, 4.0, 1.0)
    solution["study"] = frame["study"]
    path = Path(tempfile.mkdtemp()) / "solution.csv"
    solution.to_csv(path, index=False)
    return MetricChoice(str(root / "weighted_logloss_any.py"), solution=str(path), group_col="study").resolve(lab, classes)


def probability_metrics(p, C: int, maxfev: int) -> None:
    from ensemble.metrics import get_metric

    X = np.ascontiguousarray(p.probs.transpose(1, 0, 2))
    for metric in (get_metric("log_loss"), metric_file_problem(p, C)):
        score = lambda y, q, rows, m=metric: m.score(y, q.astype(np.float32), rows)  # noqa: E731
        t = time.perf_counter()
        score(p.y, X[:, 0], np.arange(len(p.y)))
        print(f"\n--metric {Path(metric.name).name} (lower is better; one call {1e3 * (time.perf_counter() - t):.1f} ms)")
        rows = [
            ("best single model", best_single_probs(score)),
            ("soft", ours_probs("soft", M.Spec(metric=metric), C)),
            (f"peer: scipy Nelder-Mead on the metric (softmax w, maxfev {maxfev})", scipy_nelder_mead(score, maxfev)),
            ("ens greedy", ours_probs("greedy", M.Spec(metric=metric), C)),
            ("ens weighted", ours_probs("weighted", M.Spec(metric=metric), C)),
            ("ens weighted --calibrate temperature", ours_probs("weighted", M.Spec(metric=metric, calibrate="temperature"), C)),
        ]
        results = {}
        print(f"{'method':<64} {'OOF':>8} {'nested':>8} {'fit s':>7} {'+nested s':>9}")
        for name, fit in rows:
            f, nf, s, total = evaluate_probs(fit, X, p.y, p.folds, score)
            results[name] = (f, nf, s)
            print(f"{name:<64} {f:>8.4f} {nf:>8.4f} {s:>7.2f} {total:>9.2f}", flush=True)
        ens, peer = results["ens weighted --calibrate temperature"], results[rows[2][0]]
        print(f"ens weighted --calibrate vs scipy Nelder-Mead: nested {ens[1] - peer[1]:+.4f} (lower is better), "
              f"fit {peer[2] / ens[2]:.1f}x faster")


if __name__ == "__main__":
    main()
