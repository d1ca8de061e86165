"""Multi-label models in `ens predict`: a sigmoid per class, TTA merged per class, the task kept
everywhere (card, sidecar, resume keys, ONNX metadata). Oracles: a plain torch loop over the
images (PIL -> tensor -> model -> torch.sigmoid), numpy/scipy for the merges, torch vs ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from scipy.stats import gmean
from typer.testing import CliRunner

from ensemble import read_table
from ensemble.cli import app
from ensemble.errors import ConfigError, OutputExistsError
from ensemble.predict import engine, predict
from ensemble.predict.card import resolve_config
from ensemble.predict.export import export_onnx
from ensemble.predict.tta import MERGES, activate_views, merge_views
from tests.predict.conftest import handmade_onnx, tiny_model, write_card

LABELS = ("a", "b", "c", "d")  # a multi-label head of 4 sigmoid outputs
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


# -- merges against numpy/scipy ----------------------------------------------------------------------

def logits(v: int = 4, b: int = 5, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(v, b, c, generator=torch.Generator().manual_seed(seed)) * 3


def test_multilabel_merges_against_numpy_and_scipy():
    z = logits()
    p = 1 / (1 + np.exp(-z.double().numpy()))  # (V, B, C) per-view sigmoid
    np.testing.assert_allclose(merge_views(z, "mean", "multilabel").numpy(), p.mean(0), atol=1e-6)
    np.testing.assert_allclose(merge_views(z, "max", "multilabel").numpy(), p.max(0), atol=1e-6)
    # gmean: the geometric means of p and of 1 - p, renormalised per class (the multiclass gmean over two outcomes)
    g1, g0 = gmean(p, axis=0), gmean(1 - p, axis=0)
    np.testing.assert_allclose(merge_views(z, "gmean", "multilabel").numpy(), g1 / (g1 + g0), atol=1e-6)
    np.testing.assert_allclose(merge_views(z, "logits_mean", "multilabel").numpy(),
                               1 / (1 + np.exp(-z.double().numpy().mean(0))), atol=1e-6)
    np.testing.assert_allclose(activate_views(z, "multilabel").numpy(), p, atol=1e-6)


@pytest.mark.parametrize("merge", MERGES.names())
def test_multilabel_merge_invariances(merge):
    z = logits(seed=1)
    out = merge_views(z, merge, "multilabel")
    assert out.dtype == torch.float32 and out.shape == (5, 3)
    assert (out >= 0).all() and (out <= 1).all()
    assert not torch.allclose(out.sum(-1), torch.ones(5))  # each class on its own: rows are free
    torch.testing.assert_close(merge_views(z[[2, 0, 3, 1]], merge, "multilabel"), out, atol=1e-6, rtol=0)
    perm = [2, 0, 1]
    torch.testing.assert_close(merge_views(z[..., perm], merge, "multilabel"), out[:, perm], atol=1e-6, rtol=0)
    # a class's merge reads that class only: changing another class's logits leaves it alone
    z2 = z.clone()
    z2[..., 1] += 5
    torch.testing.assert_close(merge_views(z2, merge, "multilabel")[:, [0, 2]], out[:, [0, 2]], atol=0, rtol=0)
    torch.testing.assert_close(merge_views(z[:1], merge, "multilabel"), z[0].sigmoid(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("merge", MERGES.names())
def test_multiclass_merges_are_the_default_and_unchanged(merge):
    z = logits(seed=2)
    assert torch.equal(merge_views(z, merge), merge_views(z, merge, "multiclass"))
    torch.testing.assert_close(merge_views(z, merge).sum(-1), torch.ones(5), atol=1e-6, rtol=0)
    assert torch.equal(activate_views(z), z.softmax(-1))


# -- end to end against a plain torch loop -----------------------------------------------------------

@pytest.fixture(scope="module")
def ml(tmp_path_factory):
    """32x32 images (no resize), a data CSV with 2 folds, a multi-label test_resnet card (4 outputs)."""
    d = tmp_path_factory.mktemp("multilabel")
    rng = np.random.default_rng(3)
    (d / "img").mkdir()
    n = 6
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "img" / f"{i}.png")
    (d / "data.csv").write_text("id,path,fold\n" + "".join(f"r{i},img/{i}.png,{i % 2}\n" for i in range(n)))
    for k in range(2):
        torch.save(tiny_model("test_resnet", seed=20 + k, num_classes=len(LABELS)).state_dict(), d / f"f{k}.pth")
    card = write_card(d / "ml.toml", name="ml", arch="test_resnet", classes=list(LABELS), img_size=32, crop_pct=1.0,
                      mean=list(MEAN), std=list(STD), checkpoints="f{fold}.pth", task="multilabel")
    return d, card


def plain_loop(d: Path, fold: int, merge) -> np.ndarray:
    """The oracle: every image through the fold's model as is and flipped, sigmoid, merged per class."""
    model = tiny_model("test_resnet", seed=20 + fold, num_classes=len(LABELS))
    x = torch.stack([torch.from_numpy(np.array(Image.open(d / "img" / f"{i}.png").convert("RGB"))).permute(2, 0, 1)
                     for i in range(6)]).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        p = torch.stack([torch.sigmoid(model(x)), torch.sigmoid(model(torch.flip(x, dims=[3])))])  # (2, n, C)
    return merge(p.double().numpy())


