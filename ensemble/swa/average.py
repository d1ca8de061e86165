"""Weight-space averaging of state dicts: float64 accumulation, original dtypes, explicit integer rules.

Floating-point tensors are averaged in float64 (a weighted mean, uniform by default) and written back
in their original dtype (the widest one when the sources disagree, e.g. float16 and float32 give
float32). Integer and bool tensors are never averaged (an average of counters or index tables floored
back to an integer is meaningless):

- 0-dim integer tensors are counters (BatchNorm's `num_batches_tracked`, an EMA's step count): the
  result takes the maximum over the sources (the most-trained count; BatchNorm only reads it when
  momentum is None, and `update_bn` recounts it anyway).
- any other integer or bool tensor (index tables such as `relative_position_index`, masks) is a
  constant of the architecture: it must be identical in every source, and is taken as is; a
  difference means the checkpoints come from different configurations and they are refused.

Checkpoints are read one at a time, so memory holds one source and the float64 accumulator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import torch

from ensemble._progress import NoProgress, Progress
from ensemble.errors import ConfigError, ModelLoadError, preview

StateDict = dict[str, torch.Tensor]


def normalise_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Weights that sum to 1: uniform when None, else `weights` rescaled.

    Raises:
        ConfigError: wrong count, a negative or non-finite weight, or all zero.
    """
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ConfigError(f"{len(w)} weights for {n} checkpoints; give one weight per checkpoint (--weights)")
    bad = [x for x in w if not math.isfinite(x) or x < 0]
    if bad:
        raise ConfigError(f"weights must be finite and >= 0, got {preview(bad)}; fix --weights")
    total = math.fsum(w)
    if total <= 0:
        raise ConfigError("weights sum to 0; give at least one positive weight (--weights)")
    return [x / total for x in w]


def average_checkpoints(
    paths: Sequence[str | os.PathLike],
    *,
    weights: Sequence[float] | None = None,
    ema: bool = False,
    trust: bool = False,
    expected: Collection[str] | None = None,
    progress: Progress | None = None,
) -> StateDict:
    """Average the state dicts of several checkpoints of one architecture.

    Args:
        paths: checkpoint files (any layout `ensemble.predict.checkpoint.load_state_dict` reads).
        weights: one non-negative weight per checkpoint, rescaled to sum to 1; uniform when None.
        ema: average the EMA weights of each checkpoint instead of the raw ones.
        trust: allow unpickling arbitrary objects (runs code from the files).
        expected: the model's keys, if known (lets the loader strip a wrapper prefix that only some
            keys carry, e.g. a Lightning module's `model.`).
        progress: hook advanced once per checkpoint read.

    Returns:
        The averaged state dict (key order of the first checkpoint); floating tensors in their
        original dtype, integer tensors per the module rules above.

    Raises:
        ConfigError: no paths, or bad weights.
        ModelLoadError: a checkpoint unreadable, or keys, shapes or integer constants that differ
            (the message names the first mismatching key and both files).
    """
    if not paths:
        raise ConfigError("no checkpoints to average; give checkpoint files or a --glob that matches some")
    paths = [Path(p) for p in paths]
    w = normalise_weights(weights, len(paths))
    from ensemble.predict.checkpoint import load_state_dict

    def load(p: Path) -> StateDict:
        return load_state_dict(p, ema=ema, trust=trust, expected=expected)

    progress = progress or NoProgress()
    progress.start("averaging checkpoints", len(paths))
    try:
        first = load(paths[0])
        # the first file's layout as meta tensors (shapes and dtypes, no memory) to check the others by
        ref = {k: torch.empty(t.shape, dtype=t.dtype, device="meta") for k, t in first.items()}
        acc: dict[str, torch.Tensor] = {}  # float keys: float64 running weighted sum
        out_dtype: dict[str, torch.dtype] = {}
        ints: StateDict = {}  # integer/bool keys: counters (max) or constants (equal)
        for k, t in first.items():
            if _is_float(t):
                # copy=True: tied weights share one tensor, which must not be scaled twice
                acc[k] = t.detach().to(torch.float64, copy=True).mul_(w[0])
                out_dtype[k] = t.dtype
            else:
                ints[k] = t.detach().clone()
        del first
        progress.advance()
        for p, wi in zip(paths[1:], w[1:]):
            sd = load(p)
            check_compatible(ref, sd, paths[0], p)
            for k, t in sd.items():
                if k in acc:
                    acc[k].add_(t.detach(), alpha=wi)  # promoted to float64 inside the op
                    out_dtype[k] = torch.promote_types(out_dtype[k], t.dtype)
                elif t.dim() == 0:
                    ints[k] = torch.maximum(ints[k], t.detach())
                elif not torch.equal(ints[k], t):
                    raise ModelLoadError(
                        f"integer tensor {k!r} differs between {paths[0]} and {p}: the checkpoints come from "
                        "different model configurations; average checkpoints of one configuration only"
                    )
            del sd
            progress.advance()
    finally:
        progress.stop()
    return {k: (acc[k].to(out_dtype[k]) if k in acc else ints[k]) for k in ref}


def check_compatible(ref: StateDict, other: StateDict, ref_path: Path, other_path: Path) -> None:
    """Raise `ModelLoadError` naming the first key whose presence, shape or kind differs.

    Keys are compared in the reference's order, then the other's extra keys.
    """
    fix = "average checkpoints of one architecture and number of classes (and --ema for all or none)"
    missing = [k for k in ref if k not in other]
    extra = [k for k in other if k not in ref]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {preview(missing)} that {ref_path} has")
        if extra:
            parts.append(f"has {preview(extra)} that {ref_path} lacks")
        raise ModelLoadError(f"{other_path} {' and '.join(parts)}; {fix}")
    for k, t in ref.items():
        o = other[k]
        if tuple(t.shape) != tuple(o.shape):
            raise ModelLoadError(
                f"key {k!r} has shape {tuple(t.shape)} in {ref_path} but {tuple(o.shape)} in {other_path}; {fix}"
            )
        if _is_float(t) != _is_float(o):
            raise ModelLoadError(
                f"key {k!r} is {t.dtype} in {ref_path} but {o.dtype} in {other_path}; {fix}"
            )


def _is_float(t: torch.Tensor) -> bool:
    return torch.is_floating_point(t)
