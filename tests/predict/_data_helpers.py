"""Helpers for the data-side predict tests: images, data CSVs, per-fold tiny timm models, a runner.

`TimmRunner` is an independent stand-in for the model side's runner: a timm model with its weights
loaded by plain `torch.load`, so the engine is tested apart from the checkpoint loader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from PIL import Image

from ensemble.predict.config import ModelConfig

CLASSES = ("cat", "dog", "eel")
IMG = (32, 32)


def write_images(folder: Path, n: int, *, seed: int = 0, size: tuple[int, int] = (40, 48)) -> list[str]:
    """n random RGB PNGs of (height, width) `size`; returns their names relative to `folder`."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / "img" / f"{i:04d}.png")
        names.append(f"img/{i:04d}.png")
    return names


def write_data(folder: Path, n: int, *, folds: int | None = 3, seed: int = 0, name: str = "data.csv") -> Path:
    """A data CSV with ids "00000".., paths and (optionally) folds 0..folds-1 in a shuffled pattern."""
    paths = write_images(folder, n, seed=seed)
    df = pd.DataFrame({"id": [f"{i:05d}" for i in range(n)], "path": paths})
    if folds:
        df["fold"] = np.random.default_rng(seed + 1).permutation(np.arange(n) % folds)
    df.to_csv(folder / name, index=False)
    return folder / name


def make_config(
    folder: Path, folds: list[int], *, arch: str = "test_resnet", name: str = "m", **kw
) -> ModelConfig:
    """A ModelConfig whose fold k checkpoint holds distinct random weights (seed 100 + k)."""
    ckpts = {}
    for k in folds:
        torch.manual_seed(100 + k)
        model = timm.create_model(arch, pretrained=False, num_classes=len(CLASSES))
        ckpts[k] = folder / f"{name}_fold{k}.pt"
        torch.save(model.state_dict(), ckpts[k])
    defaults = dict(img_size=IMG, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875,
                    interpolation="bilinear", resize_mode="crop")
    return ModelConfig(name=name, classes=CLASSES, arch=arch, checkpoints=ckpts, **{**defaults, **kw})


def load_module(cfg: ModelConfig, fold: int) -> torch.nn.Module:
    model = timm.create_model(cfg.arch, pretrained=False, num_classes=cfg.num_classes)
    model.load_state_dict(torch.load(cfg.checkpoints[fold], weights_only=True))
    return model.eval()


class TimmRunner:
    """Runner protocol over a plain timm module (logits of normalised float32 batches)."""

    def __init__(self, cfg: ModelConfig, fold: int, *, device: torch.device, **_: object) -> None:
        self.device = device
        self.model = load_module(cfg, fold).to(device)
        self.sha256 = "test"
        self.calls: list[int] = []

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.model(x).float()