ORACLE_MERGES = {
    "mean": lambda p: p.mean(0),
    "max": lambda p: p.max(0),
    "gmean": lambda p: gmean(p, axis=0) / (gmean(p, axis=0) + gmean(1 - p, axis=0)),
}


@pytest.mark.parametrize("merge", list(ORACLE_MERGES))
def test_sigmoid_tta_matches_a_plain_torch_loop(ml, tmp_path, merge):
    d, card = ml
    res = predict(card, d / "data.csv", split="test", tta="hflip", merge=merge, out_dir=tmp_path, workers=0,
                  device="cpu", save_views=True)
    for k in range(2):
        t = res[f"ml/test_fold{k}"]
        assert t.task == "multilabel" and list(t.ids) == [f"r{i}" for i in range(6)]
        np.testing.assert_allclose(t.probs, plain_loop(d, k, ORACLE_MERGES[merge]), atol=2e-5)
        np.testing.assert_allclose(t.views["hflip"], plain_loop(d, k, lambda p: p[1]), atol=2e-5)
    mean = (plain_loop(d, 0, ORACLE_MERGES[merge]) + plain_loop(d, 1, ORACLE_MERGES[merge])) / 2
    back = read_table(tmp_path / "ml" / "test.csv")
    np.testing.assert_allclose(back.probs, mean, atol=2e-5)
    assert back.task == "multilabel"
    assert json.loads((tmp_path / "ml" / "test.json").read_text())["task"] == "multilabel"
    assert read_table(tmp_path / "ml" / "test.csv", task="multilabel").views is not None


def test_a_multilabel_oof_table_has_rows_free_to_sum_to_anything(ml, tmp_path):
    d, card = ml
    t = predict(card, d / "data.csv", split="oof", out_dir=tmp_path, workers=0, device="cpu")["ml/oof"]
    expect = np.where((np.arange(6) % 2 == 0)[:, None], plain_loop(d, 0, lambda p: p[0]), plain_loop(d, 1, lambda p: p[0]))
    np.testing.assert_allclose(t.probs, expect, atol=2e-5)
    assert not np.allclose(t.probs.sum(1), 1, atol=1e-3)


