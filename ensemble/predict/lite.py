"""ONNX models on the CPU without torch: the same plan, parts and tables, in numpy and ONNX Runtime.

`import torch` is most of an ONNX-only `ens predict`'s start-up (seconds, for a library the run
never needs). When every model of a run is an ONNX file, the run is on the CPU, in one process,
and every TTA view only moves pixels (the flips and rotations of `tta.py`, which have an exact
numpy form), `api.run` takes this path: images are decoded by a small thread pool (PIL releases
the GIL) one batch ahead of the forwards, normalised in float32 as `data.normalise` does, the views
stacked into one forward per chunk of `batch_size` images, and the views merged by the merge's
numpy form (`tta.Merge.array`). The batches, parts, resume keys and tables are those of the torch
engine; the numbers equal its numbers up to float rounding (the merge runs in float64, then
float32). `ENS_PREDICT_TORCH=1` forces the torch engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ensemble._progress import NoProgress, Progress
from ensemble.predict import resume
from ensemble.predict.config import ModelConfig
from ensemble.predict.cpu import usable_cores
from ensemble.predict.data import Preprocess, batch_indices, decode
from ensemble.predict.distributed import launcher_env
from ensemble.predict.onnx_model import OnnxModel
from ensemble.predict.plan import Plan
from ensemble.predict.tta import MERGES, View, activate_array
from ensemble.predict.work import (
    GroupWork,
    Pending,
    RunStats,
    by_preprocess,
    locate,
    reuse_parts,
    row_blocks,
)


@dataclass(frozen=True)
class CpuDevice:
    """The device of a torch-free run: what `data.resolve_workers` and the summary read of a torch.device."""

    type: str = "cpu"
    index: int | None = None

    def __str__(self) -> str:
        return "cpu"


CPU = CpuDevice()


def usable(configs: Sequence[ModelConfig], views: Sequence[View], *, device: str, amp: str) -> bool:
    """Whether a run can go without torch: ONNX models only, on the CPU, one process, exact views.

    `device` "auto" counts as the CPU when ONNX Runtime has no CUDA provider (the CPU build):
    where it has one, only torch can tell whether a GPU is usable, so the torch engine runs.
    """
    if os.environ.get("ENS_PREDICT_TORCH", "") not in ("", "0") or launcher_env()[1] > 1:
        return False
    if not configs or any(c.backend != "onnx" for c in configs) or any(v.array_fn is None for v in views):
        return False
    if str(getattr(amp, "value", amp)).lower() not in ("auto", "none"):
        return False  # bf16/fp16 on the CPU: the torch engine raises the one error about it
    spec = str(device).strip().lower()
    if spec == "cpu":
        return True
    if spec != "auto":
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" not in ort.get_available_providers()


def compute_threads(workers: int) -> int:
    """ONNX Runtime's intra-op threads: the cores left by the decode workers (as `engine._cpu_threads`)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    cores = usable_cores()
    count = int(env) if env.isdigit() and int(env) > 0 else cores
    return max(1, min(count, cores - workers)) if workers else count


def run_plan(
    plan: Plan, *, batch_size: int, workers: int, skip_bad: bool, resume_parts: bool, progress: Progress | None = None,
    items: Collection[int] | None = None,
) -> tuple[dict[int, resume.Part], RunStats]:
    """`engine.run_plan` for ONNX models on the CPU, without torch (same arguments, same result)."""
    parts, stats, pending = reuse_parts(plan, items, resume_parts=resume_parts, skip_bad=skip_bad)
    groups = by_preprocess(plan, pending)
    progress = progress or NoProgress()
    progress.start("predicting", sum(len(plan.items[i].rows) for i in pending))
    threads = compute_threads(workers)
    try:
        # one thread decodes the next batch while ONNX Runtime (which releases the GIL) runs this one
        with ThreadPoolExecutor(1, thread_name_prefix="ens-decode") as pool:
            for pre, its in groups.items():
                _run_group(plan, pre, its, parts, stats, pool=pool, threads=threads, batch_size=batch_size,
                           skip_bad=skip_bad, progress=progress)
    finally:
        progress.stop()
    return parts, stats


