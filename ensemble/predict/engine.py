"""The prediction engine: run the work list, decoding each image once for every model that needs it.

Items (model x fold x shard, see `plan.py`) are grouped by preprocessing; each group (`group.py`) streams its
rows through one DataLoader (decoding in workers, overlapped with compute). Every batch is moved
to the device and normalised once per normalisation, its TTA views are stacked into one forward
per fold model (chunked by `batch_size`), and per-view logits are merged into probabilities. An
item's part is stored the moment its last row is done, so an interrupted run resumes from there.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager

import torch

from ensemble._progress import NoProgress, Progress
from ensemble.predict import resume
from ensemble.predict.config import ModelConfig, Runner
from ensemble.predict.cpu import usable_cores
from ensemble.predict.group import run_group
from ensemble.predict.plan import Plan
from ensemble.predict.work import RunStats, by_preprocess, reuse_parts

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
    parts, stats, pending = reuse_parts(plan, items, resume_parts=resume_parts, skip_bad=skip_bad)
    groups = by_preprocess(plan, pending)
    progress = progress or NoProgress()
    progress.start("predicting", sum(len(plan.items[i].rows) for i in pending))
    try:
        with torch.inference_mode(), _cpu_threads(device, workers):
            for pre, items in groups.items():
                # the factory is looked up here, at call time: tests and fault injection replace it
                run_group(plan, pre, items, parts, stats, make_runner=make_runner, device=device, amp=amp,
                          batch_size=batch_size, workers=workers, skip_bad=skip_bad, channels_last=channels_last,
                          fuse_bn=fuse_bn, progress=progress)
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
    cores = usable_cores()
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, cores - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