def test_resume_never_reuses_parts_of_the_other_task(ml, tmp_path, monkeypatch):
    d, card = ml
    made = []
    original = engine.make_runner
    monkeypatch.setattr(engine, "make_runner", lambda cfg, fold, **kw: made.append(fold) or original(cfg, fold, **kw))
    run = dict(split="test", out_dir=tmp_path, workers=0, device="cpu")
    sig = predict(card, d / "data.csv", **run)["ml/test"]
    assert made == [0, 1]
    made.clear()
    with pytest.raises(OutputExistsError, match="was made from other inputs"):  # the sigmoid tables stand
        predict(card, d / "data.csv", overrides={"task": "multiclass"}, **run)
    soft = predict(card, d / "data.csv", overrides={"task": "multiclass"}, force=True, **run)["ml/test"]
    assert made == [0, 1]  # recomputed: no sigmoid part stood in for a softmax one
    assert soft.task == "multiclass"
    np.testing.assert_allclose(soft.probs.sum(1), 1, atol=1e-5)
    assert not np.allclose(soft.probs, sig.probs, atol=1e-3)
    made.clear()
    again = predict(card, d / "data.csv", force=True, **run)["ml/test"]  # back to the card's multilabel
    assert made == [0, 1] and again.task == "multilabel"
    np.testing.assert_allclose(again.probs, sig.probs, atol=0)


# -- cards and flags ---------------------------------------------------------------------------------

def test_card_task_defaults_to_multiclass_and_the_flag_wins(ml):
    _, card = ml
    assert resolve_config(card).task == "multilabel"
    assert resolve_config(card, task="multiclass").task == "multiclass"
    d2 = card.parent / "plain.toml"
    d2.write_text(card.read_text().replace('task = "multilabel"\n', ""))
    assert resolve_config(d2).task == "multiclass"


def test_an_unknown_task_in_the_card_is_named(ml, tmp_path):
    _, card = ml
    bad = write_card(tmp_path / "bad.toml", arch="test_resnet", classes=list(LABELS), checkpoints=str(card.parent / "f{fold}.pth"),
                     task="multi-label")
    with pytest.raises(ConfigError) as e:
        resolve_config(bad)
    assert str(e.value).startswith(f"{bad}: task: ")
    assert "task 'multi-label' is not one of multiclass, multilabel" in str(e.value)
    with pytest.raises(ConfigError, match="^--task: task 'sigmoid' is not one of multiclass, multilabel"):
        resolve_config(bad, task="sigmoid")


