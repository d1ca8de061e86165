"""One preprocessing group of the engine's work: decode its rows once, run every fold model on them.

The steps of `run_group` are small functions over small records: `FoldModel` (a loaded runner's
key), `Norm` (a normalisation shared by models), `StackKey` (a stack of views shared by models),
`Batch` (a decoded batch) and `Pending` (an item's buffers until its last row is done).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ensemble._progress import Progress
from ensemble.predict import resume
from ensemble.predict.config import Runner
from ensemble.predict.data import Preprocess, decode_error, make_loader, normalise
from ensemble.predict.plan import Plan
from ensemble.predict.stacking import Stacked, run_stacked, stack_views
from ensemble.predict.tta import activate_views, merge_views
from ensemble.predict.work import RunStats, finish_part, locate, row_blocks

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


@dataclass
class Pending:
    """An item being computed: its output buffers, filled batch by batch until `left` is 0.

    Attributes:
        index: the item's index in the plan.
        norm: the normalisation its model reads.
        nhwc: whether its model reads NHWC (a channels_last torch model).
        left: rows not yet seen.
        probs: merged probabilities, float32 (n, C).
        ok: which rows were decoded, bool (n,).
        views: per-view probabilities, float32 (V, n, C), or None when views are not kept.
    """

    index: int
    norm: Norm
    nhwc: bool
    left: int
    probs: np.ndarray | None = None
    ok: np.ndarray | None = None
    views: np.ndarray | None = None


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
    stack), and store an item's part when its last row is done.
    """
    runners = _load_runners(plan, items, make_runner, device=device, amp=amp, channels_last=channels_last, fuse_bn=fuse_bn)
    pending = {i: _pending(plan, i, channels_last) for i in items}
    for i in items:
        stats.seconds[i] = 0.0
    order, blocks = row_blocks([plan.items[i].rows for i in items])
    loader = make_loader(plan.data, order, pre, batch_size=batch_size, workers=workers, device=device, blocks=blocks)
    t_wait = time.perf_counter()
    for rows_b, images, errors in loader:
        decode_s = time.perf_counter() - t_wait
        batch = _checked_batch(plan, rows_b.numpy(), images, errors, stats, skip_bad)
        xs = _normalised(batch, pending.values(), device)
        stacks: dict[StackKey, Stacked] = {}  # views of this batch, shared by the fold models
        for i in items:
            p = pending[i]
            it = plan.items[i]
            done = 0 if p.left == 0 else int(locate(it.rows, batch.rows)[1].sum())
            if not done:
                continue
            t0 = time.perf_counter()
            runner = runners[FoldModel(it.model, it.fold)]
            _predict_rows(plan, p, batch, xs, stacks, runner, batch_size, device)
            p.left -= done
            progress.advance(done)
            stats.seconds[i] += time.perf_counter() - t0 + decode_s
            decode_s = 0.0  # the batch's decode wait is charged once, to the first item that reads it
            if p.left == 0:
                parts[i] = finish_part(plan, i, p.probs, p.ok, p.views, stats)
        t_wait = time.perf_counter()
    unfinished = [i for i in items if pending[i].left > 0]
    if unfinished:  # a bug, not a user error: the loader yields every row once
        raise RuntimeError(f"{len(unfinished)} work items did not receive all their rows")


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


def _pending(plan: Plan, i: int, channels_last: bool) -> Pending:
    """An item before its first batch (buffers are allocated when it gets one)."""
    it = plan.items[i]
    cfg = plan.configs[it.model]
    return Pending(i, Norm(*cfg.normalise_key()), channels_last and cfg.backend == "torch", len(it.rows))


def _checked_batch(
    plan: Plan, rows: np.ndarray, images: torch.Tensor, errors: list[str], stats: RunStats, skip_bad: bool,
) -> Batch:
    """The loader's batch with its undecodable images recorded (skip_bad) or raised."""
    for j, e in enumerate(errors):
        if not e:
            continue
        if not skip_bad:
            raise decode_error(plan.data, int(rows[j]), e)
        stats.bad[int(rows[j])] = e
    return Batch(rows, images, np.array([not e for e in errors]))


def _normalised(batch: Batch, readers: Iterable[Pending], device: torch.device) -> dict[Norm, torch.Tensor]:
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
    plan: Plan, p: Pending, batch: Batch, xs: dict[Norm, torch.Tensor], stacks: dict[StackKey, Stacked],
    runner: Runner, chunk: int, device: torch.device,
) -> None:
    """Run one fold model on its decoded rows of a batch and put the results in its buffers."""
    it = plan.items[p.index]
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
