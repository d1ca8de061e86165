from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

import ensemble
from ensemble import make_table, write_table
from ensemble.errors import (
    AlignmentError,
    ClassMismatchError,
    ConfigError,
    LabelError,
    UnknownNameError,
)
from ensemble.labels import read_labels
from ensemble.report import oof_report, oof_report_files, score_tta

CLASSES = ["cat", "dog", "fox", "owl"]


def synthetic(root: Path, n: int = 400, seed: int = 0) -> tuple[Path, np.ndarray, dict[str, np.ndarray]]:
    """A labels CSV with folds and three OOF tables: two seeds of family `f`, one with TTA views."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    ids = [f"{i:05d}" for i in range(n)]
    pd.DataFrame({"id": ids, "label": np.array(CLASSES)[y], "fold": np.arange(n) % 4}).to_csv(root / "train.csv", index=False)
    probs = {}
    for j, (name, family) in enumerate([("solo", "solo"), ("f_s1", "f"), ("f_s2", "f")]):
        logits = rng.normal(size=(n, len(CLASSES)))
        logits[np.arange(n), y] += 0.8 + 0.4 * j
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        views, meta = None, {"model": name, "family": family}
        if name == "solo":  # three views; the table holds their mean
            hflip = np.roll(p, 1, axis=1)
            noise = rng.dirichlet(np.ones(len(CLASSES)), n)
            views = {"identity": p, "hflip": hflip, "vflip": 0.5 * p + 0.5 * noise}
            p = np.mean(list(views.values()), axis=0)
            meta["tta"] = {"views": ["identity", "hflip", "vflip"], "merge": "mean"}
        probs[name] = p.astype(np.float32)
        write_table(make_table(ids, CLASSES, p, meta=meta, views=views), root / "preds" / name / "oof.csv")
    return root / "train.csv", y, probs


def sk_f1(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f1_score(y, p, average="macro")


@pytest.fixture
def world(tmp_path):
    labels, y, probs = synthetic(tmp_path)
    tables = [ensemble.read_table(tmp_path / "preds" / m) for m in ("solo", "f_s1", "f_s2")]
    return read_labels(labels, classes=CLASSES), tables, y, probs


def test_scores_against_sklearn(world):
    labels, tables, y, probs = world
    r = ensemble.oof_report(labels, tables, n_boot=200)
    assert [m.name for m in r.models] == sorted([m.name for m in r.models], key=lambda n: -r.model(n).macro_f1)
    for name, p in probs.items():
        m = r.model(name)
        pred = p.argmax(1)
        assert m.macro_f1 == sk_f1(y, pred)
        assert m.accuracy == pytest.approx(accuracy_score(y, pred), abs=1e-15)
        assert m.log_loss == pytest.approx(log_loss(y, p, labels=range(4)), rel=1e-5)
        assert m.ci[0] < m.macro_f1 < m.ci[1]
        folds = np.arange(len(y)) % 4
        per_fold = [sk_f1(y[folds == k], pred[folds == k]) for k in range(4)]
        assert list(m.fold_scores.values()) == pytest.approx(per_fold, abs=1e-12)
        assert m.fold_mean == pytest.approx(np.mean(per_fold)) and m.fold_std == pytest.approx(np.std(per_fold))
    seed_avg = r.model("f:seed-avg")
    assert seed_avg.kind == "seed-avg" and seed_avg.members == ["f_s1", "f_s2"]
    assert seed_avg.macro_f1 == sk_f1(y, ((probs["f_s1"] + probs["f_s2"]) / 2).argmax(1))


def test_focus_confusion_and_similarity(world):
    labels, tables, y, probs = world
    r = oof_report(labels, tables, n_boot=0, model="f_s1")
    pred = probs["f_s1"].argmax(1)
    assert r.focus == "f_s1" and r.models[0].ci is None
    np.testing.assert_array_equal(r.confusion, pd.crosstab(y, pred).reindex(index=range(4), columns=range(4), fill_value=0))
    off = r.confusion - np.diag(np.diag(r.confusion))
    t, p, count, share = r.top_confused[0]
    assert count == off.max() and off[t, p] == count and share == pytest.approx(count / (y == t).sum())
    assert r.names == ["solo", "f_s1", "f_s2"]
    flat = np.stack([probs[n].ravel() for n in r.names]).astype(np.float64)
    np.testing.assert_allclose(r.correlation, np.corrcoef(flat), atol=1e-10)
    preds = np.stack([probs[n].argmax(1) for n in r.names])
    assert r.agreement[0, 2] == pytest.approx((preds[0] == preds[2]).mean())
    d = r.to_dict()
    assert d["focus"] == "f_s1" and d["similarity"]["models"] == r.names
    assert d["metric"] == "macro_f1" and d["higher_is_better"] and d["macro_f1_note"].startswith("macro-F1 over the classes present")


def test_tta_views_and_merges_are_scored(world):
    labels, tables, y, _ = world
    solo = tables[0]
    scores = score_tta(solo, y)  # macro_f1 by default
    names = {s.name for s in scores}
    # each view alone, plus every merge that keeps the identity view: 3 + 3
    assert names == {"identity", "hflip", "vflip", "identity+hflip", "identity+vflip", "identity+hflip+vflip"}
    assert [s.macro_f1 for s in scores] == sorted((s.macro_f1 for s in scores), reverse=True)
    by = {s.name: s for s in scores}
    assert by["identity+hflip+vflip"].current and sum(s.current for s in scores) == 1
    merged = (solo.views["identity"] + solo.views["vflip"]) / 2
    assert by["identity+vflip"].macro_f1 == sk_f1(y, merged.argmax(1))
    assert "solo" in oof_report(labels, tables, n_boot=0).tta


def test_greedy_selection_beyond_six_views(world):
    labels, tables, y, _ = world
    rng = np.random.default_rng(1)
    base = tables[0].views["identity"]
    views = {"identity": base, **{f"v{i}": rng.dirichlet(np.ones(4), len(y)).astype(np.float32) for i in range(7)}}
    t = replace(tables[0], views=views, meta={"model": "many"})
    scores = score_tta(t, y)
    assert {s.name for s in scores if len(s.views) == 1} == set(views)  # every view alone
    assert all(s.views[0] == "identity" for s in scores if len(s.views) > 1)  # merges grow from identity
    assert len(scores) < 2**7  # not exhaustive


def test_progress_hook_hears_each_row(world):
    labels, tables, _, _ = world
    calls = []

    class Recorder:
        def start(self, description, total):
            calls.append(("start", total))

        def advance(self, n=1):
            calls.append(("advance", n))

        def stop(self):
            calls.append(("stop", None))

    oof_report(labels, tables, n_boot=0, progress=Recorder())
    assert calls == [("start", 4), *[("advance", 1)] * 4, ("stop", None)]  # 3 models + 1 seed average


def test_repeated_names_are_told_apart(world):
    labels, tables, _, _ = world
    r = oof_report(labels, [tables[1], tables[1]], n_boot=0)
    assert sorted(m.name for m in r.models) == ["f:seed-avg", "f_s1", "f_s1#2"]


def test_labels_in_another_class_order_are_matched_by_name(tmp_path):
    path, y, probs = synthetic(tmp_path)
    lab = read_labels(path)  # classes sorted from names: same here, so shuffle the tables' columns instead
    t = ensemble.read_table(tmp_path / "preds" / "f_s1")
    order = [2, 0, 3, 1]
    meta = {k: v for k, v in t.meta.items() if k != "classes"}  # re-saved with other columns: no recorded order
    shuffled = make_table(t.ids, [CLASSES[i] for i in order], t.probs[:, order], meta=meta)
    r = oof_report(lab, [shuffled], n_boot=0)
    assert r.classes == [CLASSES[i] for i in order]
    assert r.models[0].macro_f1 == sk_f1(y, probs["f_s1"].argmax(1))


def test_input_errors(tmp_path, world):
    labels, tables, _, _ = world
    short = tables[0].take(np.arange(1, len(tables[0]) - 2))
    with pytest.raises(AlignmentError, match=r'3 ids of .*train.csv are missing \("00000", "00398", "00399"\)'):
        oof_report(labels, [short])
    extra = make_table([*tables[1].ids, "x1", "x2"], CLASSES, np.vstack([tables[1].probs, np.full((2, 4), 0.25)]))
    with pytest.raises(AlignmentError, match=r'2 ids are not in .*train.csv \("x1", "x2"\)'):
        oof_report(labels, [extra])
    with pytest.raises(ConfigError, match="no prediction tables given"):
        oof_report(labels, [])
    with pytest.raises(UnknownNameError, match="unknown model \\(--model\\) 'nope'; choose one of: "):
        oof_report(labels, tables, n_boot=0, model="nope")
    nofold = tmp_path / "nofold.csv"
    pd.read_csv(tmp_path / "train.csv", dtype=str).drop(columns="fold").to_csv(nofold, index=False)
    with pytest.raises(LabelError, match="no fold column; add one with `ens folds`"):
        oof_report(read_labels(nofold, classes=CLASSES), tables)
    assert oof_report(read_labels(nofold, classes=CLASSES), tables, per_fold=False, n_boot=0).models[0].fold_scores is None
    other = tmp_path / "other.csv"
    pd.read_csv(tmp_path / "train.csv", dtype=str).assign(label="emu").to_csv(other, index=False)
    with pytest.raises(ClassMismatchError, match=r'labels "emu" in \'label\' are not among the 4 classes'):
        oof_report(read_labels(other), tables)


def test_files_entry_point_refuses_existing_outputs_before_work(tmp_path):
    labels, _, _ = synthetic(tmp_path)
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(ensemble.errors.OutputExistsError, match="r.json exists; pass --force"):
        oof_report_files(labels, [tmp_path / "preds" / "nope"], json_path=tmp_path / "r.json")
    r = oof_report_files(labels, [tmp_path / "preds" / "solo"], json_path=tmp_path / "r.json", force=True, n_boot=10)
    assert '"focus": "solo"' in (tmp_path / "r.json").read_text() and r.focus == "solo"
