"""`predict`: the library function behind `ens predict` (plan, run, then `assemble` writes the tables)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensemble._io import check_writable
from ensemble._progress import Progress
from ensemble.errors import ConfigError
from ensemble.labels import Columns
from ensemble.predict import lite
from ensemble.predict.assemble import PredictResult, write_outputs
from ensemble.predict.config import ModelConfig
from ensemble.predict.data import Preprocess, check_files, missing_error, read_data, resolve_workers
from ensemble.predict.distributed import Session, assign
from ensemble.predict.options import PredictOptions
from ensemble.predict.plan import Plan, make_plan
from ensemble.predict.tta import MERGES, check_views, parse_views

__all__ = ["CardLike", "PredictOptions", "PredictResult", "predict", "resolve_configs", "run"]

CardLike = str | os.PathLike | ModelConfig

def predict(
    cards: CardLike | Sequence[CardLike] | None,
    data: str | os.PathLike,
    *,
    split: str,
    overrides: dict[str, Any] | None = None,
    tta: str | Sequence[str] = (),
    merge: str = "mean",
    out_dir: str | os.PathLike = "preds",
    table_format: str = "csv",
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
    `test.csv` (per-fold tables of folds no longer in the mean are removed when it is written).
    Each image is decoded once per preprocessing for all models and folds. Finished parts are
    stored under `<out_dir>/<model>/.parts/` and reused by a rerun with the same inputs; an
    existing table made from the same inputs is kept ("up to date"), one made from other inputs
    needs `force` (see `ensemble.predict.resume`). Under torchrun (`WORLD_SIZE` > 1) the ranks
    split the work and rank 0 writes and returns the tables; the other ranks return an empty
    result (see `ensemble.predict.distributed`).

    Args:
        cards: model card path(s) or resolved `ModelConfig`(s); None to build one model from
            `overrides` alone.
        data: the data CSV (`id`, `path`, and `fold` for oof).
        split: "oof" or "test".
        overrides: model flags applied over each card (names of `card.resolve_config`'s flags),
            e.g. {"task": "multilabel"} for a sigmoid head (tables then record that task).
        tta: views added to identity, e.g. "hflip,center_crop" or ["d4"] (see `tta.py`).
        merge: how views merge: "mean", "gmean", "max" (on probabilities) or "logits_mean";
            per class for a multilabel model (see `tta.py`).
        out_dir: where `<model>/<table>.csv` go.
        table_format: "csv" or "parquet" (`<model>/<table>.parquet`); same columns and sidecar.
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
    options = PredictOptions(
        split=split, overrides=overrides or {}, tta=tta, merge=merge, out_dir=Path(out_dir), table_format=table_format,
        batch_size=batch_size,
        workers=workers, device=device, amp=amp, save_views=save_views, skip_bad=skip_bad, force=force,
        resume=resume, columns=columns, root=root, channels_last=channels_last, fuse_bn=fuse_bn,
    )
    return run(cards, data, options, progress=progress)


def run(
    cards: CardLike | Sequence[CardLike] | None, data: str | os.PathLike, options: PredictOptions, *,
    progress: Progress | None = None,
) -> PredictResult:
    """`predict` with its options in one record (what the CLI calls): plan, check, run, write."""
    with Session.open(options.device) as session:
        plan, dev, workers = session.agree("planning", lambda: _plan(cards, data, session, options))
        needed = session.broadcast(plan.needed())  # rank 0 holds the outputs: it decides what is stale
        mine = _share(plan, needed, session)
        session.agree("checking the images", lambda: _check_images(plan, mine, options.skip_bad))
        rows = {i: len(plan.items[i].rows) for i in needed}
        hook = session.progress(progress, sum(rows.values()), sum(rows[i] for i in mine))
        common = dict(batch_size=options.batch_size, workers=workers, skip_bad=options.skip_bad,
                      resume_parts=options.resume, progress=hook, items=mine)
        if dev is lite.CPU:  # ONNX models on the CPU: no torch at all (`lite.py`)
            parts, stats = session.agree("predicting", lambda: lite.run_plan(plan, **common))
        else:
            from ensemble.predict import engine

            parts, stats = session.agree("predicting", lambda: engine.run_plan(
                plan, device=dev, amp=options.amp, channels_last=options.channels_last, fuse_bn=options.fuse_bn, **common,
            ))
        shares = session.gather((parts, stats))
        return session.agree(
            "writing the tables", lambda: write_outputs(plan, shares, options.force) if shares else PredictResult()
        )


def _plan(
    cards: CardLike | Sequence[CardLike] | None, data: str | os.PathLike, session: Session, options: PredictOptions,
) -> tuple[Plan, Any, int]:
    """Check the options and build the plan (the same on every rank); returns it, the device and the workers.

    The device is `lite.CPU` when the run needs no torch (`lite.usable`), else a torch.device.
    """
    views = parse_views(options.tta)
    MERGES.get(options.merge)  # unknown merge: error before any work
    options.check()
    configs = resolve_configs(cards, options.overrides)
    for cfg in configs:
        check_views(views, cfg.img_size, cfg.name)
    if lite.usable(configs, views, device=session.device(options.device), amp=options.amp):
        dev, amp_key = lite.CPU, "float32"  # what the torch engine keys an ONNX run on the CPU with
    else:
        from ensemble.predict import engine

        dev = engine.resolve_device(session.device(options.device))
        amp_key = engine.amp_mode(options.amp, dev)
    n_workers = resolve_workers(options.workers, dev)
    table_data = read_data(data, columns=options.columns, root=options.root, need_folds=options.split == "oof")
    # only rank 0 writes tables, so only its outputs may refuse to be overwritten
    plan = make_plan(configs, table_data, split=options.split, views=views, merge=options.merge,
                     save_views=options.save_views, out_dir=options.out_dir, path_col=options.columns.path,
                     amp=amp_key, force=options.force or session.rank != 0, resume=options.resume,
                     fuse_bn=options.fuse_bn, table_format=options.table_format)
    # every output that will be written, and a part of each (every rank stores its own parts): an
    # unwritable --out fails here, in one line, before any image is read
    todo = [o for o in plan.outputs if o.state != "up to date"]
    check_writable([o.path for o in todo if session.rank == 0] + [plan.items[o.items[0]].path for o in todo if o.items],
                   force=True)
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
