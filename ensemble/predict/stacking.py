"""A batch's TTA views stacked into as few forwards as possible, and the per-view logits back out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ensemble.predict.config import Runner
from ensemble.predict.tta import View


@dataclass
class Stacked:
    """A batch's TTA views stacked for as few forwards as possible (views of equal shape together).

    Attributes:
        groups: (view indices, their images concatenated: (v*B, 3, h, w)), one per output shape.
        batch: B, the images in the batch.
        n_views: V.
    """

    groups: list[tuple[list[int], torch.Tensor]]
    batch: int
    n_views: int


def stack_views(x: torch.Tensor, views: Sequence[View], *, channels_last: bool = False) -> Stacked:
    """Apply every view to a batch (B, 3, H, W) and stack the results by shape.

    Built once per batch and normalisation and shared by every fold model that reads it; with
    `channels_last` the stack is laid out NHWC once, not once per model.
    """
    by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = defaultdict(list)
    for i, view in enumerate(views):
        t = view(x)
        by_shape[tuple(t.shape[-2:])].append((i, t))
    groups = []
    for members in by_shape.values():
        stacked = torch.cat([t for _, t in members]) if len(members) > 1 else members[0][1]  # (v*B, 3, h, w)
        # a no-op when x came NHWC and the views kept it so (flips do); ONNX Runtime reads NCHW
        stacked = stacked.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        groups.append(([i for i, _ in members], stacked))
    return Stacked(groups, x.shape[0], len(views))


def run_stacked(runner: Runner, stacked: Stacked, chunk: int) -> torch.Tensor:
    """Logits of every view: float32 (V, B, C); forwards of at most `chunk` images (bounds memory)."""
    b = stacked.batch
    out: list[torch.Tensor | None] = [None] * stacked.n_views
    for indices, images in stacked.groups:
        logits = torch.cat([runner.logits(c).float() for c in images.split(chunk)])  # (v*B, C)
        for j, i in enumerate(indices):
            out[i] = logits[j * b:(j + 1) * b]
    return torch.stack(out)  # (V, B, C)