def test_cli_task_flag_overrides_the_card(ml, tmp_path):
    d, card = ml
    plain = card.parent / "plain_cli.toml"
    plain.write_text(card.read_text().replace('task = "multilabel"\n', ""))
    r = CliRunner().invoke(app, ["predict", "--card", str(plain), "--data", str(d / "data.csv"), "--split", "oof",
                                 "--out", str(tmp_path), "--workers", "0", "--device", "cpu", "--quiet", "--task", "multilabel"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ml" / "oof.json").read_text())["task"] == "multilabel"
    bad = CliRunner().invoke(app, ["predict", "--card", str(plain), "--data", str(d / "data.csv"), "--split", "oof",
                                   "--task", "softmax"])
    assert bad.exit_code == 2 and "softmax" in bad.output


# -- ONNX: export keeps the task; a file and a card that disagree are refused ------------------------

@pytest.fixture(scope="module")
def ml_onnx(ml, tmp_path_factory):
    _, card = ml
    out = tmp_path_factory.mktemp("ml_onnx")
    rows = export_onnx(resolve_config(card), out)
    return out, rows


def test_export_keeps_the_task_in_the_metadata_and_the_card(ml_onnx):
    out, rows = ml_onnx
    for r in rows:
        props = {p.key: p.value for p in onnx.load(r["file"]).metadata_props}
        assert props["ens.task"] == "multilabel"
    assert 'task = "multilabel"' in (out / "ml.toml").read_text()
    assert resolve_config(out / "ml.toml").task == "multilabel"


def test_onnx_and_torch_agree_on_a_multilabel_model(ml, ml_onnx, tmp_path):
    d, card = ml
    out, _ = ml_onnx
    run = dict(split="test", tta="hflip", merge="max", workers=0, device="cpu")
    torch_t = predict(card, d / "data.csv", out_dir=tmp_path / "t", **run)["ml/test"]
    onnx_t = predict(out / "ml.toml", d / "data.csv", out_dir=tmp_path / "o", **run)["ml/test"]
    assert torch_t.task == onnx_t.task == "multilabel"
    np.testing.assert_allclose(onnx_t.probs, torch_t.probs, atol=1e-5)
    mean = (plain_loop(d, 0, ORACLE_MERGES["max"]) + plain_loop(d, 1, ORACLE_MERGES["max"])) / 2
    np.testing.assert_allclose(onnx_t.probs, mean, atol=2e-5)


def test_a_card_contradicting_the_onnx_task_is_refused_naming_the_file(ml_onnx, tmp_path):
    out, _ = ml_onnx
    with pytest.raises(ConfigError) as e:
        resolve_config(out / "ml.toml", task="multiclass")
    assert str(e.value).startswith(f"{out / 'fold0.onnx'}: the ONNX model was exported as multilabel (metadata ens.task) but --task is multiclass")
    card = out / "ml.toml"
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(card.read_text().replace('"multilabel"', '"multiclass"').replace("fold{fold}.onnx", str(out / "fold{fold}.onnx")))
    with pytest.raises(ConfigError, match=r"set task = \"multilabel\" in the card \(or --task multilabel\) or give the ONNX file exported for multiclass"):
        resolve_config(wrong)
    # a card silent about the task follows the file's own (as img_size follows its input shape)
    silent = tmp_path / "silent.toml"
    silent.write_text(wrong.read_text().replace('task = "multiclass"\n', ""))
    assert resolve_config(silent).task == "multilabel"


def stamped_onnx(path: Path, task: str | None, seed: int) -> np.ndarray:
    w = handmade_onnx(path, seed=seed, classes=len(LABELS))
    if task is not None:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {"ens.task": task})
        onnx.save(model, str(path))
    return w


def test_every_fold_file_is_checked_and_one_without_the_key_follows_the_card(ml, tmp_path):
    d, _ = ml
    data = d / "data.csv"
    stamped_onnx(tmp_path / "m" / "fold0.onnx", "multilabel", 0)
    stamped_onnx(tmp_path / "m" / "fold1.onnx", "multiclass", 1)
    card = write_card(tmp_path / "m" / "m.toml", name="m", onnx="fold{fold}.onnx", classes=list(LABELS), img_size=[32, 32],
                      mean=[0.5] * 3, std=[0.5] * 3)
    assert resolve_config(card).task == "multilabel"  # from fold 0's file
    with pytest.raises(ConfigError, match="fold1.onnx: the ONNX model was exported as multiclass .* but the model's task is multilabel"):
        predict(card, data, split="test", out_dir=tmp_path / "out", workers=0, device="cpu")
    assert not (tmp_path / "out" / "m" / "test.csv").exists()
    # no key: the card decides, and the handmade logits go through a sigmoid
    w = stamped_onnx(tmp_path / "n" / "fold0.onnx", None, 2)
    card = write_card(tmp_path / "n" / "n.toml", name="n", onnx="fold0.onnx", classes=list(LABELS), img_size=[32, 32],
                      mean=[0.5] * 3, std=[0.5] * 3, task="multilabel")
    t = predict(card, data, split="test", out_dir=tmp_path / "out", workers=0, device="cpu")["n/test"]
    x = np.stack([np.asarray(Image.open(d / "img" / f"{i}.png").convert("RGB")) for i in range(6)]).astype(np.float64) / 255
    z = ((x - 0.5) / 0.5).mean(axis=(1, 2)) @ w.astype(np.float64)
    np.testing.assert_allclose(t.probs, 1 / (1 + np.exp(-z)), atol=1e-5)
    assert t.task == "multilabel"


def test_cli_export_task_flag_is_recorded_in_the_metadata(ml, tmp_path):
    _, card = ml
    r = CliRunner().invoke(app, ["export-onnx", "--card", str(card), "--out", str(tmp_path / "o"), "--folds", "0",
                                 "--task", "multiclass", "--quiet"])
    assert r.exit_code == 0, r.output
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "o" / "fold0.onnx")).metadata_props}
    assert props["ens.task"] == "multiclass"
    assert resolve_config(tmp_path / "o" / "ml.toml").task == "multiclass"
