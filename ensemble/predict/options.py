"""The options of a prediction run, one frozen record shared by `predict`, its planning and the CLI.

Torch-free on purpose: the CLI builds its `--split` and `--amp` choices from `SPLITS` and
`AMP_MODES` without importing torch (`ens --help` stays fast).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble._registry import Registry
from ensemble.columns import TABLE_FORMATS, Columns
from ensemble.errors import ConfigError

SPLITS = ("oof", "test")
# AMP mode -> the torch dtype's name on CUDA (None: float32, or "auto" resolved by `runners.amp_dtype`)
AMP_MODES: Registry[str | None] = Registry("AMP mode")
AMP_MODES.add("auto", None)
AMP_MODES.add("bf16", "bfloat16")
AMP_MODES.add("fp16", "float16")
AMP_MODES.add("none", None)


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: everything of `ensemble.predict.predict` but the models and the data.

    Attributes:
        split: "oof" (fold k's weights on fold k's rows) or "test" (every fold on every row).
        overrides: model flags applied over each card (names of `card.resolve_config`'s flags).
        tta: views added to identity, e.g. "hflip,center_crop" or ["d4"] (see `tta.py`).
        merge: how views merge: "mean", "gmean", "max" (on probabilities) or "logits_mean";
            per class for a multilabel model (see `tta.py`).
        out_dir: where `<model>/<table>.csv` go.
        table_format: the tables' file format, a name of `ensemble.tables.TABLE_FORMATS` ("csv", "parquet").
        batch_size: images per DataLoader batch and per forward (views are chunked by it).
        workers: decoding processes (0 decodes in this process) or "auto" (`data.resolve_workers`).
        device: "auto", "cpu", "cuda" or "cuda:N".
        amp: mixed precision on CUDA, a name of `AMP_MODES`.
        save_views: keep every view's probabilities (`<table>.views.npz`).
        skip_bad: skip missing or undecodable images instead of failing.
        force: overwrite existing tables made from other inputs.
        resume: reuse stored parts and up-to-date tables whose inputs match.
        columns: data CSV column names.
        root: folder image paths are relative to (default: the data CSV's folder).
        channels_last: run torch models in channels_last memory format.
        fuse_bn: fold BatchNorms into the convolutions before them (torch models).
    """

    split: str
    overrides: dict[str, Any] = field(default_factory=dict)
    tta: str | Sequence[str] = ()
    merge: str = "mean"
    out_dir: Path = Path("preds")
    table_format: str = "csv"
    batch_size: int = 64
    workers: int | str = "auto"
    device: str = "auto"
    amp: str = "auto"
    save_views: bool = False
    skip_bad: bool = False
    force: bool = False
    resume: bool = True
    columns: Columns = Columns()
    root: str | os.PathLike | None = None
    channels_last: bool = True
    fuse_bn: bool = True

    def __post_init__(self) -> None:
        # the CLI passes its Enum members: keep plain strings in the record (sidecars, hashes)
        for name in ("split", "amp", "table_format"):
            value = getattr(self, name)
            object.__setattr__(self, name, getattr(value, "value", value))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "overrides", dict(self.overrides or {}))

    def check(self) -> None:
        """Raise ConfigError for a split, AMP mode or batch size that cannot work (before any work)."""
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        AMP_MODES.get(str(self.amp).lower())
        if self.table_format not in TABLE_FORMATS:
            raise ConfigError(f"unknown table format {self.table_format!r}; choose one of: {', '.join(TABLE_FORMATS)}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: give 1 or more images per batch")


def check_workers(workers: int | str) -> int | None:
    """A number of decoding processes (>= 0, 0: decode in the main process), or None for "auto".

    Raises:
        ConfigError: neither "auto" nor a count >= 0.
    """
    if isinstance(workers, str):
        text = workers.strip().lower()
        if text == "auto":
            return None
        if not text.lstrip("-").isdigit():
            raise ConfigError(f"--workers {workers!r}: give a number of decoding processes (0: decode in the main process) or auto")
        workers = int(text)
    if workers < 0:
        raise ConfigError(f"--workers {workers}: give a number of decoding processes >= 0 (0: decode in the main process) or auto")
    return workers
