"""The last step of `predict`: the final tables put together from the parts, written, and reported."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ensemble._io import sha256_file
from ensemble.errors import preview
from ensemble.predict.plan import Output, Plan
from ensemble.predict.resume import Part
from ensemble.predict.work import RunStats
from ensemble.tables import TABLE_FORMATS, PredTable, make_table, read_table, sidecar_path, views_path, write_table

log = logging.getLogger(__name__)

_FOLD_TABLE = re.compile(r"test_fold(\d+)(?:" + "|".join(map(re.escape, TABLE_FORMATS.values())) + ")")


class PredictResult(dict[str, PredTable]):
    """The tables written, keyed "<model>/oof", "<model>/test", "<model>/test_fold<k>".

    Attributes:
        summary: one dict per table: model, table, split, folds, rows, views, status
            ("computed", "reused" (from stored parts), "up to date" (existing table kept) or a mix),
            seconds, path.
        skipped: images skipped with `skip_bad`: dicts with id, path, reason.
    """

    summary: list[dict[str, Any]]
    skipped: list[dict[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self.summary, self.skipped = [], []


def write_outputs(plan: Plan, shares: list[tuple[dict[int, Part], RunStats]], force: bool) -> PredictResult:
    """Rank 0 (or the single process): assemble every output from the parts and write it."""
    parts: dict[int, Part] = {}
    stats = RunStats(set(), {}, {})
    for p, st in shares:
        parts.update(p)
        stats.reused |= st.reused
        stats.seconds.update(st.seconds)
        stats.bad.update(st.bad)
    data = plan.data
    result = PredictResult()
    result.skipped = [
        {"id": str(data.ids[r]), "path": str(data.paths[r]), "reason": why} for r, why in sorted(stats.bad.items())
    ]
    if result.skipped:
        log.warning("skipped %d unreadable images (--skip-bad): ids %s", len(result.skipped),
                    preview([s["id"] for s in result.skipped]))
    data_sha = sha256_file(data.source)
    for o in plan.outputs:
        cfg = plan.configs[o.model]
        if o.state == "up to date":
            table, status, seconds = read_table(o.path), "up to date", 0.0
        else:
            table = build_table(plan, o, parts, data_sha)
            write_table(table, o.path, force=force)
            if o.name == "test":  # written last of its model's tables: only now may older ones go
                remove_stale_fold_tables(o.path.parent, keep=o.folds)
            reused = sum(i in stats.reused for i in o.items)
            status = "reused" if reused == len(o.items) else "computed" if not reused else f"computed {len(o.items) - reused}, reused {reused}"
            seconds = sum(stats.seconds.get(i, 0.0) for i in o.items)
        result[f"{cfg.name}/{o.name}"] = table
        result.summary.append({
            "model": cfg.name, "table": o.name, "split": o.kind, "folds": o.folds, "rows": len(table),
            "views": len(plan.views), "status": status, "seconds": round(seconds, 3), "path": str(o.path),
        })
    return result


def remove_stale_fold_tables(folder: Path, keep: list[int]) -> list[Path]:
    """Delete `test_fold<k>.csv` or `.parquet` (with its sidecar and views) for every fold k not in `keep`.

    A `test.csv` averaging folds 0 and 2 must not stand beside a `test_fold1.csv` of an earlier
    run: a reader of the folder would take it for one of this table's members.

    Returns:
        The tables removed.
    """
    stale = [p for p in folder.glob("test_fold*")
             if (m := _FOLD_TABLE.fullmatch(p.name)) and int(m.group(1)) not in keep]
    for p in sorted(stale):
        for f in (sidecar_path(p), views_path(p), p):
            f.unlink(missing_ok=True)
        log.info("removed %s: fold %s is not part of the new test table in %s", p,
                 _FOLD_TABLE.fullmatch(p.name).group(1), folder)
    return sorted(stale)


def build_table(plan: Plan, o: Output, parts: dict[int, Part], data_sha: str) -> PredTable:
    """Put a table together from its parts: oof places each fold's rows, test averages the folds.

    The sidecar records the model's task (softmax or sigmoid probabilities); the per-view
    probabilities (`<table>.views.npz`) are of the same task, checked as such.
    """
    cfg, n, c = plan.configs[o.model], len(plan.data), plan.configs[o.model].num_classes
    acc = np.zeros((n, c), np.float64)
    covered, ok = np.zeros(n, np.int64), np.zeros(n, np.int64)
    views = np.zeros((len(plan.views), n, c), np.float64) if plan.save_views else None
    bad: dict[int, str] = {}
    for i in o.items:
        p = parts[i]
        acc[p.rows] += p.probs
        covered[p.rows] += 1
        ok[p.rows] += p.ok
        if views is not None:
            views[:, p.rows] += p.views
        bad.update(p.bad or {})
    keep = np.flatnonzero((covered > 0) & (ok == covered))
    div = covered[keep, None]
    meta = {
        "model": cfg.name, "family": cfg.family or cfg.name, "kind": o.kind, "folds": o.folds,
        **({"fold": o.folds[0]} if o.name.startswith("test_fold") else {}),
        "tta": {"views": [v.name for v in plan.views], "merge": plan.merge},
        "checkpoints": {str(k): plan.weights_sha256[(o.model, k)] for k in o.folds},
        "backend": cfg.backend, "arch": cfg.arch, "img_size": list(cfg.img_size), "mean": list(cfg.mean),
        "std": list(cfg.std), "crop_pct": cfg.crop_pct, "resize_mode": cfg.resize_mode,
        "interpolation": cfg.interpolation,
        "data": {"file": str(plan.data.source), "sha256": data_sha, "rows": n},
        "inputs_key": o.key,
    }
    if bad:
        meta["skipped"] = {
            "count": len(bad), "ids": [str(plan.data.ids[r]) for r in sorted(bad)],
            "note": "these images could not be read (--skip-bad); this table has no rows for them",
        }
    view_tables = None if views is None else {
        v.name: (views[j, keep] / div).astype(np.float32) for j, v in enumerate(plan.views)
    }
    return make_table(plan.data.ids[keep], cfg.classes, (acc[keep] / div).astype(np.float32), meta=meta,
                      views=view_tables, source=f"{cfg.name}/{o.name}", task=cfg.task)
