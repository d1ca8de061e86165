"""The torch-free ONNX path (`ensemble.predict.lite`) against the torch engine (the oracle): the same
tables up to float rounding, the same parts and keys, the same errors; and when it is taken."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from ensemble.errors import DataError
from ensemble.predict import lite, predict
from ensemble.predict.card import resolve_config
from ensemble.predict.tta import MERGES, activate_array, activate_views, merge_views, parse_views
from tests.predict._data_helpers import write_data
from tests.predict.conftest import TINY_CLASSES, handmade_onnx, write_card


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("merge", MERGES.names())
def test_array_merges_equal_the_torch_merges(merge, task):
    z = torch.randn(8, 6, 5, generator=torch.Generator().manual_seed(4)) * 4
    torch.testing.assert_close(torch.from_numpy(MERGES.get(merge).array(z.numpy(), task)), merge_views(z, merge, task),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.from_numpy(activate_array(z.numpy(), task)), activate_views(z, task), atol=1e-6, rtol=0)


def test_array_views_equal_the_tensor_views_exactly():
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    views = parse_views("d4")
    assert len(views) == 8 and all(v.array_fn is not None for v in views)
    for v in views:
        np.testing.assert_array_equal(v.array_fn(x.numpy()), v(x).numpy(), err_msg=v.name)
    assert all(v.array_fn is None for v in parse_views("center_crop,scale,five_crop")[1:])  # they resample


@pytest.fixture
def onnx_case(tmp_path):
    data = write_data(tmp_path, 11, folds=2)
    for fold in range(2):
        handmade_onnx(tmp_path / "m" / f"fold{fold}.onnx", seed=fold)
    for fold in range(2):  # a fixed batch of 4: chunks, the last padded
        handmade_onnx(tmp_path / "fixed" / f"fold{fold}.onnx", seed=5 + fold, batch=4)
    card = write_card(tmp_path / "m" / "m.toml", name="m", onnx="fold{fold}.onnx", folds=[0, 1], classes=list(TINY_CLASSES),
                      img_size=[32, 32], mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.4])
    fixed = write_card(tmp_path / "fixed" / "fixed.toml", name="fixed", onnx="fold{fold}.onnx", classes=list(TINY_CLASSES),
                       img_size=[32, 32], mean=[0.5] * 3, std=[0.5] * 3)
    return tmp_path, data, card, fixed


@pytest.mark.parametrize(("task", "merge", "tta"), [
    ("multiclass", "mean", "d4"), ("multiclass", "gmean", "hflip,vflip"), ("multilabel", "max", "d2"),
    ("multilabel", "gmean", "rot90"),
])
def test_lite_tables_equal_the_torch_engine(onnx_case, monkeypatch, task, merge, tta):
    d, data, card, fixed = onnx_case
    kw = dict(tta=tta, merge=merge, workers=0, device="cpu", save_views=True, batch_size=3, overrides={"task": task})
    ours = {s: predict([card, fixed], data, split=s, out_dir=d / "lite", **kw) for s in ("oof", "test")}
    monkeypatch.setenv("ENS_PREDICT_TORCH", "1")
    theirs = {s: predict([card, fixed], data, split=s, out_dir=d / "torch", **kw) for s in ("oof", "test")}
    for s in ours:
        assert ours[s].keys() == theirs[s].keys()
        for name, t in ours[s].items():
            o = theirs[s][name]
            assert list(t.ids) == list(o.ids) and t.task == o.task == task
            np.testing.assert_allclose(t.probs, o.probs, atol=1e-6, err_msg=name)
            assert t.views.keys() == o.views.keys()
            for v in t.views:
                np.testing.assert_allclose(t.views[v], o.views[v], atol=1e-6, err_msg=f"{name} {v}")
            assert t.meta["inputs_key"] == o.meta["inputs_key"]  # the same inputs: parts of either path resume the other


def test_parts_of_the_torch_engine_are_reused_by_the_lite_path(onnx_case, monkeypatch):
    d, data, card, _ = onnx_case
    monkeypatch.setenv("ENS_PREDICT_TORCH", "1")
    predict(card, data, split="test", tta="hflip", out_dir=d / "p", workers=0, device="cpu")
    monkeypatch.delenv("ENS_PREDICT_TORCH")
    for f in (d / "p" / "m").glob("test.*"):  # the mean table and its sidecar: rebuilt from the parts
        f.unlink()
    again = predict(card, data, split="test", tta="hflip", out_dir=d / "p", workers=0, device="cpu")
    assert {s["table"]: s["status"] for s in again.summary} == {"test_fold0": "up to date", "test_fold1": "up to date",
                                                                 "test": "reused"}


def test_unreadable_images_are_skipped_or_named_as_the_torch_engine_does(onnx_case):
    d, data, card, _ = onnx_case
    (d / "img" / "0003.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"img/0003.png: cannot decode the image of id '00003'"):
        predict(card, data, split="test", out_dir=d / "x", workers=0, device="cpu")
    res = predict(card, data, split="test", out_dir=d / "y", workers=0, device="cpu", skip_bad=True)
    assert [s["id"] for s in res.skipped] == ["00003"] and "00003" not in set(res["m/test"].ids)


class _Events:
    """A progress bar that records what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, description: str, total: int | None) -> None:
        self.events.append(("start", description, total))

    def advance(self, n: int = 1) -> None:
        self.events.append(("advance", n))

    def stop(self) -> None:
        self.events.append(("stop",))


