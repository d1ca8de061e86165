"""Resume: stored parts are reused exactly when their inputs match; nothing partial is left."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from ensemble import read_table
from ensemble.errors import OutputExistsError
from ensemble.predict import engine, plan, predict
from tests.predict._data_helpers import CLASSES, make_config, write_data


@pytest.fixture
def counted(monkeypatch):
    """Record which (model, fold) runners are made and how many images each forward sees."""
    made: list[tuple[str, int]] = []
    original = engine.make_runner

    def make(cfg, fold, **kw):
        made.append((cfg.name, fold))
        return original(cfg, fold, **kw)

    monkeypatch.setattr(engine, "make_runner", make)
    return made


@pytest.fixture
def case(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "SHARD_ROWS", 4)  # 9 rows -> shards of 4, 4, 1 in test; parts per fold in oof
    csv = write_data(tmp_path, 9, folds=3)
    return tmp_path, csv, make_config(tmp_path, [0, 1, 2])


def run(cfg, csv, out, **kw):
    return predict(cfg, csv, out_dir=out, workers=0, batch_size=4, **{"split": "test", **kw})


def test_nothing_changed_nothing_recomputed(case, counted):
    d, csv, cfg = case
    first = run(cfg, csv, d / "preds")
    assert {s["status"] for s in first.summary} == {"computed"} and len(counted) == 3
    counted.clear()
    again = run(cfg, csv, d / "preds")
    assert counted == [] and {s["status"] for s in again.summary} == {"up to date"}
    np.testing.assert_array_equal(again["m/test"].probs, first["m/test"].probs)
    # tables gone, parts kept: rebuilt from the parts without running a model
    for p in (d / "preds" / "m").glob("test*"):
        p.unlink()
    rebuilt = run(cfg, csv, d / "preds")
    assert counted == [] and {s["status"] for s in rebuilt.summary} == {"reused"}
    np.testing.assert_array_equal(read_table(d / "preds" / "m" / "test.csv").probs, first["m/test"].probs)


def test_changed_checkpoint_recomputes_only_that_fold(case, counted):
    d, csv, cfg = case
    first = run(cfg, csv, d / "preds", split="oof")
    torch.manual_seed(7)
    torch.save(timm.create_model("test_resnet", num_classes=len(CLASSES)).state_dict(), cfg.checkpoints[1])
    counted.clear()
    with pytest.raises(OutputExistsError) as e:
        run(cfg, csv, d / "preds", split="oof")
    assert str(e.value) == (
        f"{d / 'preds' / 'm' / 'oof.csv'} exists and was made from other inputs (checkpoint, data, preprocessing, "
        "TTA, AMP or BatchNorm folding differ); pass --force (force=True) to overwrite or choose another --out"
    )
    assert counted == []
    second = run(cfg, csv, d / "preds", split="oof", force=True)
    assert counted == [("m", 1)]
    assert second.summary[0]["status"] == "computed 1, reused 2"
    folds = second["m/oof"].meta and read_table(d / "preds" / "m" / "oof.csv")
    changed = ~np.isclose(folds.probs, first["m/oof"].probs, atol=1e-7).all(1)
    fold_of = np.array(__import__("pandas").read_csv(csv)["fold"])
    assert changed.any() and set(fold_of[changed]) == {1}
    # a fresh, non-resumed run agrees with the mixed one
    fresh = run(cfg, csv, d / "fresh", split="oof", resume=False)
    np.testing.assert_allclose(fresh["m/oof"].probs, folds.probs, atol=1e-6)


def test_changed_tta_or_merge_recomputes_everything(case, counted):
    d, csv, cfg = case
    run(cfg, csv, d / "preds", tta="hflip")
    counted.clear()
    res = run(cfg, csv, d / "preds", tta="vflip", force=True)
    assert sorted(counted) == [("m", 0), ("m", 1), ("m", 2)] and {s["status"] for s in res.summary} == {"computed"}
    counted.clear()
    res = run(cfg, csv, d / "preds", tta="vflip", merge="max", force=True)
    assert len(counted) == 3
    counted.clear()
    with pytest.raises(OutputExistsError, match=r"test_fold0.csv exists and would be recomputed \(no resume\) \(and 3 more tables\); pass --force"):
        run(cfg, csv, d / "preds", tta="vflip", merge="max", resume=False)
    run(cfg, csv, d / "preds", tta="vflip", merge="max", resume=False, force=True)
    assert len(counted) == 3


def test_interrupted_run_leaves_no_table_and_resumes(case, monkeypatch):
    d, csv, cfg = case
    original = engine.make_runner

    class Boom(Exception):
        pass

    def failing(cfg_, fold, **kw):
        runner = original(cfg_, fold, **kw)
        if fold == 2:
            logits, seen = runner.logits, []

            def flaky(x):
                seen.append(x.shape[0])
                if len(seen) == 2:  # fold 2 dies on its second batch
                    raise Boom
                return logits(x)

            runner.logits = flaky
        return runner

    monkeypatch.setattr(engine, "make_runner", failing)
    with pytest.raises(Boom):
        run(cfg, csv, d / "preds")
    m = d / "preds" / "m"
    assert not list(m.glob("*.csv")) and not list(m.glob("*.json"))
    assert not list(m.rglob("*.tmp"))
    stored = sorted(p.name for p in (m / ".parts").iterdir())
    # shard 0 done by every fold; shard 1 by folds 0 and 1 before fold 2 died on it
    assert stored == [f"test_fold{k}_000{s}.npz" for k, s in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0))]
    monkeypatch.setattr(engine, "make_runner", original)
    res = run(cfg, csv, d / "preds")
    assert [s["status"] for s in res.summary] == [
        "computed 1, reused 2", "computed 1, reused 2", "computed 2, reused 1", "computed 4, reused 5",
    ]
    clean = run(cfg, csv, d / "clean")
    for k in ("m/test", "m/test_fold2"):
        np.testing.assert_array_equal(res[k].probs, clean[k].probs)


def test_parts_with_skipped_images_are_not_reused_without_skip_bad(case, counted):
    d, csv, cfg = case
    (d / "img" / "0005.png").write_bytes(b"broken")
    res = run(cfg, csv, d / "preds", skip_bad=True)
    assert len(res["m/test"]) == 8
    for p in (d / "preds" / "m").glob("test*"):
        p.unlink()
    with pytest.raises(Exception, match="cannot decode the image of id '00005'"):
        run(cfg, csv, d / "preds")