def _run_group(
    plan: Plan, pre: Preprocess, items: list[int], parts: dict[int, resume.Part], stats: RunStats, *,
    pool: ThreadPoolExecutor, threads: int, batch_size: int, skip_bad: bool, progress: Progress,
) -> None:
    """The items sharing one preprocessing: one decode of their rows, every fold model run on them."""
    models: dict[tuple[int, int], OnnxModel] = {}
    for i in items:
        it = plan.items[i]
        cfg = plan.configs[it.model]
        if (it.model, it.fold) not in models:
            models[(it.model, it.fold)] = OnnxModel(cfg.onnx[it.fold], providers=["CPUExecutionProvider"], threads=threads,
                                                    num_classes=cfg.num_classes, task=cfg.task)
    n_views = len(plan.views) if plan.save_views else 0
    state = {}
    for i in items:
        it, c = plan.items[i], plan.configs[plan.items[i].model].num_classes
        state[i] = Pending(i, len(it.rows), np.zeros((len(it.rows), c), np.float32), np.zeros(len(it.rows), bool),
                           np.zeros((n_views, len(it.rows), c), np.float32) if n_views else None)
    work = GroupWork(plan, state, parts, stats, progress, skip_bad=skip_bad)
    order, blocks = row_blocks([plan.items[i].rows for i in items])
    batches = [order[b] for b in batch_indices(len(order), batch_size, blocks)]
    paths = plan.data.paths
    ahead: Future | None = pool.submit(_decode_batch, paths, batches[0], pre) if batches else None
    for k, rows in enumerate(batches):
        t_wait = time.perf_counter()
        images, errors = ahead.result()
        ahead = pool.submit(_decode_batch, paths, batches[k + 1], pre) if k + 1 < len(batches) else None
        decode_s = time.perf_counter() - t_wait
        keep = work.check(rows, errors)
        stacks: dict[tuple, np.ndarray] = {}  # (mean, std, rows) -> the views of this batch, shared by fold models
        work.step(rows, decode_s, partial(_predict, plan, models, rows[keep], images[keep], stacks, batch_size))
    work.close()


def _decode_batch(paths: Any, rows: np.ndarray, pre: Preprocess) -> tuple[np.ndarray, list[str]]:
    """A batch decoded: uint8 (B, 3, H, W) and one "" or reason per image."""
    out = [decode(paths[r], pre) for r in rows]
    return np.stack([o[0] for o in out]), [o[1] for o in out]


def _predict(plan: Plan, models: dict[tuple[int, int], OnnxModel], good: np.ndarray, images: np.ndarray,
             stacks: dict[tuple, np.ndarray], chunk: int, s: Pending) -> None:
    """An item's fold model on its decoded rows of a batch: views stacked, one forward per chunk, merged."""
    it = plan.items[s.index]
    cfg = plan.configs[it.model]
    model = models[(it.model, it.fold)]
    at, sel = locate(it.rows, good)
    if not sel.any():
        return
    key = (cfg.mean, cfg.std, None if sel.all() else sel.tobytes())
    if key not in stacks:
        stacks[key] = _stack(_normalise(images if sel.all() else images[sel], cfg.mean, cfg.std), plan.views)
    stacked = stacks[key]  # (V*b, 3, H, W)
    logits = np.concatenate([model.run(stacked[j:j + chunk]) for j in range(0, len(stacked), chunk)])
    logits = logits.reshape(len(plan.views), -1, logits.shape[-1])  # (V, b, C)
    at = at[sel]
    s.probs[at] = MERGES.get(plan.merge).array(logits, cfg.task)
    s.ok[at] = True
    if s.views is not None:
        s.views[:, at] = activate_array(logits, cfg.task)


def _normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (B, 3, H, W) -> float32 (x / 255 - mean) / std, in float32 as `data.normalise` computes it."""
    x = images.astype(np.float32) / np.float32(255.0)
    x -= np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    x /= np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return x


def _stack(x: np.ndarray, views: Sequence[View]) -> np.ndarray:
    """Every view of a batch, stacked view by view: (V*B, 3, H, W) float32, C-contiguous for ONNX Runtime."""
    return np.ascontiguousarray(np.concatenate([v.array_fn(x) for v in views]))
