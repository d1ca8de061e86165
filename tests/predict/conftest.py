"""Fixtures for the predict tests: tiny timm models saved in every checkpoint layout, cards, ONNX.

Stable names (the data-side tests may use them too):

- ``TINY_CLASSES`` = ("cat", "dog", "fox"), ``TINY_SIZE`` = 32: every tiny model has 3 classes and
  runs at 32x32.
- ``tiny_model(arch="test_resnet", seed=0)``: a seeded random timm model in eval mode whose
  BatchNorm running statistics are randomised too (so eval/train mode mix-ups change outputs).
- ``normalised_batch(n=4, seed=0)``: a float32 (n, 3, 32, 32) batch of normal noise.
- ``layout_checkpoints`` (session): dict layout -> file, all holding the weights of
  ``tiny_model("test_resnet", seed=0)`` in each accepted layout: "plain", "state_dict", "model",
  "model_state_dict", "module", "orig_mod", "lightning", "ddp_compiled", "safetensors", and two
  files with raw *and* EMA weights: "state_dict_ema", "model_ema" (raw = seed 1's weights, EMA =
  seed 0's, so `ema=True` must pick seed 0's to match).
- ``tiny_card`` (session): a card (TOML) for ``test_resnet``, classes TINY_CLASSES, img_size 32,
  three folds ``resnet/fold{fold}.pth`` holding ``tiny_model("test_resnet", seed=fold)``.
- ``tiny_effnet_card`` (session): the same for ``test_efficientnet`` with two folds
  (``tiny_model("test_efficientnet", seed=10 + fold)``).
- ``handmade_onnx(path, size=(32, 32), batch=None, classes=3, seed=0)``: an ONNX graph built with
  `onnx.helper` (no torch export): logits = spatial mean of the input (B, 3) @ W (3, classes); a
  None size or batch is a dynamic axis. Returns W (numpy) so tests compute the oracle by hand.
- ``tiny_onnx_card`` (session): ``ens export-onnx`` of ``tiny_card``'s first two folds: a folder
  holding fold0.onnx, fold1.onnx and the card ``tiny_resnet.toml`` (returned).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import timm
import torch

if TYPE_CHECKING:
    import numpy as np

TINY_CLASSES = ("cat", "dog", "fox")
TINY_SIZE = 32


def tiny_model(arch: str = "test_resnet", seed: int = 0, num_classes: int = len(TINY_CLASSES)) -> torch.nn.Module:
    """A seeded random timm model (eval mode), BatchNorm statistics randomised."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    gen = torch.Generator().manual_seed(seed + 1000)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def normalised_batch(n: int = 4, seed: int = 0) -> torch.Tensor:
    """(n, 3, TINY_SIZE, TINY_SIZE) float32 normal noise, like normalised images."""
    return torch.randn(n, 3, TINY_SIZE, TINY_SIZE, generator=torch.Generator().manual_seed(seed))


def handmade_onnx(path: Path, size: tuple[int, int] | None = (TINY_SIZE, TINY_SIZE), batch: int | None = None,
                  classes: int = len(TINY_CLASSES), seed: int = 0) -> "np.ndarray":
    """Write a minimal image classifier as ONNX by hand; returns its weight matrix W (3, classes)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(size=(3, classes)).astype(np.float32)
    h, wd = size if size is not None else ("height", "width")
    b = batch if batch is not None else "batch"
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "W"], ["scores"])],
        "handmade",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, h, wd])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [b, classes])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # readable by every onnxruntime this project supports
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return w


def write_card(path: Path, **values: object) -> Path:
    """A card written by hand (independent of ens's TOML writer); None values are left out."""
    import json

    def toml(v: object) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {toml(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(toml(x) for x in v) + "]"
        return json.dumps(v)

    lines = [f"{k} = {toml(v)}" for k, v in values.items() if v is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def layout_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("layouts")
    sd = tiny_model("test_resnet", 0).state_dict()
    raw = tiny_model("test_resnet", 1).state_dict()
    objs = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3, "arch": "test_resnet"},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "model_state_dict": {"model_state_dict": sd, "epoch": 1},
        "module": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "orig_mod": {f"_orig_mod.{k}": v for k, v in sd.items()},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 7,
                      "pytorch-lightning_version": "2.4.0"},
        "ddp_compiled": {f"module._orig_mod.{k}": v for k, v in sd.items()},
        "state_dict_ema": {"state_dict": raw, "state_dict_ema": sd},
        "model_ema": {"model": raw, "model_ema": sd},
    }
    out = {}
    for name, obj in objs.items():
        out[name] = d / f"{name}.pth"
        torch.save(obj, out[name])
    out["safetensors"] = d / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out["safetensors"]))
    return out


def _write_folds(root: Path, arch: str, sub: str, seeds: list[int]) -> None:
    (root / sub).mkdir(parents=True, exist_ok=True)
    for fold, seed in enumerate(seeds):
        torch.save(tiny_model(arch, seed).state_dict(), root / sub / f"fold{fold}.pth")


@pytest.fixture(scope="session")
def tiny_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_resnet")
    _write_folds(root, "test_resnet", "resnet", [0, 1, 2])
    return write_card(root / "tiny_resnet.toml", arch="test_resnet", classes=list(TINY_CLASSES),
                      img_size=TINY_SIZE, checkpoints="resnet/fold{fold}.pth")


@pytest.fixture(scope="session")
def tiny_effnet_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_effnet")
    _write_folds(root, "test_efficientnet", "effnet", [10, 11])
    return write_card(root / "tiny_effnet.toml", arch="test_efficientnet", classes=list(TINY_CLASSES),
                      img_size=TINY_SIZE, checkpoints="effnet/fold{fold}.pth")


@pytest.fixture(scope="session")
def tiny_onnx_card(tiny_card: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ensemble.predict.card import resolve_config
    from ensemble.predict.export import export_onnx

    out = tmp_path_factory.mktemp("tiny_onnx")
    export_onnx(resolve_config(tiny_card, folds=[0, 1]), out)
    return out / "tiny_resnet.toml"
