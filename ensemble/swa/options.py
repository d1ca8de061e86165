"""The options of `ens swa`, one frozen record: checked before any checkpoint is read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ensemble.errors import ConfigError
from ensemble.labels import Columns
from ensemble.predict.options import check_workers


@dataclass(frozen=True)
class SwaOptions:
    """How to average checkpoints (`ensemble.swa.swa`'s keyword arguments but the progress hook).

    Attributes:
        out: the output; its suffix picks the format (`.safetensors`, or `.pth`/`.pt`).
        card: model card; needed for `bn_data`; also checks the average loads strictly into its arch.
        fold: fills `{fold}` in `glob`; its rows are left out of the BatchNorm refresh.
        glob: pattern of further checkpoint files, e.g. "runs/fold{fold}/epoch*.pth".
        weights: one weight per checkpoint (uniform when None); not with `top_n`.
        top_n: keep the best `top_n` checkpoints by `metrics`; needs `metrics` and `mode`.
        metrics: metrics file (see `ensemble.swa.select`).
        metric: its CSV column.
        mode: "max" when higher is better, "min" when lower is; required with `top_n`.
        ema: average the EMA weights of each checkpoint.
        trust: allow unpickling arbitrary objects (runs code from the files).
        bn_data: data CSV to refresh BatchNorm statistics on (needs `card`).
        bn_batches: the most batches for the refresh.
        batch_size: images per refresh batch.
        workers: DataLoader workers for the refresh (a count >= 0, or "auto" as `ens predict` takes it).
        device: "auto", "cpu", "cuda" or "cuda:N" for the refresh.
        columns: column names of `bn_data`.
        root: folder the image paths of `bn_data` are relative to.
        seed: seed of the refresh's row sample.
        force: overwrite `out` and its sidecar.
    """

    out: Path
    card: Path | None = None
    fold: int | None = None
    glob: str | None = None
    weights: tuple[float, ...] | None = None
    top_n: int | None = None
    metrics: Path | None = None
    metric: str | None = None
    mode: str | None = None
    ema: bool = False
    trust: bool = False
    bn_data: Path | None = None
    bn_batches: int = 100
    batch_size: int = 32
    workers: int | str = 2
    device: str = "auto"
    columns: Columns = Columns()
    root: str | os.PathLike | None = None
    seed: int = 42
    force: bool = False

    @classmethod
    def of(cls, out: str | os.PathLike, *, weights: Sequence[float] | None = None, **kwargs: object) -> SwaOptions:
        """The record from plain values (paths as strings, weights as any sequence)."""
        paths = {k: None if kwargs.get(k) is None else Path(kwargs[k]) for k in ("card", "metrics", "bn_data")}
        return cls(Path(out), weights=None if weights is None else tuple(weights), **{**kwargs, **paths})

    def check(self) -> None:
        """Raise ConfigError for combinations of options that cannot work (before anything is read)."""
        if self.top_n is not None:
            if self.metrics is None or self.mode is None:
                raise ConfigError("--top-n needs --metrics FILE and --mode max|min (max when higher is better, e.g. F1)")
            if self.weights is not None:
                raise ConfigError("--weights with --top-n is ambiguous; use one or the other")
        elif self.mode is not None:
            raise ConfigError("--mode says which end of --metrics --top-n keeps; pass --top-n N too")
        if self.bn_data is not None and self.card is None:
            raise ConfigError("--bn-data needs --card CARD with an arch (the model to run and its preprocessing)")
        check_workers(self.workers)
