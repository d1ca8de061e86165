"""The resolved configuration of one model: what every runner, loader and view needs.

This file is the interface between the model side (cards, checkpoints, runners, ONNX export) and the
data side (decoding, TTA, the prediction engine). `ensemble.predict.card.resolve_config` is the one
function that builds it (flags > card > timm pretrained_cfg > defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class ModelConfig:
    """One model (all its folds), fully resolved.

    Attributes:
        name: model name, used for `preds/<name>/`.
        family: seed family (seeds of one config share it); defaults to `name`.
        classes: class names in index order.
        img_size: network input (height, width).
        mean: per-channel normalisation mean (RGB, 0..1 scale).
        std: per-channel normalisation std.
        crop_pct: resize to img_size / crop_pct, then center-crop img_size (timm's eval transform);
            1.0 means no crop.
        interpolation: PIL resampling name ("bilinear", "bicubic", "nearest", ...).
        resize_mode: "crop" (shorter side to img_size / crop_pct, then center crop) or "squash"
            (resize both sides straight to img_size, aspect ratio not kept).
        arch: timm architecture name for the torch runner; None for ONNX models.
        checkpoints: fold -> checkpoint file (torch runner).
        onnx: fold -> ONNX file (ONNX runner); empty for torch models.
        ema: load the EMA weights of a checkpoint that holds both.
        trust_checkpoint: allow unpickling arbitrary objects (runs code from the file).
        card_path: the model card this came from, if any.
        model_kwargs: extra keyword arguments for `timm.create_model` (e.g. `global_pool`,
            `drop_path_rate`); models with a fixed input size get `img_size` automatically.
    """

    name: str
    classes: tuple[str, ...]
    img_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    resize_mode: str = "crop"
    arch: str | None = None
    checkpoints: dict[int, Path] = field(default_factory=dict)
    onnx: dict[int, Path] = field(default_factory=dict)
    family: str = ""
    ema: bool = False
    trust_checkpoint: bool = False
    card_path: Path | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def folds(self) -> list[int]:
        """The folds this model has weights for."""
        return sorted(self.onnx or self.checkpoints)

    @property
    def backend(self) -> str:
        """"onnx" or "torch"."""
        return "onnx" if self.onnx else "torch"

    def preprocess_key(self) -> tuple:
        """Models with equal keys share decoded, resized images (decode once for all of them)."""
        return (self.img_size, self.crop_pct, self.interpolation, self.resize_mode)

    def normalise_key(self) -> tuple:
        return (self.mean, self.std)


class Runner(Protocol):
    """One fold's model behind one interface, torch or ONNX Runtime.

    `logits` takes a batch of normalised images, float32 of shape (B, 3, H, W) on `device`, and
    returns float32 logits of shape (B, C) (the engine applies softmax and merges TTA views).
    """

    device: torch.device
    sha256: str  # of the weights file, recorded in the table sidecar

    def logits(self, x: torch.Tensor) -> torch.Tensor: ...
