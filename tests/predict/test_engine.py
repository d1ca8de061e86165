"""The engine against an independent plain loop: timm's transform, the model, softmax, explicit flips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from timm.data import create_transform

import ensemble
from ensemble import read_table
from ensemble.errors import ConfigError, DataError
from ensemble.predict import data as data_mod
from ensemble.predict import engine, predict
from ensemble.predict.stacking import run_stacked, stack_views
from ensemble.predict.tta import parse_views
from tests.predict._data_helpers import CLASSES, load_module, make_config, write_data


def plain_loop(cfg, fold, paths, flips=("id",)):
    """Softmax of model(x), averaged over explicitly flipped copies (timm's own eval transform)."""
    model = load_module(cfg, fold)
    tf = create_transform(cfg.img_size, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation, mean=cfg.mean, std=cfg.std)
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    copies = {"id": x, "h": x.flip(3), "v": x.flip(2), "hv": x.flip(2).flip(3)}
    with torch.no_grad():
        return np.mean([model(copies[f]).softmax(-1).numpy() for f in flips], axis=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    csv = write_data(d, 8, folds=3)
    return d, csv, make_config(d, [0, 1, 2])


def test_oof_routes_each_row_to_its_fold_model_and_matches_a_plain_loop(setup, tmp_path):
    d, csv, cfg = setup
    res = predict(cfg, csv, split="oof", tta="hflip", out_dir=tmp_path, workers=0, batch_size=4)
    df = pd.read_csv(csv, dtype={"id": str})
    paths = [str(d / p) for p in df["path"]]
    expected = np.zeros((len(df), 3))
    for k in range(3):
        rows = np.flatnonzero(df["fold"] == k)
        expected[rows] = plain_loop(cfg, k, [paths[r] for r in rows], flips=("id", "h"))
    table = read_table(tmp_path / "m" / "oof.csv")
    assert list(table.ids) == list(df["id"]) and table.classes == list(CLASSES)
    np.testing.assert_allclose(table.probs, expected, atol=1e-5)
    np.testing.assert_array_equal(res["m/oof"].probs, table.probs)
    # the fold models differ, so routing a row to another fold's model would have been caught
    wrong = plain_loop(cfg, 1, paths[:3], flips=("id", "h"))
    assert not np.allclose(wrong, expected[:3], atol=1e-3) or (df["fold"][:3] == 1).all()
    meta = table.meta
    assert meta["kind"] == "oof" and meta["folds"] == [0, 1, 2] and meta["tta"] == {"views": ["identity", "hflip"], "merge": "mean"}
    assert set(meta["checkpoints"]) == {"0", "1", "2"} and meta["img_size"] == [32, 32] and meta["crop_pct"] == 0.875
    assert meta["data"]["rows"] == 8 and len(meta["data"]["sha256"]) == 64 and meta["family"] == "m"
    assert res.summary[0] | {"seconds": 0} == {
        "model": "m", "table": "oof", "split": "oof", "folds": [0, 1, 2], "rows": 8, "views": 2,
        "status": "computed", "seconds": 0, "path": str(tmp_path / "m" / "oof.csv"),
    }


def test_test_split_every_fold_on_every_row_and_their_mean(setup, tmp_path):
    d, csv, cfg = setup
    res = predict(cfg, csv, split="test", tta="d2", out_dir=tmp_path, workers=1, batch_size=3)
    paths = [str(d / p) for p in pd.read_csv(csv)["path"]]
    folds = []
    for k in range(3):
        t = read_table(tmp_path / "m" / f"test_fold{k}.csv")
        np.testing.assert_allclose(t.probs, plain_loop(cfg, k, paths, flips=("id", "h", "v", "hv")), atol=1e-5)
        assert t.meta["fold"] == k and t.meta["kind"] == "test"
        folds.append(t.probs.astype(np.float64))
    mean = read_table(tmp_path / "m" / "test.csv")
    np.testing.assert_allclose(mean.probs, np.mean(folds, axis=0), atol=1e-6)
    assert set(res) == {"m/test", "m/test_fold0", "m/test_fold1", "m/test_fold2"}


def test_each_image_is_decoded_once_for_all_folds_and_models(setup, tmp_path, monkeypatch):
    d, csv, cfg = setup
    other = make_config(d, [0, 1, 2], arch="test_efficientnet", name="eff")  # same preprocessing
    squashed = make_config(d, [0, 1], name="sq", resize_mode="squash")  # another preprocessing
    calls = []
    original = data_mod.ImageDataset.__getitem__
    monkeypatch.setattr(data_mod.ImageDataset, "__getitem__", lambda self, i: calls.append(i) or original(self, i))
    res = predict([cfg, other, squashed], csv, split="test", out_dir=tmp_path, workers=0)
    assert len(calls) == 2 * 8  # once per preprocessing, not once per fold or model
    paths = [str(d / p) for p in pd.read_csv(csv)["path"]]
    np.testing.assert_allclose(res["eff/test_fold2"].probs, plain_loop(other, 2, paths), atol=1e-5)


def test_saved_views_are_each_views_probabilities(setup, tmp_path):
    d, csv, cfg = setup
    predict(cfg, csv, split="oof", tta="vflip", merge="gmean", out_dir=tmp_path, save_views=True, workers=0)
    t = read_table(tmp_path / "m" / "oof.csv")
    assert sorted(t.views) == ["identity", "vflip"]
    df = pd.read_csv(csv)
    rows = np.flatnonzero(df["fold"] == 2)
    paths = [str(d / p) for p in df["path"][rows]]
    np.testing.assert_allclose(t.views["identity"][rows], plain_loop(cfg, 2, paths), atol=1e-5)
    np.testing.assert_allclose(t.views["vflip"][rows], plain_loop(cfg, 2, paths, flips=("v",)), atol=1e-5)
    g = np.sqrt(t.views["identity"].astype(np.float64) * t.views["vflip"])
    np.testing.assert_allclose(t.probs, g / g.sum(1, keepdims=True), atol=1e-5)


def test_views_are_stacked_into_chunked_forwards():
    calls = []

    class Rec:
        device, sha256 = torch.device("cpu"), ""

        def logits(self, x):
            calls.append(x.shape[0])
            return x.mean((2, 3))  # (B, 3): a "model" whose output tracks each view

    x = torch.randn(5, 3, 8, 8)
    views = parse_views("d2,scale_1.5")
    out = run_stacked(Rec(), stack_views(x, views), 8)
    assert calls == [8, 8, 4, 5]  # 4 same-size views x 5 images in chunks of 8, then the scaled view
    for i, v in enumerate(views):
        torch.testing.assert_close(out[i], v(x).mean((2, 3)))


def test_callable_module_and_api_name(setup, tmp_path):
    d, csv, cfg = setup
    res = ensemble.predict(cfg, csv, split="oof", out_dir=tmp_path, workers=0)
    assert ensemble.predict.predict is predict and list(res) == ["m/oof"]


def test_a_fold_without_checkpoint_is_an_error(setup, tmp_path):
    d, csv, _ = setup
    cfg = make_config(tmp_path, [0, 1], name="two")
    with pytest.raises(ConfigError) as e:
        predict(cfg, csv, split="oof", out_dir=tmp_path, workers=0)
    assert str(e.value) == (
        f"{csv}: fold 2 (2 rows) has no checkpoint of model 'two' (it has folds 0, 1); add fold 2's checkpoint "
        "to the card (or --checkpoint) or predict that fold's rows with --split test"
    )
    assert not (tmp_path / "two").exists()


def test_option_errors(setup, tmp_path):
    d, csv, cfg = setup
    with pytest.raises(ConfigError, match="model name\\(s\\) m given twice; each model writes .*/<name>/, give each a --name"):
        predict([cfg, cfg], csv, split="test", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown split 'val'; choose one of: oof, test"):
        predict(cfg, csv, split="val", out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"--batch-size 0: give 1 or more images per batch"):
        predict(cfg, csv, split="test", out_dir=tmp_path, batch_size=0)
    with pytest.raises(ConfigError, match="overrides apply to model cards, not to resolved ModelConfigs"):
        predict(cfg, csv, split="test", out_dir=tmp_path, overrides={"img_size": 64})
    assert not any(tmp_path.iterdir())


def test_missing_image_fails_before_any_work(setup, tmp_path, monkeypatch):
    d, _, cfg = setup
    csv = write_data(tmp_path, 4, folds=None, seed=3)
    (tmp_path / "img" / "0002.png").unlink()
    monkeypatch.setattr(engine, "make_runner", lambda *a, **k: pytest.fail("no model may load"))
    with pytest.raises(DataError, match=r"data.csv: 1 image files are missing, e.g. .*0002.png \(id '00002'"):
        predict(cfg, csv, split="test", out_dir=tmp_path / "preds", workers=0)
    assert not (tmp_path / "preds").exists()


def test_corrupt_image_error_and_skip_bad(setup, tmp_path):
    d, _, cfg = setup
    csv = write_data(tmp_path, 5, folds=None, seed=4)
    (tmp_path / "img" / "0003.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"0003.png: cannot decode the image of id '00003' \(.*\); replace the file or pass --skip-bad"):
        predict(cfg, csv, split="test", out_dir=tmp_path / "preds", workers=0)
    assert not list((tmp_path / "preds").glob("m/*.csv"))  # no partial table
    res = predict(cfg, csv, split="test", out_dir=tmp_path / "preds", workers=0, skip_bad=True)
    assert [s["id"] for s in res.skipped] == ["00003"] and res.skipped[0]["path"].endswith("0003.png")
    t = read_table(tmp_path / "preds" / "m" / "test.csv")
    assert list(t.ids) == ["00000", "00001", "00002", "00004"]
    side = json.loads((tmp_path / "preds" / "m" / "test_fold0.json").read_text())
    assert side["skipped"]["ids"] == ["00003"] and "no rows for them" in side["skipped"]["note"]
    paths = [str(tmp_path / f"img/{i:04d}.png") for i in (0, 1, 2, 4)]
    np.testing.assert_allclose(res["m/test_fold1"].probs, plain_loop(cfg, 1, paths), atol=1e-5)


def test_progress_counts_images_times_model_folds(setup, tmp_path):
    d, csv, cfg = setup
    events = []

    class Rec:
        def start(self, description, total):
            events.append(("start", total))

        def advance(self, n=1):
            events.append(("advance", n))

        def stop(self):
            events.append(("stop", None))

    predict(cfg, csv, split="test", out_dir=tmp_path, workers=0, batch_size=3, progress=Rec())
    assert events[0] == ("start", 8 * 3) and events[-1] == ("stop", None)
    assert sum(n for kind, n in events if kind == "advance") == 8 * 3


def test_onnx_models_run_through_the_same_engine(setup, tmp_path):
    from dataclasses import replace

    from ensemble.predict.export import export_onnx

    d, csv, cfg = setup
    two = make_config(tmp_path, [0, 1], name="two")
    rows = export_onnx(two, tmp_path / "onnx")
    onnx_cfg = replace(two, checkpoints={}, onnx={r["fold"]: tmp_path / "onnx" / f"fold{r['fold']}.onnx" for r in rows})
    torch_t = predict(two, csv, split="test", tta="hflip", out_dir=tmp_path / "t", workers=0)
    onnx_t = predict(onnx_cfg, csv, split="test", tta="hflip", out_dir=tmp_path / "o", workers=0)
    np.testing.assert_allclose(onnx_t["two/test"].probs, torch_t["two/test"].probs, atol=1e-4)
    assert onnx_t["two/test"].meta["backend"] == "onnx"

    # in one run the two share each decoded, normalised batch: NHWC for torch, NCHW for ONNX Runtime
    both = predict([two, replace(onnx_cfg, name="two_onnx")], csv, split="test", tta="hflip", out_dir=tmp_path / "b", workers=0)
    np.testing.assert_array_equal(both["two/test"].probs, torch_t["two/test"].probs)
    np.testing.assert_array_equal(both["two_onnx/test"].probs, onnx_t["two/test"].probs)


def test_options_record_gives_what_the_keyword_call_gives(setup, tmp_path):
    from dataclasses import FrozenInstanceError

    from ensemble.predict.api import PredictOptions, run

    d, csv, cfg = setup
    by_keywords = predict(cfg, csv, split="test", tta="hflip", out_dir=tmp_path / "k", workers=0, batch_size=5)
    options = PredictOptions(split="test", tta="hflip", out_dir=tmp_path / "r", workers=0, batch_size=5)
    by_record = run(cfg, csv, options)
    assert list(by_record) == list(by_keywords)
    for name in by_keywords:
        np.testing.assert_array_equal(by_record[name].probs, by_keywords[name].probs)
    with pytest.raises(FrozenInstanceError):
        options.force = True
    with pytest.raises(ConfigError, match="unknown split 'val'; choose one of: oof, test"):
        PredictOptions(split="val").check()


def test_header_only_data_csv_is_an_error_not_empty_tables(setup, tmp_path):
    from ensemble.errors import LabelError

    d, _, cfg = setup
    (tmp_path / "empty.csv").write_text("id,path\n")
    with pytest.raises(LabelError, match=r"empty.csv: no rows"):
        predict(cfg, tmp_path / "empty.csv", split="test", out_dir=tmp_path / "preds", workers=0)
    assert not (tmp_path / "preds").exists()
