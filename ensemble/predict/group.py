"""One preprocessing group of the engine's work: decode its rows once, run every fold model on them.

The steps of `run_group` are small functions over small records: `FoldModel` (a loaded runner's
key), `Norm` (a normalisation shared by models), `StackKey` (a stack of views shared by models),
`Batch` (a decoded batch) and `TorchPending` (an item's buffers until its last row is done). The
per-batch bookkeeping (rows left, progress, seconds, finished parts) is `work.GroupWork`, shared
with the torch-free path (`lite.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ensemble._progress import Progress
from ensemble.predict import resume
from ensemble.predict.config import Runner
from ensemble.predict.data import Preprocess, make_loader, normalise
from ensemble.predict.plan import Plan
from ensemble.predict.stacking import Stacked, run_stacked, stack_views
from ensemble.predict.tta import activate_views, merge_views
from ensemble.predict.work import GroupWork, Pending, RunStats, locate, row_blocks

RunnerFactory = Callable[..., Runner]  # (cfg, fold, *, device, amp, channels_last, fuse_bn) -> Runner


@dataclass(frozen=True)
class FoldModel:
    """Which model's which fold: the key of a loaded runner."""

    model: int
    fold: int


@dataclass(frozen=True)
class Norm:
    """A normalisation (RGB mean and std): a batch is normalised once per norm its models read."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class StackKey:
    """Which stack of views a fold model reads: its norm, its rows of the batch (None: all), its layout."""

    norm: Norm
    rows: bytes | None
    nhwc: bool


@dataclass(kw_only=True)
class TorchPending(Pending):
    """`work.Pending` with what the torch engine needs to know of its model's input.

    Attributes:
        norm: the normalisation its model reads.
        nhwc: whether its model reads NHWC (a channels_last torch model).
    """

    norm: Norm
    nhwc: bool


@dataclass
class Batch:
    """One decoded batch: its data rows, the uint8 images (B, 3, H, W) and which decoded."""

    rows: np.ndarray
    images: torch.Tensor
    keep: np.ndarray  # bool (B,)

    @property
    def good(self) -> np.ndarray:
        return self.rows[self.keep]


def run_group(
    plan: Plan, pre: Preprocess, items: list[int], parts: dict[int, resume.Part], stats: RunStats, *,
    make_runner: RunnerFactory, device: torch.device, amp: str | None, batch_size: int, workers: int, skip_bad: bool, channels_last: bool,
    fuse_bn: bool, progress: Progress,
) -> None:
    """Compute the items sharing one preprocessing: one decode of their rows for all of them.

    Each step is a function below: load the runners, check a decoded batch, normalise it once per
    norm, run each fold model on its rows of it (views stacked, shared by models that read the same
    stack); `work.GroupWork` counts the rows off and stores an item's part when its last row is done.
    """
    runners = _load_runners(plan, items, make_runner, device=device, amp=amp, channels_last=channels_last, fuse_bn=fuse_bn)
    work = GroupWork(plan, {i: _pending(plan, i, channels_last) for i in items}, parts, stats, progress, skip_bad=skip_bad)
    order, blocks = row_blocks([plan.items[i].rows for i in items])
    loader = make_loader(plan.data, order, pre, batch_size=batch_size, workers=workers, device=device, blocks=blocks)
    t_wait = time.perf_counter()
    for rows_b, images, errors in loader:
        decode_s = time.perf_counter() - t_wait
        rows = rows_b.numpy()
        batch = Batch(rows, images, work.check(rows, errors))
        xs = _normalised(batch, work.pending.values(), device)
        stacks: dict[StackKey, Stacked] = {}  # views of this batch, shared by the fold models
        work.step(rows, decode_s, partial(_predict_rows, plan, runners, batch, xs, stacks, batch_size, device))
        t_wait = time.perf_counter()
    work.close()


def _load_runners(
    plan: Plan, items: list[int], make_runner: RunnerFactory, *, device: torch.device, amp: str | None, channels_last: bool, fuse_bn: bool,
) -> dict[FoldModel, Runner]:
    """One runner per fold model of these items."""
    runners: dict[FoldModel, Runner] = {}
    with torch.inference_mode(False):  # weights loaded as ordinary tensors; runners infer in inference mode
        for i in items:
            key = FoldModel(plan.items[i].model, plan.items[i].fold)
            if key not in runners:
                runners[key] = make_runner(plan.configs[key.model], key.fold, device=device, amp=amp,
                                           channels_last=channels_last, fuse_bn=fuse_bn)
    return runners


def _pending(plan: Plan, i: int, channels_last: bool) -> TorchPending:
    """An item before its first batch (buffers are allocated when it gets one)."""
    it = plan.items[i]
    cfg = plan.configs[it.model]
    return TorchPending(i, len(it.rows), norm=Norm(*cfg.normalise_key()), nhwc=channels_last and cfg.backend == "torch")


def _normalised(batch: Batch, readers: Iterable[TorchPending], device: torch.device) -> dict[Norm, torch.Tensor]:
    """The decoded images of a batch normalised once per norm, float32 (b, 3, H, W) on `device`.

    Laid out NHWC straight from the uint8 batch when a model reading that norm takes NHWC (values
    are the same either way; the stacks of an NCHW reader are made contiguous when built).
    """
    images = batch.images if batch.keep.all() else batch.images[torch.from_numpy(batch.keep)]
    nhwc: dict[Norm, bool] = {}
    for p in readers:
        nhwc[p.norm] = nhwc.get(p.norm, False) or p.nhwc
    return {n: normalise(images, n.mean, n.std, device, channels_last=last) for n, last in nhwc.items()}


def _predict_rows(
    plan: Plan, runners: dict[FoldModel, Runner], batch: Batch, xs: dict[Norm, torch.Tensor], stacks: dict[StackKey, Stacked],
    chunk: int, device: torch.device, p: TorchPending,
) -> None:
    """Run an item's fold model on its decoded rows of a batch and put the results in its buffers."""
    it = plan.items[p.index]
    runner = runners[FoldModel(it.model, it.fold)]
    if p.probs is None:
        c, v = plan.configs[it.model].num_classes, len(plan.views) if plan.save_views else 0
        p.probs, p.ok = np.zeros((len(it.rows), c), np.float32), np.zeros(len(it.rows), bool)
        p.views = np.zeros((v, len(it.rows), c), np.float32) if v else None
    at, sel = locate(it.rows, batch.good)
    if not sel.any():
        return
    key = StackKey(p.norm, None if sel.all() else sel.tobytes(), p.nhwc)
    if key not in stacks:
        x = xs[p.norm] if sel.all() else xs[p.norm][torch.from_numpy(sel).to(device)]
        stacks[key] = stack_views(x, plan.views, channels_last=p.nhwc)
    logits = run_stacked(runner, stacks[key], chunk)  # (V, b, C)
    at = at[sel]
    task = plan.configs[it.model].task
    p.probs[at] = merge_views(logits, plan.merge, task).cpu().numpy()
    p.ok[at] = True
    if p.views is not None:
        p.views[:, at] = activate_views(logits, task).cpu().numpy()
