"""What both examples' `prepare.py` use to train their fold models: worker processes forked from a
forkserver that imports torch once, and the (model, fold) trainings run in order, one line each.

The examples run as scripts (`python examples/<name>/prepare.py`), which put this folder on
`sys.path` to import this module.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver

# torch, timm and safetensors: with several jobs only the forkserver (which the workers fork from) imports them
TORCH_MODULES = ["torch", "timm", "safetensors.torch"]


def sleep_idle_threads() -> None:
    """Let torch's idle OpenMP threads sleep instead of spin where `ens predict` would (unless
    OMP_WAIT_POLICY is set): beside another busy process spinning threads take each other's cores (one
    fold's training went from 2 s to over 2 min on 2 shared cores). Call it before torch loads libgomp,
    which reads it once (in this process, the forkserver and its workers)."""
    from ensemble.predict.cpu import choose_wait_policy

    if "OMP_WAIT_POLICY" not in os.environ and (policy := choose_wait_policy()) is not None:
        os.environ["OMP_WAIT_POLICY"] = policy


def start_pool(jobs: int, initializer: Callable[..., None], initargs: tuple) -> ProcessPoolExecutor | None:
    """A pool of `jobs` workers (None for one job or fewer: train in this process); its forkserver
    starts importing torch now, beside the caller's work. `initializer(*initargs)` runs once per worker."""
    if jobs <= 1:
        return None
    # forkserver: its server imports torch and timm once and forks each worker from it; a plain fork
    # after torch has loaded is unsafe, spawn would import torch once per worker
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", *TORCH_MODULES])
    forkserver.ensure_running()
    return ProcessPoolExecutor(jobs, context, initializer=initializer, initargs=initargs)


def train_all(
    pending: Sequence[tuple[str, int]], train_fold: Callable[[str, int, int], tuple[float, float]], epochs: int,
    pool: ProcessPoolExecutor | None, init: Callable[[], None], score_name: str,
) -> None:
    """Train the pending (model, fold) pairs in `pool` (or here, after `init()`), printing one line
    each in `pending` order: `train_fold(name, k, epochs)` returns (held-out score, seconds)."""
    if not pending:
        return
    if pool:
        futures = [pool.submit(train_fold, name, k, epochs) for name, k in pending]
    else:
        init()
    try:
        for i, (name, k) in enumerate(pending):
            score, seconds = futures[i].result() if pool else train_fold(name, k, epochs)
            print(f"trained {name} fold {k}: held-out {score_name} {score:.3f} ({seconds:.1f} s)", flush=True)
    except Exception as e:  # a worker's error or death: one failure, the rest cancelled, no hang
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        traceback.print_exception(e)  # a worker's error carries the worker's traceback as its cause
        sys.exit(f"prepare.py: training {name} fold {k} failed: {type(e).__name__}: {e}")
    if pool:
        pool.shutdown()
