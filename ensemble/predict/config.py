"""The resolved configuration of one model: what every runner, loader and view needs.

This file is the interface between the model side (cards, checkpoints, runners, ONNX export) and the
data side (decoding, TTA, the prediction engine). `ensemble.predict.card.resolve_config` is the one
function that builds it (flags > card > timm pretrained_cfg > defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ensemble.errors import ConfigError
from ensemble.task import MULTICLASS, check_task

if TYPE_CHECKING:  # the torch-free ONNX path (`lite.py`) reads this module too
    import torch

ONNX_TASK_KEY = "ens.task"  # the ONNX metadata_props key `ens export-onnx` records the task under


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
        task: "multiclass" (a softmax over the logits) or "multilabel" (a sigmoid per class); see
            `ensemble.task`.
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
    task: str = MULTICLASS

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
    returns float32 logits of shape (B, C) (the engine applies the task's softmax or sigmoid and merges
    TTA views).
    """

    device: torch.device
    sha256: str  # of the weights file, recorded in the table sidecar

    def logits(self, x: torch.Tensor) -> torch.Tensor: ...


def check_onnx_task(path: Path | str, recorded: str | None, task: str, where: str) -> str:
    """The task an ONNX file records in its metadata (`ens.task`), checked against the configured one.

    Args:
        path: the ONNX file (named in the errors).
        recorded: the value of its `ens.task` metadata, or None when it records none.
        task: the configured task.
        where: where the configured task came from (a card and key, a flag, or "the default").

    Returns:
        `task` (a file that records none follows the configuration).

    Raises:
        ConfigError: the file records an unknown task, or the other task.
    """
    if recorded is None:
        return task
    check_task(recorded, f"{path}: metadata {ONNX_TASK_KEY}")
    if recorded != task:
        raise ConfigError(
            f"{path}: the ONNX model was exported as {recorded} (metadata {ONNX_TASK_KEY}) but {where} is {task}; "
            f"set task = \"{recorded}\" in the card (or --task {recorded}) or give the ONNX file exported for {task}"
        )
    return task
