"""The prediction engine: run the work list, decoding each image once for every model that needs it.

Items (model x fold x shard, see `plan.py`) are grouped by preprocessing; each group streams its
rows through one DataLoader (decoding in workers, overlapped with compute). Every batch is moved
to the device and normalised once per normalisation, its TTA views are stacked into one forward
per fold model (chunked by `batch_size`), and per-view logits are merged into probabilities. An
item's part is stored the moment its last row is done, so an interrupted run resumes from there.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ensemble._progress import NoProgress, Progress
from ensemble.predict import resume
from ensemble.predict.config import ModelConfig, Runner
from ensemble.predict.data import Preprocess, decode_error, make_loader, normalise
from ensemble.predict.plan import Plan
from ensemble.predict.tta import View, merge_views

log = logging.getLogger(__name__)


def make_runner(cfg: ModelConfig, fold: int, *, device: torch.device, amp: str | None, channels_last: bool,
                fuse_bn: bool = True) -> Runner:
    """The model side's runner factory (torch or ONNX Runtime); a seam for tests and distributed runs."""
    from ensemble.predict.runners import make_runner as factory

    return factory(cfg, fold, device=device, amp=amp, channels_last=channels_last, fuse_bn=fuse_bn)


def resolve_device(spec: str) -> torch.device:
    """The model side's device resolution ("auto" -> CUDA when usable, else CPU)."""
    from ensemble.predict.runners import resolve_device as resolve

    return resolve(spec)


def amp_mode(amp: str | None, device: torch.device) -> str:
    """The resolved AMP dtype name ("float32" when off); checks `amp` before any work."""
    from ensemble.predict.runners import amp_dtype

    return str(amp_dtype(amp, device) or torch.float32).removeprefix("torch.")


@dataclass
class RunStats:
    """What happened to each item: reused from a stored part, or computed (and in how many seconds)."""

    reused: set[int]
    seconds: dict[int, float]
    bad: dict[int, str]  # data row -> why it was skipped


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


def forward_views(runner: Runner, x: torch.Tensor, views: Sequence[View], chunk: int) -> torch.Tensor:
    """Logits of every view of a batch (B, 3, H, W) -> float32 (V, B, C), views stacked per forward."""
    return run_stacked(runner, stack_views(x, views), chunk)


def run_plan(
    plan: Plan,
    *,
    device: torch.device,
    amp: str | None,
    batch_size: int,
    workers: int,
    skip_bad: bool,
    resume_parts: bool,
    channels_last: bool = True,
    fuse_bn: bool = True,
    progress: Progress | None = None,
    items: Collection[int] | None = None,
) -> tuple[dict[int, resume.Part], RunStats]:
    """Reuse or compute the part of every item the plan needs (or of `items` alone).

    Args:
        items: the items to reuse or compute (a distributed rank's share); default: every item
            of an output that is not up to date (`Plan.needed`).

    Returns:
        item index -> its part, and what was reused/computed.

    Raises:
        DataError: an image cannot be read (without `skip_bad`); parts finished so far are kept.
    """
    if device.type == "cuda":  # pinned-memory thread and default stream on this rank's GPU, not cuda:0
        torch.cuda.set_device(device)
    parts: dict[int, resume.Part] = {}
    stats = RunStats(set(), {}, {})
    needed = set(plan.needed() if items is None else items)
    for i in sorted(needed):
        item = plan.items[i]
        if resume_parts and (part := resume.load_part(item.path, item.key, item.rows, allow_bad=skip_bad)) is not None:
            parts[i] = part
            stats.reused.add(i)
            stats.bad.update(part.bad or {})
    pending = sorted(needed - set(parts))
    groups: dict[Preprocess, list[int]] = defaultdict(list)
    for i in pending:
        groups[Preprocess.of(plan.configs[plan.items[i].model])].append(i)
    progress = progress or NoProgress()
    progress.start("predicting", sum(len(plan.items[i].rows) for i in pending))
    try:
        with torch.inference_mode(), _cpu_threads(device, workers):
            for pre, items in groups.items():
                _run_group(plan, pre, items, parts, stats, device=device, amp=amp, batch_size=batch_size,
                           workers=workers, skip_bad=skip_bad, channels_last=channels_last, fuse_bn=fuse_bn,
                           progress=progress)
    finally:
        progress.stop()
    return parts, stats


