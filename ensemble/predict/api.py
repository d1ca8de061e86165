"""`predict`: the library function behind `ens predict` (plan, run, assemble the tables)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensemble._io import sha256_file
from ensemble._progress import Progress
from ensemble.errors import ConfigError, preview
from ensemble.labels import Columns
from ensemble.predict import engine
from ensemble.predict.config import ModelConfig
from ensemble.predict.data import Preprocess, check_files, missing_error, read_data, resolve_workers
from ensemble.predict.distributed import Session, assign
from ensemble.predict.plan import Output, Plan, make_plan
from ensemble.predict.resume import Part
from ensemble.predict.tta import MERGES, check_views, parse_views
from ensemble.tables import PredTable, make_table, read_table, write_table

log = logging.getLogger(__name__)

CardLike = str | os.PathLike | ModelConfig


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


def predict(
    cards: CardLike | Sequence[CardLike] | None,
    data: str | os.PathLike,
    *,
    split: str,
    overrides: dict[str, Any] | None = None,
    tta: str | Sequence[str] = (),
    merge: str = "mean",
    out_dir: str | os.PathLike = "preds",
    batch_size: int = 64,
    workers: int | str = "auto",
    device: str = "auto",
    amp: str = "auto",
    save_views: bool = False,
    skip_bad: bool = False,
    force: bool = False,
    resume: bool = True,
    progress: Progress | None = None,
    columns: Columns = Columns(),
    root: str | os.PathLike | None = None,
    channels_last: bool = True,
    fuse_bn: bool = True,
) -> PredictResult:
    """Predict OOF or test probabilities with TTA for one or more models, and write the tables.

    `split="oof"`: fold k's weights predict the rows of fold k -> `<out_dir>/<model>/oof.csv`.
    `split="test"`: every fold's weights predict every row -> `test_fold<k>.csv` and their mean
    `test.csv`. Each image is decoded once per preprocessing for all models and folds. Finished
    parts are stored under `<out_dir>/<model>/.parts/` and reused by a rerun with the same inputs;
    an existing table made from the same inputs is kept ("up to date"), one made from other inputs
    needs `force` (see `ensemble.predict.resume`). Under torchrun (`WORLD_SIZE` > 1) the ranks
    split the work and rank 0 writes and returns the tables; the other ranks return an empty
    result (see `ensemble.predict.distributed`).

    Args:
        cards: model card path(s) or resolved `ModelConfig`(s); None to build one model from
            `overrides` alone.
        data: the data CSV (`id`, `path`, and `fold` for oof).
        split: "oof" or "test".
        overrides: model flags applied over each card (names of `card.resolve_config`'s flags).
        tta: views added to identity, e.g. "hflip,center_crop" or ["d4"] (see `tta.py`).
        merge: how views merge: "mean", "gmean", "max" (on probabilities) or "logits_mean".
        out_dir: where `<model>/<table>.csv` go.
        batch_size: images per DataLoader batch and per forward (views are chunked by it).
        workers: decoding processes (0 decodes in this process); "auto": none on a CPU below 8
            cores, up to 8 per GPU (see `data.resolve_workers`).
        device: "auto", "cpu", "cuda" or "cuda:N".
        amp: mixed precision on CUDA: "auto" (bf16 where supported, else fp16; float32 on the
            CPU), "bf16", "fp16" or "none".
        save_views: keep every view's probabilities (`<table>.views.npz`).
        skip_bad: skip images that are missing or cannot be decoded (listed in `skipped` and in
            the sidecars) instead of failing.
        force: overwrite existing tables made from other inputs.
        resume: reuse stored parts and up-to-date tables whose inputs match; False recomputes
            everything (existing tables then need `force`).
        progress: progress hook (images x model folds).
        columns: data CSV column names.
        root: folder image paths are relative to (default: the data CSV's folder).
        channels_last: run torch models in channels_last memory format.
        fuse_bn: fold BatchNorms into the convolutions before them (torch models; the same
            function up to float rounding, 1.5-1.8x faster MobileNet/EfficientNet forwards on the CPU).

    Returns:
        The tables by "<model>/<table>", with a `summary` and the `skipped` images.

    Raises:
        EnsembleError: bad data CSV, card or options, missing weights, an unreadable image
            (without `skip_bad`), an existing output made from other inputs (without `force`).
        DistributedError: under a launcher, some rank failed (naming it) or died.
    """
    with Session.open(device) as session:
        plan, dev, workers = session.agree("planning", lambda: _plan(
            cards, data, session, split=split, overrides=overrides, tta=tta, merge=merge, out_dir=out_dir,
            batch_size=batch_size, workers=workers, device=device, amp=amp, save_views=save_views, force=force,
            resume=resume, columns=columns, root=root, fuse_bn=fuse_bn,
        ))
        needed = session.broadcast(plan.needed())  # rank 0 holds the outputs: it decides what is stale
        mine = _share(plan, needed, session)
        session.agree("checking the images", lambda: _check_images(plan, mine, skip_bad))
        rows = {i: len(plan.items[i].rows) for i in needed}
        hook = session.progress(progress, sum(rows.values()), sum(rows[i] for i in mine))
        parts, stats = session.agree("predicting", lambda: engine.run_plan(
            plan, device=dev, amp=amp, batch_size=batch_size, workers=workers, skip_bad=skip_bad,
            resume_parts=resume, channels_last=channels_last, fuse_bn=fuse_bn, progress=hook, items=mine,
        ))
        shares = session.gather((parts, stats))
        return session.agree("writing the tables", lambda: _write(plan, shares, force) if shares else PredictResult())


def _plan(
    cards: CardLike | Sequence[CardLike] | None, data: str | os.PathLike, session: Session, *, split: str,
    overrides: dict[str, Any] | None, tta: str | Sequence[str], merge: str, out_dir: str | os.PathLike,
    batch_size: int, workers: int | str, device: str, amp: str, save_views: bool, force: bool, resume: bool,
    columns: Columns, root: str | os.PathLike | None, fuse_bn: bool,
) -> tuple[Plan, Any, int]:
    """Check the options and build the plan (the same on every rank); returns it, the device and the workers."""
    views = parse_views(tta)
    MERGES.get(merge)  # unknown merge: error before any work
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: give 1 or more images per batch")
    configs = resolve_configs(cards, overrides or {})
    for cfg in configs:
        check_views(views, cfg.img_size, cfg.name)
    dev = engine.resolve_device(session.device(device))
    n_workers = resolve_workers(workers, dev)
    amp_key = engine.amp_mode(amp, dev)
    table_data = read_data(data, columns=columns, root=root, need_folds=split == "oof")
    # only rank 0 writes tables, so only its outputs may refuse to be overwritten
    plan = make_plan(configs, table_data, split=split, views=views, merge=merge, save_views=save_views,
                     out_dir=Path(out_dir), path_col=columns.path, amp=amp_key, force=force or session.rank != 0,
                     resume=resume, fuse_bn=fuse_bn)
    return plan, dev, n_workers


def _share(plan: Plan, needed: list[int], session: Session) -> list[int]:
    """This rank's items: whole image shards (every fold model of a shard) where there are enough."""
    by_rows: dict[tuple, list[int]] = {}
    for i in needed:
        it = plan.items[i]
        cfg = plan.configs[it.model]
        by_rows.setdefault((Preprocess.of(cfg), it.rows.tobytes()), []).append(i)
    groups = list(by_rows.values())
    costs = [len(plan.items[g[0]].rows) * len(g) for g in groups]
    return assign(groups, costs, session.world)[session.rank]


def _check_images(plan: Plan, items: list[int], skip_bad: bool) -> None:
    """Fail before any work when image files of these items are missing (unless skipping them)."""
    rows = [plan.items[i].rows for i in items]
    todo = np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    missing = todo[check_files(plan.data, todo)]
    if len(missing) and not skip_bad:
        raise missing_error(plan.data, missing)


def _write(plan: Plan, shares: list[tuple[dict[int, Part], engine.RunStats]], force: bool) -> PredictResult:
    """Rank 0 (or the single process): assemble every output from the parts and write it."""
    parts: dict[int, Part] = {}
    stats = engine.RunStats(set(), {}, {})
    for p, st in shares:
        parts.update(p)
        stats.reused |= st.reused
        stats.seconds.update(st.seconds)
        stats.bad.update(st.bad)
    table_data = plan.data
    result = PredictResult()
    result.summary, result.skipped = [], [
        {"id": str(table_data.ids[r]), "path": str(table_data.paths[r]), "reason": why} for r, why in sorted(stats.bad.items())
    ]
    if result.skipped:
        log.warning("skipped %d unreadable images (--skip-bad): ids %s", len(result.skipped),
                    preview([s["id"] for s in result.skipped]))
    data_sha = sha256_file(table_data.source)
    for o in plan.outputs:
        cfg = plan.configs[o.model]
        if o.state == "up to date":
            table, status, seconds = read_table(o.path), "up to date", 0.0
        else:
            table = _build(plan, o, parts, data_sha)
            write_table(table, o.path, force=force)
            reused = sum(i in stats.reused for i in o.items)
            status = "reused" if reused == len(o.items) else "computed" if not reused else f"computed {len(o.items) - reused}, reused {reused}"
            seconds = sum(stats.seconds.get(i, 0.0) for i in o.items)
        result[f"{cfg.name}/{o.name}"] = table
        result.summary.append({
            "model": cfg.name, "table": o.name, "split": o.kind, "folds": o.folds, "rows": len(table),
            "views": len(plan.views), "status": status, "seconds": round(seconds, 3), "path": str(o.path),
        })
    return result


def resolve_configs(cards: CardLike | Sequence[CardLike] | None, overrides: dict[str, Any]) -> list[ModelConfig]:
    """Model configs from cards and/or flags; precedence is `card.resolve_config`'s alone."""
    from ensemble.predict.card import resolve_config

    if isinstance(cards, (str, os.PathLike, ModelConfig)):
        cards = [cards]
    cards = list(cards or [])
    if not cards:
        return [resolve_config(None, **overrides)]
    out = []
    for c in cards:
        if isinstance(c, ModelConfig):
            if overrides:
                raise ConfigError("overrides apply to model cards, not to resolved ModelConfigs; use dataclasses.replace")
            out.append(c)
        else:
            out.append(resolve_config(c, **overrides))
    return out


def _build(plan: Plan, o: Output, parts: dict[int, Part], data_sha: str) -> PredTable:
    """Put a table together from its parts: oof places each fold's rows, test averages the folds."""
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
                      views=view_tables, source=f"{cfg.name}/{o.name}")
