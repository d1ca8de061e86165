"""Helpers of the swa tests: seeded tiny timm checkpoints, torch's own average (the oracle), hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

timm = pytest.importorskip("timm")

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)  # the normalisation of the BatchNorm-refresh card


def make_model(arch: str = "test_resnet", seed: int = 0, num_classes: int = 5) -> torch.nn.Module:
    """A tiny timm model with seeded random weights and BN buffers that differ between seeds."""
    torch.manual_seed(seed)
    m = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    g = torch.Generator().manual_seed(seed + 1000)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g))
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
            mod.num_batches_tracked.fill_(100 * (seed + 1))
    return m


def save(sd: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


def oracle(models: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """torch's AveragedModel fed the models one by one, buffers averaged too (use_buffers=True)."""
    avg = torch.optim.swa_utils.AveragedModel(models[0], use_buffers=True)
    for m in models:
        avg.update_parameters(m)
    return avg.module.state_dict()



def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def images(data: Path, fold_out: int) -> torch.Tensor:
    """The rows outside `fold_out`, read with PIL and normalised by hand: (B, 3, 32, 32)."""
    from PIL import Image

    lines = [line.split(",") for line in data.read_text().split()[1:]]
    arr = np.stack([np.asarray(Image.open(data.parent / p).convert("RGB")) for _, p, f in lines if int(f) != fold_out])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