@contextmanager
def _cpu_threads(device: torch.device, workers: int) -> Iterator[None]:
    """On the CPU, give compute the cores the decode workers leave (torch and ONNX Runtime alike).

    OpenMP threads that outnumber the free cores spin against the decoding processes; on 2 cores
    with 1 worker that made torch several times slower than with 1 thread (bench_predict.py).
    """
    if device.type != "cpu" or workers == 0:
        yield
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, cores - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _blocks(item_rows: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """The rows to decode, in item order (oof: fold by fold, so items finish early), and its blocks.

    Items of different models on the same shard hold the same rows: each distinct row set is one
    block, decoded once. Batches never straddle blocks, so a fold model sees the same batches
    whichever other items run beside it (single process or any rank of a distributed run).
    """
    seen: set[int] = set()
    parts = []
    for rows in item_rows:
        fresh = [r for r in rows.tolist() if r not in seen]
        if fresh:
            seen.update(fresh)
            parts.append(np.array(fresh, dtype=np.int64))
    if not parts:
        return np.zeros(0, np.int64), []
    return np.concatenate(parts), [len(p) for p in parts]


def _locate(sorted_rows: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `query` rows in an item's ascending rows, and which of them it holds."""
    j = np.searchsorted(sorted_rows, query)
    j_in = np.minimum(j, len(sorted_rows) - 1)
    return j_in, sorted_rows[j_in] == query


def _run_group(
    plan: Plan, pre: Preprocess, items: list[int], parts: dict[int, resume.Part], stats: RunStats, *,
    device: torch.device, amp: str | None, batch_size: int, workers: int, skip_bad: bool, channels_last: bool,
    fuse_bn: bool, progress: Progress,
) -> None:
    """Compute the items sharing one preprocessing: one decode of their rows for all of them."""
    runners: dict[tuple[int, int], Runner] = {}
    with torch.inference_mode(False):  # weights loaded as ordinary tensors; runners infer in inference mode
        for i in items:
            it = plan.items[i]
            if (it.model, it.fold) not in runners:
                runners[it.model, it.fold] = make_runner(
                    plan.configs[it.model], it.fold, device=device, amp=amp, channels_last=channels_last,
                    fuse_bn=fuse_bn,
                )
    order, blocks = _blocks([plan.items[i].rows for i in items])
    left = {i: len(plan.items[i].rows) for i in items}
    buffers: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}  # allocated on an item's first batch
    for i in items:
        stats.seconds[i] = 0.0
    norm_of = {i: plan.configs[plan.items[i].model].normalise_key() for i in items}
    # items whose model reads NHWC (channels_last torch); their normalisations are laid out so from the uint8 batch on
    nhwc_of = {i: channels_last and plan.configs[plan.items[i].model].backend == "torch" for i in items}
    nhwc_norms = {norm_of[i] for i in items if nhwc_of[i]}
    loader = make_loader(plan.data, order, pre, batch_size=batch_size, workers=workers, device=device, blocks=blocks)
    t_wait = time.perf_counter()
    for rows_b, images, errors in loader:
        decode_s = time.perf_counter() - t_wait
        rows_b = rows_b.numpy()
        bad = [j for j, e in enumerate(errors) if e]
        for j in bad:
            if not skip_bad:
                raise decode_error(plan.data, int(rows_b[j]), errors[j])
            stats.bad[int(rows_b[j])] = errors[j]
        keep = np.array([not e for e in errors])
        xs = {key: normalise(images[torch.from_numpy(keep)] if bad else images, key[0], key[1], device,
                             channels_last=key in nhwc_norms)
              for key in set(norm_of.values())}
        good = rows_b[keep]
        stacks: dict[tuple, Stacked] = {}  # views of this batch, shared by the fold models that read them
        for i in items:
            if left[i] == 0:
                continue
            it = plan.items[i]
            touched = _locate(it.rows, rows_b)[1]
            done = int(touched.sum())
            if not done:
                continue
            t0 = time.perf_counter()
            if i not in buffers:
                c, v = plan.configs[it.model].num_classes, len(plan.views) if plan.save_views else 0
                buffers[i] = (np.zeros((len(it.rows), c), np.float32), np.zeros(len(it.rows), bool),
                              np.zeros((v, len(it.rows), c), np.float32) if v else None)
            probs_buf, ok_buf, views_buf = buffers[i]
            at, sel = _locate(it.rows, good)
            if sel.any():
                nhwc = nhwc_of[i]
                skey = (norm_of[i], None if sel.all() else sel.tobytes(), nhwc)
                if skey not in stacks:
                    x = xs[norm_of[i]] if sel.all() else xs[norm_of[i]][torch.from_numpy(sel).to(device)]
                    stacks[skey] = stack_views(x, plan.views, channels_last=nhwc)
                logits = run_stacked(runners[it.model, it.fold], stacks[skey], batch_size)  # (V, b, C)
                at = at[sel]
                probs_buf[at] = merge_views(logits, plan.merge).cpu().numpy()
                ok_buf[at] = True
                if views_buf is not None:
                    views_buf[:, at] = logits.softmax(-1).cpu().numpy()
            left[i] -= done
            progress.advance(done)
            stats.seconds[i] += time.perf_counter() - t0 + decode_s
            decode_s = 0.0  # the batch's decode wait is charged once, to the first item that reads it
            if left[i] == 0:
                bad_rows = {int(r): stats.bad[int(r)] for r in it.rows[~ok_buf] if int(r) in stats.bad}
                parts[i] = resume.Part(it.key, it.rows, probs_buf, ok_buf, views_buf, bad_rows)
                resume.save_part(it.path, parts[i])
                del buffers[i]
        t_wait = time.perf_counter()
    unfinished = [i for i in items if left[i] > 0]
    if unfinished:  # a bug, not a user error: the loader yields every row once
        raise RuntimeError(f"{len(unfinished)} work items did not receive all their rows")
