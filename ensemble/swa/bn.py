"""BatchNorm statistics refresh for an averaged model (`torch.optim.swa_utils.update_bn`).

Averaging weights leaves each BatchNorm layer with the average of the sources' running statistics,
which is not the statistics of the averaged network; `update_bn` recomputes them with one pass over
training images. It is optional: it can also hurt (timm's author saw it do so), so compare both
models on OOF.

Leakage: for fold k, the rows of fold k are OOF rows; refreshing on them would let the model see
its validation images, so they are left out when a fold is given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ensemble._progress import NoProgress, Progress
from ensemble.errors import ConfigError, DataError, preview
from ensemble.labels import Columns
from ensemble.predict.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BnRefresh:
    """What a BatchNorm refresh used (recorded in the sidecar).

    Attributes:
        data: the data CSV.
        batches: batches run through the model.
        images: images in them.
        batch_size: images per batch.
        excluded_fold: the fold whose (OOF) rows were left out, or None.
        seed: seed of the row sample.
    """

    data: str
    batches: int
    images: int
    batch_size: int
    excluded_fold: int | None
    seed: int


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def refresh_bn(model: nn.Module, batches: Iterable[torch.Tensor], *, device: torch.device) -> None:
    """Recompute every BatchNorm layer's running statistics over `batches` (in place).

    Args:
        model: the network holding the averaged weights.
        batches: normalised float32 images, each (B, 3, H, W).
        device: where the forward passes run.
    """
    model.to(device)
    torch.optim.swa_utils.update_bn(batches, model, device=device)
    model.eval()


def bn_rows(
    folds: np.ndarray | None, n: int, *, fold: int | None, limit: int, seed: int, batch_size: int | None = None
) -> np.ndarray:
    """Rows to refresh on: a seeded random sample of at most `limit` rows, fold `fold` left out.

    Args:
        folds: the fold of each row, shape (n,), or None.
        n: number of rows.
        fold: the model's fold (its rows are OOF rows), or None.
        limit: the most rows to take.
        seed: sample seed.

        batch_size: when given, the count is cut to a multiple of it (if at least one full batch
            remains): `update_bn` weighs every batch alike, so a small last batch would count as much
            as a full one (and a batch of one cannot train a BatchNorm layer).

    Returns:
        int64 row indices, shape (<= limit,), in sampled order.
    """
    rows = np.arange(n, dtype=np.int64) if fold is None else np.flatnonzero(folds != fold).astype(np.int64)
    rows = np.random.default_rng(seed).permutation(rows)[:limit]
    if batch_size is not None and len(rows) >= batch_size:
        rows = rows[: len(rows) // batch_size * batch_size]
    return rows


def data_batches(
    cfg: ModelConfig,
    data_csv: str | os.PathLike,
    *,
    fold: int | None,
    n_batches: int,
    batch_size: int,
    workers: int,
    device: torch.device,
    seed: int,
    columns: Columns = Columns(),
    root: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> tuple[Iterator[torch.Tensor], BnRefresh]:
    """Normalised image batches of the data CSV for `refresh_bn`, decoded as `ens predict` decodes.

    Args:
        cfg: the model (preprocessing and normalisation).
        data_csv: the data CSV (`id`, `path`, and `fold` when `fold` is given).
        fold: leave this fold's rows out (they are the model's OOF rows).
        n_batches: the most batches to use.
        batch_size: images per batch.
        workers: DataLoader worker processes.
        device: where the batches go.
        seed: which rows are sampled.
        columns: column names of the CSV.
        root: folder the image paths are relative to.
        progress: advanced once per batch.

    Returns:
        (an iterator of float32 (B, 3, H, W) batches on `device`, what it covers).

    Raises:
        ConfigError: bad counts, or no rows left once the fold is left out.
        LabelError: a bad CSV, or no fold column while `fold` is given.
        DataError: a missing or undecodable image.
    """
    from ensemble.predict.data import (
        Preprocess,
        check_files,
        make_loader,
        normalise,
        read_data,
    )

    if n_batches < 1 or batch_size < 1:
        raise ConfigError(f"--bn-batches {n_batches} and --batch-size {batch_size} must both be at least 1")
    data = read_data(data_csv, columns=columns, root=root, need_folds=fold is not None)
    if fold is not None and fold not in data.fold_values:
        log.warning("%s has no rows of fold %d; every row is used for the BatchNorm refresh", data.source, fold)
    rows = bn_rows(data.folds, len(data), fold=fold, limit=n_batches * batch_size, seed=seed, batch_size=batch_size)
    if not len(rows):
        raise ConfigError(f"{data.source}: no rows outside fold {fold} to refresh BatchNorm on; give the training CSV")
    missing = rows[check_files(data, rows)]
    if len(missing):
        raise DataError(
            f"{data.source}: {len(missing)} image files are missing, e.g. {data.paths[missing[0]]} (ids "
            f"{preview(data.ids[missing])}); fix the paths (relative to the CSV's folder unless --root)"
        )
    if fold is None:
        log.warning(
            "BatchNorm refresh uses every row of %s: if they include this model's validation rows, its OOF "
            "score will be optimistic; pass --fold k to leave fold k out", data.source,
        )
    info = BnRefresh(str(data_csv), -(-len(rows) // batch_size), len(rows), batch_size, fold, seed)
    loader = make_loader(data, rows, Preprocess.of(cfg), batch_size=batch_size, workers=workers, device=device)

    def batches() -> Iterator[torch.Tensor]:
        hook = progress or NoProgress()
        hook.start("refreshing BatchNorm", info.batches)
        try:
            for batch_rows, images, errors in loader:
                bad = [i for i, e in enumerate(errors) if e]
                if bad:
                    row = int(batch_rows[bad[0]])
                    raise DataError(
                        f"{data.paths[row]}: cannot decode the image of id {data.ids[row]!r} ({errors[bad[0]]}); "
                        "replace the file or drop its row from the --bn-data CSV"
                    )
                yield normalise(images, cfg.mean, cfg.std, device)
                hook.advance()
        finally:
            hook.stop()

    return batches(), info
