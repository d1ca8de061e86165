"""Torch-free steps of running a plan, shared by the torch engine (`engine.py`, `group.py`) and the
ONNX-on-CPU path that runs without torch (`lite.py`): what was reused or computed, the order rows
are decoded in, where a batch's rows sit in an item, and an item's finished part."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ensemble.predict import resume
from ensemble.predict.data import Preprocess
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