def test_progress_parts_and_skipped_rows_follow_the_torch_engine(onnx_case, monkeypatch):
    d, data, card, fixed = onnx_case
    (d / "img" / "0004.png").write_bytes(b"not a png")
    kw = dict(tta="hflip", workers=0, device="cpu", skip_bad=True, batch_size=4)
    runs = {}
    for engine in ("lite", "torch"):
        if engine == "torch":
            monkeypatch.setenv("ENS_PREDICT_TORCH", "1")
        bar = _Events()
        res = predict([card, fixed], data, split="oof", out_dir=d / engine, progress=bar, **kw)
        parts = {p.relative_to(d / engine): np.load(p) for p in sorted((d / engine).rglob(".parts/*.npz"))}
        runs[engine] = bar.events, [s["id"] for s in res.skipped], parts
    (lite_bar, lite_skipped, lite_parts), (torch_bar, torch_skipped, torch_parts) = runs["lite"], runs["torch"]
    assert lite_bar == torch_bar and lite_bar[0] == ("start", "predicting", 2 * 11)  # two models, 11 rows each
    assert sum(e[1] for e in lite_bar if e[0] == "advance") == 2 * 11
    assert lite_skipped == torch_skipped == ["00004"]
    assert lite_parts.keys() == torch_parts.keys() and len(lite_parts) == 4  # 2 models x 2 folds
    for name, part in lite_parts.items():
        other = torch_parts[name]
        assert part.files == other.files
        for k in part.files:
            if part[k].dtype.kind == "f":
                np.testing.assert_allclose(part[k], other[k], atol=1e-6, err_msg=f"{name} {k}")
            else:
                np.testing.assert_array_equal(part[k], other[k], err_msg=f"{name} {k}")


def test_when_the_torch_free_path_is_taken(onnx_case, monkeypatch, tmp_path):
    _, _, card, _ = onnx_case
    cfg = resolve_config(card)
    hflip = parse_views("hflip")
    assert lite.usable([cfg], hflip, device="cpu", amp="auto")
    assert lite.usable([cfg], hflip, device="CPU", amp="none")
    assert not lite.usable([cfg], parse_views("center_crop"), device="cpu", amp="auto")  # resamples: torch's interpolate
    assert not lite.usable([cfg], hflip, device="cuda", amp="auto")
    assert not lite.usable([cfg], hflip, device="cpu", amp="bf16")  # the torch engine names the error
    assert not lite.usable([replace(cfg, onnx={}, checkpoints={0: tmp_path / "x.pth"}, arch="test_resnet")], hflip,
                           device="cpu", amp="auto")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not lite.usable([cfg], hflip, device="cpu", amp="auto")
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("ENS_PREDICT_TORCH", "1")
    assert not lite.usable([cfg], hflip, device="cpu", amp="auto")


def test_an_onnx_only_run_never_imports_torch(onnx_case):
    d, data, card, _ = onnx_case
    probe = (
        "import sys\nfrom ensemble.predict import predict\n"
        f"r = predict({str(card)!r}, {str(data)!r}, split='oof', tta='d2', out_dir={str(d / 'probe')!r}, workers=0, device='cpu')\n"
        "print(len(r['m/oof']), 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=d)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["11", "False"]
