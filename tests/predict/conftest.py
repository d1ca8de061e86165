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
- ``tiny_onnx_card`` (session): ``ens export-onnx`` of ``tiny_card``'s first two folds: a folder
  holding fold0.onnx, fold1.onnx and the card ``tiny_resnet.toml`` (returned).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

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


def write_card(path: Path, **values: object) -> Path:
    """A card written by hand (independent of ens's TOML writer)."""
    import json

    lines = []
    for k, v in values.items():
        lines.append(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
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
