"""`swa`: plan (choose checkpoints), average (optionally refresh BatchNorm), write checkpoint + sidecar."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ensemble._progress import Progress
from ensemble.errors import ConfigError
from ensemble.labels import Columns
from ensemble.swa.average import StateDict, average_checkpoints
from ensemble.swa.bn import BnRefresh, has_batchnorm
from ensemble.swa.options import SwaOptions
from ensemble.swa.plan import (
    Source,
    SwaPlan,
    fold_options,
    gather_checkpoints,
    plan_swa,
)
from ensemble.swa.write import SwaResult, write_swa

__all__ = ["BN_NOTE", "Source", "SwaOptions", "SwaResult", "average", "gather_checkpoints", "run", "run_folds", "swa"]

BN_NOTE = (
    "BatchNorm refresh can hurt as well as help: score this model and the one without --bn-data on OOF "
    "(ens predict, then ens oof-report) and keep the better"
)


def swa(
    checkpoints: Sequence[str | os.PathLike] = (),
    *,
    out: str | os.PathLike,
    card: str | os.PathLike | None = None,
    fold: int | None = None,
    glob: str | None = None,
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
    metrics: str | os.PathLike | None = None,
    metric: str | None = None,
    mode: str | None = None,
    ema: bool = False,
    trust: bool = False,
    bn_data: str | os.PathLike | None = None,
    bn_batches: int = 100,
    batch_size: int = 32,
    workers: int | str = 2,
    device: str = "auto",
    columns: Columns = Columns(),
    root: str | os.PathLike | None = None,
    seed: int = 42,
    force: bool = False,
    progress: Progress | None = None,
) -> SwaResult:
    """Average checkpoints of one model into one checkpoint (`ens swa`).

    The keyword arguments are `SwaOptions`' fields (see there); `run` takes them as one record.

    Args:
        checkpoints: checkpoint files (any layout `ens predict` reads).
        out: the output; its suffix picks the format (`.safetensors`, or `.pth`/`.pt`, a plain state
            dict loadable with weights_only=True). A sidecar `out` with `.json` records the inputs.
            A `{fold}` in it is filled with `fold` (every fold at once: `run_folds`).
        progress: hook for long steps.

    Returns:
        The written files and every candidate with its metric, weight and hash.

    Raises:
        ConfigError: invalid options or inputs (checked before any checkpoint is read).
        ModelLoadError: unreadable or mismatching checkpoints.
        OutputExistsError: `out` or its sidecar exists and not `force`. OutputError: they cannot be written.
    """
    options = SwaOptions.of(
        out, card=card, fold=fold, glob=glob, weights=weights, top_n=top_n, metrics=metrics, metric=metric,
        mode=mode, ema=ema, trust=trust, bn_data=bn_data, bn_batches=bn_batches, batch_size=batch_size,
        workers=workers, device=device, columns=columns, root=root, seed=seed, force=force,
    )
    return run(checkpoints, options, progress=progress)


def run(checkpoints: Sequence[str | os.PathLike], options: SwaOptions, *, progress: Progress | None = None) -> SwaResult:
    """`swa` with its options in one record: plan, average, write.

    Raises:
        ConfigError: `out` holds `{fold}` for several folds (no `fold`): that is `run_folds`' work.
    """
    (one, *more) = fold_options(checkpoints, options)
    if more:
        raise ConfigError(
            f"out={str(options.out)!r} holds {{fold}} and no fold is given, which means every fold of the glob; "
            "call ensemble.swa.core.run_folds for that, or give fold=k"
        )
    return _average_and_write(plan_swa(checkpoints, one), one, progress)


def run_folds(
    checkpoints: Sequence[str | os.PathLike], options: SwaOptions, *, progress: Progress | None = None
) -> list[SwaResult]:
    """`run` for each output of `fold_options` (what the CLI calls): every fold of a `{fold}` glob when
    `out` holds `{fold}` (K folds in one process), else `options`' one output.

    Every fold is planned (options, inputs, outputs checked) before any is averaged; each fold's
    files are the ones `run` with `fold=k` writes.
    """
    plans = [(plan_swa(checkpoints, o), o) for o in fold_options(checkpoints, options)]
    return [_average_and_write(plan, o, progress) for plan, o in plans]


def _average_and_write(plan: SwaPlan, options: SwaOptions, progress: Progress | None) -> SwaResult:
    avg, bn = average(plan, options, progress=progress)
    selection = {"top_n": options.top_n, "mode": options.mode,
                 "metrics": str(options.metrics) if options.metrics else None, "metric": plan.metric_name}
    return write_swa(plan, avg, bn, card=options.card, fold=options.fold, selection=selection, force=options.force)


def average(plan: SwaPlan, options: SwaOptions, *, progress: Progress | None = None) -> tuple[StateDict, BnRefresh | None]:
    """The weighted average of the used checkpoints, checked against the card's model and, with
    `bn_data`, its BatchNorm statistics refreshed; returns it and what the refresh covered."""
    cfg, used = plan.cfg, plan.used
    model = None
    if cfg is not None:
        from ensemble.predict.checkpoint import create_model

        model = create_model(cfg)
        if options.bn_data is not None and not has_batchnorm(model):
            raise ConfigError(f"{cfg.arch} has no BatchNorm layers, so there is nothing to refresh; drop --bn-data")
    avg = average_checkpoints(
        [s.path for s in used], weights=[s.weight for s in used], ema=plan.ema, trust=plan.trust, progress=progress,
        expected=None if model is None else list(model.state_dict()),
    )
    if model is None:
        return avg, None
    from ensemble.predict.checkpoint import check_fits

    # the check `ens predict` makes: fail here, not when the output is first used
    check_fits(model, avg, used[0].path, cfg)
    model.load_state_dict(avg, strict=True)
    if options.bn_data is None:
        return avg, None
    return _refresh(model, avg, cfg, options, progress)


def _refresh(
    model: torch.nn.Module, avg: StateDict, cfg: Any, options: SwaOptions, progress: Progress | None,
) -> tuple[StateDict, BnRefresh]:
    """Refresh `model`'s BatchNorm statistics on `bn_data`; returns the new state dict in `avg`'s dtypes."""
    from ensemble.predict.data import resolve_workers
    from ensemble.predict.runners import resolve_device
    from ensemble.swa.bn import data_batches, refresh_bn

    dev = resolve_device(options.device)
    batches, info = data_batches(
        cfg, options.bn_data, fold=options.fold, n_batches=options.bn_batches, batch_size=options.batch_size,
        workers=resolve_workers(options.workers, dev), device=dev, seed=options.seed, columns=options.columns,
        root=options.root, progress=progress,
    )
    refresh_bn(model, batches, device=dev)
    fresh = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {k: fresh[k].to(t.dtype) for k, t in avg.items()}, info
