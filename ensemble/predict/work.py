"""Torch-free steps of running a plan, shared by the torch engine (`engine.py`, `group.py`) and the
ONNX-on-CPU path that runs without torch (`lite.py`): what was reused or computed, the order rows
are decoded in, where a batch's rows sit in an item, and the per-batch bookkeeping of a group's
items (`GroupWork`: undecodable rows, rows left, progress, seconds, an item's finished part)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from ensemble._progress import Progress
from ensemble.predict import resume
from ensemble.predict.data import Preprocess, decode_error
from ensemble.predict.plan import Plan


@dataclass
class RunStats:
    """What happened to each item: reused from a stored part, or computed (and in how many seconds)."""

    reused: set[int]
    seconds: dict[int, float]
    bad: dict[int, str]  # data row -> why it was skipped


def reuse_parts(plan: Plan, items: Collection[int] | None, *, resume_parts: bool, skip_bad: bool) -> tuple[dict[int, resume.Part], RunStats, list[int]]:
    """The stored parts of the items to run that can be reused, and the items left to compute.

    Args:
        items: the items to reuse or compute (a distributed rank's share); default: every item
            of an output that is not up to date (`Plan.needed`).

    Returns:
        item -> reused part, the stats so far, and the pending items (ascending).
    """
    parts: dict[int, resume.Part] = {}
    stats = RunStats(set(), {}, {})
    needed = set(plan.needed() if items is None else items)
    for i in sorted(needed):
        item = plan.items[i]
        if resume_parts and (part := resume.load_part(item.path, item.key, item.rows, allow_bad=skip_bad)) is not None:
            parts[i] = part
            stats.reused.add(i)
            stats.bad.update(part.bad or {})
    return parts, stats, sorted(needed - set(parts))


def by_preprocess(plan: Plan, pending: list[int]) -> dict[Preprocess, list[int]]:
    """The pending items grouped by their preprocessing: each group's images are decoded once."""
    groups: dict[Preprocess, list[int]] = defaultdict(list)
    for i in pending:
        groups[Preprocess.of(plan.configs[plan.items[i].model])].append(i)
    return groups


def row_blocks(item_rows: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
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


def locate(sorted_rows: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `query` rows in an item's ascending rows, and which of them it holds."""
    j = np.searchsorted(sorted_rows, query)
    j_in = np.minimum(j, len(sorted_rows) - 1)
    return j_in, sorted_rows[j_in] == query


def finish_part(plan: Plan, index: int, probs: np.ndarray, ok: np.ndarray, views: np.ndarray | None,
                stats: RunStats) -> resume.Part:
    """An item's part once its last row is done, stored at once (what a rerun resumes from)."""
    it = plan.items[index]
    bad_rows = {int(r): stats.bad[int(r)] for r in it.rows[~ok] if int(r) in stats.bad}
    part = resume.Part(it.key, it.rows, probs, ok, views, bad_rows)
    resume.save_part(it.path, part)
    return part


@dataclass
class Pending:
    """An item being computed: its output buffers, filled batch by batch until `left` is 0.

    Attributes:
        index: the item's index in the plan.
        left: rows not yet seen.
        probs: merged probabilities, float32 (n, C) (None until an engine allocates them).
        ok: which rows were decoded, bool (n,).
        views: per-view probabilities, float32 (V, n, C), or None when views are not kept.
    """

    index: int
    left: int
    probs: np.ndarray | None = None
    ok: np.ndarray | None = None
    views: np.ndarray | None = None


P = TypeVar("P", bound=Pending)


class GroupWork(Generic[P]):
    """The per-batch bookkeeping of one preprocessing group's items, the same for every engine.

    An engine decodes a batch, hands its decode errors to `check` and, per batch, its forwards to
    `step`: `step` finds the items that hold rows of the batch, runs the engine's forward for each,
    counts the rows off, advances the progress bar, charges the seconds (the batch's decode wait to
    the first item that reads it) and stores an item's part the moment its last row is done.
    """

    def __init__(self, plan: Plan, pending: dict[int, P], parts: dict[int, resume.Part], stats: RunStats,
                 progress: Progress, *, skip_bad: bool) -> None:
        """`pending`: item -> its buffers, in the order the items run on each batch."""
        self.plan, self.pending, self.parts, self.stats, self.progress = plan, pending, parts, stats, progress
        self.skip_bad = skip_bad
        for i in pending:
            stats.seconds[i] = 0.0

    def check(self, rows: np.ndarray, errors: list[str]) -> np.ndarray:
        """Which rows of a decoded batch are kept, bool (B,); an undecodable one is recorded (skip_bad) or raised.

        Raises:
            DataError: an image cannot be read and `skip_bad` is off.
        """
        for j, e in enumerate(errors):
            if not e:
                continue
            if not self.skip_bad:
                raise decode_error(self.plan.data, int(rows[j]), e)
            self.stats.bad[int(rows[j])] = e
        return np.array([not e for e in errors])

    def step(self, rows: np.ndarray, decode_s: float, predict: Callable[[P], None]) -> None:
        """Run `predict` for each item holding rows of this batch (`rows`: all its data rows, decoded or not)."""
        for i, p in self.pending.items():
            done = 0 if p.left == 0 else int(locate(self.plan.items[i].rows, rows)[1].sum())
            if not done:
                continue
            t0 = time.perf_counter()
            predict(p)
            p.left -= done
            self.progress.advance(done)
            self.stats.seconds[i] += time.perf_counter() - t0 + decode_s
            decode_s = 0.0  # the batch's decode wait is charged once, to the first item that reads it
            if p.left == 0:
                self.parts[i] = finish_part(self.plan, i, p.probs, p.ok, p.views, self.stats)

    def close(self) -> None:
        """Check that every item got all its rows (a bug otherwise, not a user error: each row is decoded once)."""
        unfinished = [i for i, p in self.pending.items() if p.left > 0]
        if unfinished:
            raise RuntimeError(f"{len(unfinished)} work items did not receive all their rows")
