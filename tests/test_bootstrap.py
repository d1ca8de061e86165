from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ensemble.bootstrap import bootstrap_ci, bootstrap_scores
from ensemble.errors import MetricError


def sk_f1(y, p, c=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f1_score(y, p, average="macro", labels=None if c is None else np.arange(c))


def noisy(rng, y, c, acc):
    return np.where(rng.random(len(y)) < acc, y, rng.integers(0, c, len(y)))


def test_few_types_follow_the_documented_multinomial_and_are_paired(rng):
    # 2000 rows, 4 classes, 2 models: at most 64 types <= n/16, so type counts are drawn by multinomial
    n, c = 2000, 4
    y = rng.integers(0, c, n)
    preds = np.stack([noisy(rng, y, c, 0.7), noisy(rng, y, c, 0.6)])
    scores = bootstrap_scores(y, preds, n_classes=c, n_boot=30, seed=7)
    assert scores.shape == (2, 30)
    types, freq = np.unique(np.column_stack([y, *preds]), axis=0, return_counts=True)
    counts = np.random.default_rng(7).multinomial(n, freq / n, size=30)
    for b in range(30):
        rows = np.repeat(types, counts[b], axis=0)  # the resample, materialised: one for both models
        for q in range(2):
            assert scores[q, b] == pytest.approx(sk_f1(rows[:, 0], rows[:, 1 + q]), abs=1e-12)


def test_many_types_resample_rows_with_the_documented_indices(rng):
    # 5 random models on 300 rows: types near n, so rows are drawn as indices
    n, c = 300, 6
    y = rng.integers(0, c, n)
    preds = rng.integers(0, c, (5, n))
    scores = bootstrap_scores(y, preds, n_classes=c, n_boot=20, seed=3, all_classes=True)
    hand = np.random.default_rng(3)
    for b in range(20):
        rows = hand.integers(0, n, size=n)
        for q in range(5):
            assert scores[q, b] == pytest.approx(sk_f1(y[rows], preds[q, rows], c), abs=1e-12)


def test_ci_brackets_the_estimate_and_is_seeded(rng):
    n, c = 5000, 8
    y = rng.integers(0, c, n)
    pred = noisy(rng, y, c, 0.75)
    point = sk_f1(y, pred)
    lo, hi = bootstrap_ci(y, pred, n_classes=c, n_boot=500)
    assert lo < point < hi and hi - lo < 0.1
    assert (lo, hi) == bootstrap_ci(y, pred, n_classes=c, n_boot=500)
    assert (lo, hi) != bootstrap_ci(y, pred, n_classes=c, n_boot=500, seed=1)
    lo90, hi90 = bootstrap_ci(y, pred, n_classes=c, n_boot=500, alpha=0.1)
    assert lo < lo90 < hi90 < hi
    # the distribution is centred on the estimate (the bootstrap's own sanity check)
    assert np.mean(bootstrap_scores(y, pred, n_classes=c, n_boot=500)) == pytest.approx(point, abs=0.01)


def test_probabilities_are_reduced_to_their_argmax(rng):
    y = rng.integers(0, 3, 400)
    probs = rng.dirichlet(np.ones(3), 400)
    a = bootstrap_scores(y, probs, n_classes=3, n_boot=10)
    np.testing.assert_array_equal(a, bootstrap_scores(y, probs.argmax(1), n_classes=3, n_boot=10))
    lo, hi = bootstrap_ci(y, np.stack([probs, probs]), n_classes=3, n_boot=10)
    assert lo.shape == hi.shape == (2,) and lo[0] == lo[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preds": np.array([0, 1])}, r"y_true has shape \(3,\) and predictions \(2,\)"),
        ({"preds": np.array([0, 1, 5])}, "predictions hold labels outside 0..2"),
        ({"preds": np.array([0, 1, 2]), "n_boot": 0}, "n_boot=0; the bootstrap needs at least 1 resample"),
        ({"preds": np.ones((3, 2))}, r"probabilities have shape \(3, 2\); expected \(n, 3\)"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(MetricError, match=message):
        bootstrap_scores(np.array([0, 1, 2]), n_classes=3, **kwargs)
    with pytest.raises(MetricError, match="alpha=1.5"):
        bootstrap_ci(np.array([0, 1]), np.array([0, 1]), n_classes=2, alpha=1.5)


@pytest.mark.parametrize("k", [1, 6])  # one model: type counts; six random models: drawn rows
def test_chunking_does_not_change_the_resamples(rng, monkeypatch, k):
    import ensemble.bootstrap as boot

    y = rng.integers(0, 5, 500)
    preds = rng.integers(0, 5, (k, 500))
    whole = bootstrap_scores(y, preds, n_classes=5, n_boot=37)
    monkeypatch.setattr(boot, "_CHUNK", 1000)  # a few resamples per chunk
    np.testing.assert_array_equal(whole, bootstrap_scores(y, preds, n_classes=5, n_boot=37))


# --- any metric: each path against explicitly materialised resamples scored by scikit-learn -------


def candidates(rng, n, c, k):
    """y (n,) and k related probability candidates (k, n, C), float32."""
    y = rng.integers(0, c, n)
    logits = rng.standard_normal((k, n, c)).astype(np.float32)
    logits[:, np.arange(n), y] += np.linspace(0.5, 2.0, k, dtype=np.float32)[:, None]
    probs = np.exp(logits)
    return y, probs / probs.sum(axis=-1, keepdims=True)


def documented_type_resamples(y, probs, n_boot, seed):
    """The argmax paths' resamples as the module docstring defines them, materialised as row lists."""
    n = len(y)
    table = np.column_stack([y, *(p.argmax(1) for p in probs)])
    types, inv, freq = np.unique(table, axis=0, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    if len(types) * 16 <= n:
        counts = rng.multinomial(n, freq / n, size=n_boot)
        # a resample of type counts: any rows of each type serve (argmax metrics see only types)
        first = np.array([np.flatnonzero(inv.ravel() == u)[0] for u in range(len(types))])
        return [np.repeat(first, cnt) for cnt in counts]
    return [rng.integers(0, n, size=n) for _ in range(n_boot)]


def documented_group_resamples(groups, n_boot, seed):
    """Group resamples as documented: drawn groups (np.unique order) in draw order, rows in row order."""
    names = np.unique(groups)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(names), size=len(names))
        out.append(np.concatenate([np.flatnonzero(groups == names[g]) for g in drawn]))
    return out


PATHS = ["balanced_accuracy", "weighted_f1", "qwk", "log_loss", "roc_auc"]  # count, confusion, mean, any
TOL = dict.fromkeys(PATHS, 1e-9) | {"log_loss": 1e-6}  # sklearn takes float32 logs in float32


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("k", [1, 3])
def test_every_path_equals_sklearn_on_the_documented_resamples(rng, name, k):
    from ensemble.bootstrap import bootstrap_metric
    from tests.metrics.cases import sklearn_score

    y, probs = candidates(rng, 800, 3 if name != "roc_auc" else 2, k)
    scores = bootstrap_metric(name, y, probs[0] if k == 1 else probs, n_boot=12, seed=5)
    assert scores.shape == ((12,) if k == 1 else (k, 12))
    scores = scores.reshape(k, 12)
    if name in ("log_loss", "roc_auc"):
        rows = documented_group_resamples(np.arange(len(y)), 12, 5)  # every row its own group
    else:
        rows = documented_type_resamples(y, probs, 12, 5)
    for b, r in enumerate(rows):
        for q in range(k):  # paired: one resample for every candidate
            assert scores[q, b] == pytest.approx(sklearn_score(name, y[r], probs[q, r]), rel=TOL[name]), (b, q)


@pytest.mark.parametrize("name", PATHS)
def test_groups_are_resampled_whole(rng, name):
    from ensemble.bootstrap import bootstrap_metric
    from tests.metrics.cases import sklearn_score

    y, probs = candidates(rng, 600, 2 if name == "roc_auc" else 4, 2)
    groups = np.array([f"study{g}" for g in rng.integers(0, 40, 600)])  # strings, uneven sizes
    scores = bootstrap_metric(name, y, probs, n_boot=10, seed=9, groups=groups)
    for b, r in enumerate(documented_group_resamples(groups, 10, 9)):
        for q in range(2):
            assert scores[q, b] == pytest.approx(sklearn_score(name, y[r], probs[q, r]), rel=TOL[name]), (b, q)


def recorder():
    """A Metric that records the index it is called with (a stand-in for a competition metric file)."""
    from ensemble.metrics import Metric

    calls: list[np.ndarray] = []

    class Recorder(Metric):
        def score(self, y, probs, index=None):
            calls.append(np.array(index))
            return float(probs[:, 0].mean())

    return Recorder("recorder", higher_is_better=True), calls


def test_any_metric_sees_whole_groups_and_the_given_index(rng):
    from ensemble.bootstrap import bootstrap_metric

    y, probs = candidates(rng, 200, 3, 2)
    groups = rng.integers(0, 15, 200)
    metric, calls = recorder()
    index = np.arange(200) + 1000
    scores = bootstrap_metric(metric, y, probs, n_boot=6, seed=1, groups=groups, index=index)
    assert len(calls) == 12  # 6 resamples x 2 candidates, the same rows for both
    for b in range(6):
        first, second = calls[2 * b], calls[2 * b + 1]
        np.testing.assert_array_equal(first, second)
        rows = first - 1000
        drawn = np.bincount(rows, minlength=200)
        for g in np.unique(groups[rows]):  # every row of a drawn group, each drawn as often
            assert len(set(drawn[groups == g])) == 1
        assert scores[0, b] == pytest.approx(probs[0, rows, 0].mean())


@pytest.mark.parametrize("name", PATHS)
def test_same_seed_same_scores_and_chunks_change_nothing(rng, monkeypatch, name):
    import ensemble.bootstrap as boot

    y, probs = candidates(rng, 300, 2 if name == "roc_auc" else 3, 2)
    groups = rng.integers(0, 50, 300)
    for g in (None, groups):
        whole = boot.bootstrap_metric(name, y, probs, n_boot=23, seed=4, groups=g)
        np.testing.assert_array_equal(whole, boot.bootstrap_metric(name, y, probs, n_boot=23, seed=4, groups=g))
        assert not np.array_equal(whole, boot.bootstrap_metric(name, y, probs, n_boot=23, seed=5, groups=g))
        with monkeypatch.context() as m:
            m.setattr(boot, "_CHUNK", 700)  # a few resamples per chunk: the same resamples (BLAS may round apart)
            np.testing.assert_allclose(whole, boot.bootstrap_metric(name, y, probs, n_boot=23, seed=4, groups=g), rtol=1e-13)


def test_macro_f1_path_is_bootstrap_scores(rng):
    from ensemble.bootstrap import bootstrap_metric

    y, probs = candidates(rng, 2000, 5, 3)
    preds = probs.argmax(-1)
    np.testing.assert_array_equal(
        bootstrap_metric("macro_f1", y, probs, n_boot=50), bootstrap_scores(y, preds, n_classes=5, n_boot=50)
    )
    np.testing.assert_array_equal(
        bootstrap_metric("macro_f1_all", y, probs[1], n_boot=50),
        bootstrap_scores(y, preds[1], n_classes=5, n_boot=50, all_classes=True),
    )


def test_metric_ci_brackets_the_estimate_in_either_direction(rng):
    from sklearn.metrics import log_loss

    from ensemble.bootstrap import bootstrap_metric_ci

    y, probs = candidates(rng, 3000, 4, 2)
    lo, hi = bootstrap_metric_ci("log_loss", y, probs[1], n_boot=300)
    assert lo < log_loss(y, probs[1]) < hi
    lo, hi = bootstrap_metric_ci("qwk", y, probs, n_boot=300, alpha=0.1)
    assert lo.shape == hi.shape == (2,) and (lo < hi).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": np.ones((2, 3), np.float32)}, "y has 3 rows but the probabilities have 2"),
        ({"probs": np.ones(3)}, r"probabilities have shape \(3,\) and dtype float64; expected float"),
        ({"y": np.array([0, 1, 7])}, "y hold labels outside 0..2"),
        ({"n_boot": 0}, "n_boot=0; the bootstrap needs at least 1 resample"),
        ({"groups": np.array([1, 2])}, r"groups has shape \(2,\); give one value per row, shape \(3,\)"),
        ({"metric": "f2"}, "unknown metric 'f2'; choose one of"),
        ({"groups": np.array(["a", None, 3], dtype=object)}, "groups mix values that cannot be compared"),
    ],
)
def test_metric_errors(kwargs, message):
    from ensemble.bootstrap import bootstrap_metric
    from ensemble.errors import EnsembleError

    args = {"metric": "log_loss", "y": np.array([0, 1, 2]), "probs": np.eye(3, dtype=np.float32)} | kwargs
    with pytest.raises(EnsembleError, match=message):
        bootstrap_metric(args.pop("metric"), args.pop("y"), args.pop("probs"), **args)


# --- multi-label metrics: an indicator matrix y (n, C), resampled as rows or groups ----------------


def label_candidates(rng, n, c, k):
    """y (n, C) uint8 with a rare class, and k related sigmoid candidates (k, n, C), float32."""
    y = (rng.random((n, c)) < np.linspace(0.03, 0.5, c)).astype(np.uint8)
    logits = rng.standard_normal((k, n, c)) + np.linspace(0.5, 2.0, k)[:, None, None] * (2.0 * y - 1)
    return y, (1 / (1 + np.exp(-logits))).astype(np.float32)


def sk_multilabel(name, y, p):
    """scikit-learn's value of a multi-label entry on one resample (tests/metrics/test_multilabel's oracle)."""
    from tests.metrics.test_multilabel import oracle

    return oracle(name, y, p)


ML_NAMES = ["macro_f1", "micro_f1", "samples_f1", "map", "roc_auc", "log_loss"]  # counts, counts, mean, any, any, mean


@pytest.mark.parametrize("name", ML_NAMES)
@pytest.mark.parametrize("grouped", [False, True])
def test_multilabel_paths_equal_sklearn_on_the_documented_resamples(rng, name, grouped):
    from ensemble.bootstrap import bootstrap_metric

    y, probs = label_candidates(rng, 400, 5, 2)
    groups = np.array([f"patient{g}" for g in rng.integers(0, 90, 400)]) if grouped else None
    scores = bootstrap_metric(name, y, probs, n_boot=8, seed=11, groups=groups, task="multilabel")
    assert scores.shape == (2, 8)
    resamples = documented_group_resamples(np.arange(400) if groups is None else groups, 8, 11)
    for b, r in enumerate(resamples):
        for q in range(2):  # paired: one resample for both candidates
            assert scores[q, b] == pytest.approx(sk_multilabel(name, y[r], probs[q, r]), rel=1e-9), (b, q)


@pytest.mark.parametrize("name", ML_NAMES)
def test_multilabel_paths_share_the_resamples_of_score_each(rng, monkeypatch, name):
    import ensemble.bootstrap as boot
    from ensemble.metrics import MULTILABEL_METRICS, Metric

    y, probs = label_candidates(rng, 300, 4, 1)
    metric = MULTILABEL_METRICS.get(name)

    class Plain(Metric):  # the same score without its capabilities: the materialised path
        def score(self, yy, pp, index=None):
            return metric.score(yy, pp)

    plain = Plain("plain", higher_is_better=metric.higher_is_better, task="multilabel")
    fast = boot.bootstrap_metric(metric, y, probs[0], n_boot=30, seed=2)
    np.testing.assert_allclose(fast, boot.bootstrap_metric(plain, y, probs[0], n_boot=30, seed=2), rtol=1e-12)
    monkeypatch.setattr(boot, "_CHUNK", 900)  # three resamples per chunk: the same resamples
    np.testing.assert_allclose(fast, boot.bootstrap_metric(metric, y, probs[0], n_boot=30, seed=2), rtol=1e-12)


def test_multilabel_ci_brackets_the_estimate(rng):
    from ensemble.bootstrap import bootstrap_metric_ci
    from ensemble.metrics import MULTILABEL_METRICS

    y, probs = label_candidates(rng, 2000, 6, 1)
    for name in ("macro_f1", "log_loss"):
        lo, hi = bootstrap_metric_ci(MULTILABEL_METRICS.get(name), y, probs[0], n_boot=200)
        assert lo < MULTILABEL_METRICS.get(name).score(y, probs[0]) < hi


class Recording:
    """A progress hook that records its calls."""

    def __init__(self):
        self.calls = []

    def start(self, description, total):
        self.calls.append(("start", description, total))

    def advance(self, n=1):
        self.calls.append(("advance", n))

    def stop(self):
        self.calls.append(("stop",))


@pytest.mark.parametrize(
    ("name", "task", "grouped"),
    [("macro_f1", "multiclass", False), ("macro_f1", "multiclass", True), ("qwk", "multiclass", False),
     ("log_loss", "multiclass", False), ("roc_auc", "multiclass", True), ("micro_f1", "multilabel", False),
     ("samples_f1", "multilabel", True), ("map", "multilabel", False)],
)
def test_progress_is_told_every_resample(rng, monkeypatch, name, task, grouped):
    import ensemble.bootstrap as boot

    monkeypatch.setattr(boot, "_CHUNK", 100)  # several chunks
    if task == "multilabel":
        y, probs = label_candidates(rng, 300, 4, 2)
    else:
        y, probs = candidates(rng, 300, 3 if name != "roc_auc" else 2, 2)
    groups = rng.integers(0, 40, 300) if grouped else None
    quiet = boot.bootstrap_metric(name, y, probs, n_boot=25, seed=3, groups=groups, task=task)
    hook = Recording()
    loud = boot.bootstrap_metric(name, y, probs, n_boot=25, seed=3, groups=groups, task=task, progress=hook)
    np.testing.assert_array_equal(quiet, loud)  # reporting changes nothing
    assert hook.calls[0] == ("start", f"bootstrap {name}", 25) and hook.calls[-1] == ("stop",)
    steps = [c[1] for c in hook.calls[1:-1]]
    assert all(c[0] == "advance" for c in hook.calls[1:-1]) and sum(steps) == 25 and len(steps) > 1


def test_multilabel_errors():
    from ensemble.bootstrap import bootstrap_metric

    p = np.full((3, 2), 0.5, dtype=np.float32)
    with pytest.raises(MetricError, match=r"y has shape \(3,\) but the multi-label metric map needs a 0/1 indicator matrix"):
        bootstrap_metric("map", np.array([0, 1, 1]), p, task="multilabel")
    with pytest.raises(MetricError, match=r"y_true holds values other than 0 and 1 \(\"3\"\)"):
        bootstrap_metric("log_loss", np.array([[0, 1], [1, 3], [0, 0]]), p, task="multilabel")
    with pytest.raises(MetricError, match=r"expected labels of shape \(n_samples,\), n >= 1"):  # a multiclass metric
        bootstrap_metric("log_loss", np.array([[0, 1], [1, 0], [0, 0]]), p)
