"""The multi-label OOF report against independent oracles: scikit-learn per class column, brute-force
thresholds, numpy for rates, cardinality, correlation and agreement."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

import ensemble
from ensemble import make_table, write_table
from ensemble.errors import ConfigError, TableError
from ensemble.labels import Columns, read_labels
from ensemble.report import oof_report, oof_report_files
from ensemble.report.multilabel import label_stats, threshold_curve, usual_scores
from ensemble.report.plots import MULTILABEL_PLOTS

CLASSES = ["cardio", "effusion", "edema", "mass", "nodule"]
PREVALENCE = [0.4, 0.25, 0.1, 0.05, 0.3]


def sets(n: int, rng: np.random.Generator, prevalence=PREVALENCE) -> np.ndarray:
    return (rng.random((n, len(prevalence))) < prevalence).astype(np.uint8)


def sigmoid_probs(y: np.ndarray, rng: np.random.Generator, strength: float, decimals: int | None = 2) -> np.ndarray:
    """Sigmoid outputs that know `y` by `strength`; rounded so that ties occur (sklearn counts them half)."""
    z = rng.normal(size=y.shape) + strength * (2.0 * y - 1) - 0.8
    p = 1 / (1 + np.exp(-z))
    return (np.round(p, decimals) if decimals is not None else p).astype(np.float32)


def write_world(root: Path, n: int = 240, seed: int = 0, sep: str = "|") -> tuple[Path, np.ndarray, dict[str, np.ndarray]]:
    """A multi-label labels CSV (sets joined by `sep`, empty cells for none) and three OOF tables:
    `solo` with TTA views, and two seeds of family `f`."""
    rng = np.random.default_rng(seed)
    y = sets(n, rng)
    ids = [f"{i:05d}" for i in range(n)]
    cells = [sep.join(np.array(CLASSES)[row.astype(bool)]) for row in y]
    pd.DataFrame({"id": ids, "label": cells, "fold": np.arange(n) % 4}).to_csv(root / "train.csv", index=False)
    probs = {}
    for j, (name, family) in enumerate([("solo", "solo"), ("f_s1", "f"), ("f_s2", "f")]):
        p = sigmoid_probs(y, rng, 0.8 + 0.4 * j)
        views, meta = None, {"model": name, "family": family}
        if name == "solo":
            views = {"identity": p, "hflip": sigmoid_probs(y, rng, 0.3)}
            p = np.mean(list(views.values()), axis=0)
            meta["tta"] = {"views": ["identity", "hflip"], "merge": "mean"}
        probs[name] = p.astype(np.float32)
        write_table(make_table(ids, CLASSES, p, meta=meta, views=views, task="multilabel"), root / "preds" / name / "oof.csv")
    return root / "train.csv", y, probs


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# --- per-class numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_label_stats_equal_sklearn_per_column(decimals):
    rng = np.random.default_rng(decimals or 7)
    y = sets(500, rng, [0.3, 0.02, 0.6, 0.0, 1.0, 0.1])  # a class never true, one always true
    p = sigmoid_probs(y, rng, 1.0, decimals)
    s = label_stats(y, p)
    for j in range(y.shape[1]):
        col, yj = p[:, j].astype(np.float64), y[:, j]
        if 0 < yj.sum() < len(yj):
            assert s.auc[j] == pytest.approx(roc_auc_score(yj, col), abs=1e-12)
        else:
            assert np.isnan(s.auc[j])  # sklearn refuses: one class only
        if yj.sum():
            assert s.ap[j] == pytest.approx(average_precision_score(yj, col), abs=1e-12)
        else:
            assert np.isnan(s.ap[j])
        dec = col > 0.5
        assert s.f1[j] == pytest.approx(quiet(f1_score, yj, dec, zero_division=0), abs=1e-12)
        assert s.at_threshold.precision[j] == pytest.approx(quiet(precision_score, yj, dec, zero_division=0), abs=1e-12)
        assert s.at_threshold.recall[j] == pytest.approx(quiet(recall_score, yj, dec, zero_division=0), abs=1e-12)
        assert s.at_threshold.support[j] == yj.sum()
        # the best threshold: a brute force over every value (p > t) and below them all, F1 counted directly
        candidates = np.unique(np.r_[col, -1.0])
        decided = col[None, :] > candidates[:, None]  # (thresholds, n)
        tp, pred = (decided & (yj == 1)).sum(axis=1), decided.sum(axis=1)
        brute = np.max(np.divide(2.0 * tp, pred + yj.sum(), out=np.zeros(len(tp)), where=pred + yj.sum() > 0))
        assert s.best_f1[j] == pytest.approx(brute, abs=1e-12)
        assert quiet(f1_score, yj, p[:, j] > s.best_threshold[j], zero_division=0) == pytest.approx(brute, abs=1e-12)
        assert 0 <= s.best_threshold[j] <= 1
    np.testing.assert_allclose(s.positive_rate, y.mean(axis=0))
    np.testing.assert_allclose(s.predicted_rate, (p > 0.5).mean(axis=0))
    assert s.cardinality_true == pytest.approx(y.sum(axis=1).mean())
    assert s.cardinality_pred == pytest.approx((p > 0.5).sum(axis=1).mean())


def test_label_stats_blocks_of_columns_agree(monkeypatch):
    """The sort runs over blocks of columns: a block of one column gives the same numbers."""
    rng = np.random.default_rng(3)
    y = sets(300, rng)
    p = sigmoid_probs(y, rng, 1.2)
    whole = label_stats(y, p)
    monkeypatch.setattr("ensemble.report.multilabel._BLOCK_CELLS", 1)
    one = label_stats(y, p)
    for k in ("auc", "ap", "best_f1", "best_threshold"):
        np.testing.assert_allclose(getattr(whole, k), getattr(one, k), rtol=1e-13)  # summation order differs


def test_usual_scores_equal_sklearn():
    rng = np.random.default_rng(4)
    y = sets(400, rng)
    p = sigmoid_probs(y, rng, 1.0, None)
    f1, acc, bce = usual_scores(y, p)
    assert f1 == pytest.approx(quiet(f1_score, y, p > 0.5, average="macro", zero_division=0), abs=1e-12)
    assert acc == pytest.approx(accuracy_score(y, p > 0.5))  # subset accuracy on indicator matrices
    assert bce == pytest.approx(np.mean([log_loss(y[:, j], p[:, j].astype(np.float64)) for j in range(y.shape[1])]), rel=1e-6)


def test_threshold_curve_equals_sklearn_at_each_threshold():
    rng = np.random.default_rng(5)
    y = sets(300, rng)
    p = sigmoid_probs(y, rng, 1.0)
    curve = threshold_curve("m", y, p)
    assert curve.thresholds[0] == 0.01 and curve.thresholds[-1] == 0.99 and len(curve.thresholds) == 99
    for i in (0, 20, 49, 73, 98):
        t = curve.thresholds[i]
        assert curve.macro_f1[i] == pytest.approx(quiet(f1_score, y, p > t, average="macro", zero_division=0), abs=1e-12)
        assert curve.micro_f1[i] == pytest.approx(quiet(f1_score, y, p > t, average="micro", zero_division=0), abs=1e-12)


# --- the report -------------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    labels, y, probs = write_world(tmp_path)
    tables = [ensemble.read_table(tmp_path / "preds" / m) for m in ("solo", "f_s1", "f_s2")]
    return read_labels(labels, classes=CLASSES, task="multilabel"), tables, y, probs


def test_report_scores_models_against_sklearn(world):
    labels, tables, y, probs = world
    r = oof_report(labels, tables, n_boot=0)
    assert r.task == "multilabel" and r.metric == "macro_f1" and r.confusion is None and r.top_confused == []
    assert {m.name for m in r.models} == {"solo", "f_s1", "f_s2", "f:seed-avg"}
    probs["f:seed-avg"] = np.mean([probs["f_s1"], probs["f_s2"]], axis=0, dtype=np.float32)
    for m in r.models:
        p = probs[m.name]
        sk = quiet(f1_score, y, p > 0.5, average="macro", zero_division=0)
        assert m.score == pytest.approx(sk, abs=1e-12) and m.macro_f1 == pytest.approx(sk, abs=1e-12)
        assert m.accuracy == pytest.approx(accuracy_score(y, p > 0.5))
        np.testing.assert_allclose(m.per_class_f1, quiet(f1_score, y, p > 0.5, average=None, zero_division=0), atol=1e-12)
        np.testing.assert_allclose(m.per_label.auc, [roc_auc_score(y[:, j], p[:, j]) for j in range(len(CLASSES))], atol=1e-12)
        np.testing.assert_allclose(m.per_label.ap, [average_precision_score(y[:, j], p[:, j]) for j in range(len(CLASSES))], atol=1e-12)
        assert m.cardinality == pytest.approx((p > 0.5).sum(axis=1).mean())
        for k, fold_f1 in m.fold_scores.items():
            rows = np.arange(len(y)) % 4 == k
            assert fold_f1 == pytest.approx(quiet(f1_score, y[rows], p[rows] > 0.5, average="macro", zero_division=0), abs=1e-12)
        assert m.fold_mean == pytest.approx(np.mean(list(m.fold_scores.values())))
    # sorted best first; the focus is the best, its per-class table is its own
    assert [m.score for m in r.models] == sorted((m.score for m in r.models), reverse=True)
    assert r.focus == r.models[0].name and r.per_label is r.models[0].per_label
    np.testing.assert_allclose(r.per_class.f1, r.models[0].per_class_f1)


def test_similarity_over_cells(world):
    labels, tables, y, probs = world
    r = oof_report(labels, tables, n_boot=0, per_fold=False)
    flat = [probs[n].ravel().astype(np.float64) for n in r.names]
    np.testing.assert_allclose(r.correlation, np.corrcoef(flat), atol=1e-9)
    dec = [probs[n] > 0.5 for n in r.names]
    expected = np.array([[np.mean(a == b) for b in dec] for a in dec])
    np.testing.assert_allclose(r.agreement, expected)


def test_tta_views_scored_as_multilabel(world):
    labels, tables, y, probs = world
    r = oof_report(labels, tables, n_boot=0, per_fold=False, metric="roc_auc")
    solo = next(t for t in tables if t.name == "solo")
    scores = {s.name: s for s in r.tta["solo"]}
    assert set(scores) == {"identity", "hflip", "identity+hflip"} and scores["identity+hflip"].current
    for name, s in scores.items():
        p = np.mean([solo.views[v] for v in name.split("+")], axis=0, dtype=np.float32)
        assert s.score == pytest.approx(roc_auc_score(y, p), abs=1e-12)  # macro over classes
        assert s.macro_f1 == pytest.approx(quiet(f1_score, y, p > 0.5, average="macro", zero_division=0), abs=1e-12)
        assert s.accuracy == pytest.approx(accuracy_score(y, p > 0.5))
    assert [s.score for s in r.tta["solo"]] == sorted((s.score for s in r.tta["solo"]), reverse=True)


def test_metric_in_multilabel_registry_and_lower_is_better(world):
    labels, tables, y, probs = world
    r = oof_report(labels, tables, n_boot=0, per_fold=False, metric="log_loss")
    assert r.metric == "log_loss" and not r.higher_is_better
    assert [m.score for m in r.models] == sorted(m.score for m in r.models)
    m = r.model("f_s2")
    expected = np.mean([log_loss(y[:, j], probs["f_s2"][:, j].astype(np.float64)) for j in range(len(CLASSES))])
    assert m.score == pytest.approx(expected, rel=1e-5) and m.log_loss == pytest.approx(expected, rel=1e-5)


def test_bootstrap_interval_of_multilabel_metric(world):
    labels, tables, y, probs = world
    r = oof_report(labels, tables, n_boot=200, per_fold=False)
    for m in r.models:
        assert m.ci[0] <= m.score <= m.ci[1] and m.ci[0] < m.ci[1]


def test_all_classes_refused_for_multilabel(world):
    labels, tables, *_ = world
    with pytest.raises(ConfigError, match="multi-label macro-F1 always averages over all classes: drop --all-classes"):
        oof_report(labels, tables, n_boot=0, all_classes=True)


def test_mixed_tasks_refused(world, tmp_path):
    labels, tables, y, probs = world
    soft = make_table(tables[0].ids, CLASSES, np.full((len(y), len(CLASSES)), 0.2, dtype=np.float32), meta={"model": "soft"})
    with pytest.raises(TableError, match="tables mix tasks"):
        oof_report(labels, [*tables, soft], n_boot=0)


def test_json_carries_the_multilabel_sections(world, tmp_path):
    labels, tables, *_ = world
    r = oof_report(labels, tables, n_boot=0)
    d = json.loads(json.dumps(r.to_dict()))  # plain JSON: NaN would not survive as null otherwise
    assert d["task"] == "multilabel" and d["threshold"] == 0.5 and d["confusion"] is None
    assert set(d["per_label"]) >= {"auc", "ap", "f1_at_threshold", "precision_at_threshold", "recall_at_threshold",
                                   "support_at_threshold", "best_f1", "best_threshold", "best_threshold_note",
                                   "positive_rate", "predicted_rate", "cardinality"}
    assert "in-sample" in d["per_label"]["best_threshold_note"]
    assert d["cardinality"]["true"] == pytest.approx(r.per_label.cardinality_true)
    assert all("per_label" in m for m in d["models"])
    assert len(d["threshold_curve"]["thresholds"]) == len(d["threshold_curve"]["macro_f1"]) == 99
    assert "row, class" in d["agreement_of"] and "p > 0.5 over all classes" in d["macro_f1_note"]


def test_undefined_auc_is_null_in_json(tmp_path):
    rng = np.random.default_rng(1)
    y = sets(100, rng, [0.3, 0.0, 0.5])
    ids = [str(i) for i in range(100)]
    pd.DataFrame({"id": ids, "label": ["|".join(np.array(["a", "b", "c"])[r.astype(bool)]) for r in y]}).to_csv(tmp_path / "l.csv", index=False)
    write_table(make_table(ids, ["a", "b", "c"], sigmoid_probs(y, rng, 1.0), meta={"model": "m"}, task="multilabel"), tmp_path / "m.csv")
    r = oof_report_files(tmp_path / "l.csv", [tmp_path / "m.csv"], per_fold=False, n_boot=0, json_path=tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["per_label"]["auc"][1] is None and d["per_label"]["ap"][1] is None and np.isnan(r.per_label.auc[1])
    assert d["per_label"]["best_f1"][1] == 0.0


def test_files_read_label_sets_with_a_separator_and_write_multilabel_plots(tmp_path):
    labels, y, probs = write_world(tmp_path, sep=";")
    preds = [tmp_path / "preds" / m for m in ("solo", "f_s1")]
    r = oof_report_files(labels, preds, columns=Columns(label_sep=";"), n_boot=0, plots_dir=tmp_path / "plots")
    assert r.task == "multilabel" and r.per_label.cardinality_true == pytest.approx(y.sum(axis=1).mean())
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(MULTILABEL_PLOTS)
