"""The work list of a prediction run: which model fold predicts which rows, and what goes where.

`make_plan` turns configs + data + split into `WorkItem`s (model x fold x image shard), each with
the key of its inputs, and into `Output`s (the final tables and the items they are made of). It
checks everything it can before any image is read: folds without a checkpoint, missing weights
files, existing outputs. The items are independent: a distributed run gives each rank a balanced
share that keeps an image shard's fold models together (`distributed.assign`), and rank 0
assembles the outputs from the parts (`assemble.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ensemble._io import sha256_file
from ensemble.errors import ConfigError, ModelLoadError, OutputExistsError
from ensemble.labels import Labels
from ensemble.predict.config import ModelConfig
from ensemble.predict.data import Preprocess, rows_fingerprint
from ensemble.predict.resume import output_state, part_key, part_path, table_key
from ensemble.predict.tta import View
from ensemble.tables import TABLE_FORMATS, other_format_paths

SHARD_ROWS = 2048  # images per resumable part: small enough that an interrupted run loses little


@dataclass
class WorkItem:
    """One model fold on one shard of rows.

    Attributes:
        model: index into the plan's configs.
        fold: the fold whose weights run.
        shard: shard number within (model, fold).
        rows: row indices into the data, ascending, shape (n,).
        key: inputs hash (resume).
        path: where its part is stored.
    """

    model: int
    fold: int
    shard: int
    rows: np.ndarray
    key: str
    path: Path


@dataclass
class Output:
    """One final table: `<out>/<model>/<name>.csv` (or `.parquet`), made of some items (in row order).

    Attributes:
        model: index into the plan's configs.
        name: "oof", "test" or "test_fold<k>".
        kind: "oof" or "test".
        folds: the folds it is made of (a test table averages them).
        items: indices into the plan's items.
        path: the table's path.
        key: inputs hash of the table.
        state: "new", "up to date" or "differs" (before the run).
    """

    model: int
    name: str
    kind: str
    folds: list[int]
    items: list[int]
    path: Path
    key: str
    state: str


@dataclass
class Plan:
    configs: list[ModelConfig]
    data: Labels
    split: str
    views: list[View]
    merge: str
    save_views: bool
    out_dir: Path
    table_format: str = "csv"
    items: list[WorkItem] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    weights_sha256: dict[tuple[int, int], str] = field(default_factory=dict)

    def needed(self) -> list[int]:
        """The items of every output that is not up to date, ascending."""
        return sorted({i for o in self.outputs if o.state != "up to date" for i in o.items})


def weights_file(cfg: ModelConfig, fold: int) -> Path:
    return Path(cfg.onnx[fold] if cfg.onnx else cfg.checkpoints[fold])


def fold_rows(cfg: ModelConfig, data: Labels, split: str) -> dict[int, np.ndarray]:
    """fold -> the rows its model predicts: its own fold's rows (oof) or every row (test).

    Raises:
        ConfigError: (oof) a fold of the data has no checkpoint of this model.
    """
    if split == "test":
        return {k: np.arange(len(data)) for k in cfg.folds}
    have = set(cfg.folds)
    out = {}
    for k in data.fold_values:
        rows = np.flatnonzero(data.folds == k)
        if k not in have:
            raise ConfigError(
                f"{data.source}: fold {k} ({len(rows)} rows) has no checkpoint of model {cfg.name!r} "
                f"(it has folds {', '.join(map(str, cfg.folds)) or 'none'}); add fold {k}'s checkpoint "
                "to the card (or --checkpoint) or predict that fold's rows with --split test"
            )
        out[k] = rows
    return out


def make_plan(
    configs: list[ModelConfig],
    data: Labels,
    *,
    split: str,
    views: list[View],
    merge: str,
    save_views: bool,
    out_dir: Path,
    path_col: str,
    amp: str,
    force: bool,
    resume: bool = True,
    fuse_bn: bool = True,
    table_format: str = "csv",
) -> Plan:
    """Build and check the work list and the outputs (nothing is read or run yet).

    `split` is one of `options.SPLITS`, checked with the other options (`PredictOptions.check`).

    Raises:
        ConfigError: duplicate model names, a model without weights, a data fold
            without a checkpoint.
        ModelLoadError: a weights file does not exist.
        OutputExistsError: an output exists, was made from other inputs (or `resume` is off, so it
            is to be recomputed), and `force` is off.
    """
    names = [c.name for c in configs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"model name(s) {', '.join(dup)} given twice; each model writes {out_dir}/<name>/, give each a --name")
    plan = Plan(configs, data, split, views, merge, save_views, Path(out_dir), table_format)
    view_names = [v.name for v in views]
    for m, cfg in enumerate(configs):
        if not cfg.folds:
            raise ConfigError(f"model {cfg.name!r} has no checkpoints or ONNX files; give them in the card or with --checkpoint/--onnx")
        Preprocess.of(cfg)  # checks resize mode, interpolation, crop_pct
        by_fold: dict[int, list[int]] = {}
        for k, rows in fold_rows(cfg, data, split).items():
            wpath = weights_file(cfg, k)
            if not wpath.is_file():
                raise ModelLoadError(
                    f"{wpath}: no such weights file (model {cfg.name!r}, fold {k}); fix the path in the card or the flag"
                )
            sha = plan.weights_sha256[(m, k)] = sha256_file(wpath)
            for s, start in enumerate(range(0, len(rows), SHARD_ROWS)):
                shard_rows = rows[start:start + SHARD_ROWS]
                key = part_key(
                    cfg, sha, rows_fingerprint(data, shard_rows, path_col), view_names, merge, save_views, amp, fuse_bn
                )
                by_fold.setdefault(k, []).append(len(plan.items))
                plan.items.append(WorkItem(m, k, s, shard_rows, key, part_path(out_dir, cfg.name, split, k, s)))
        plan.outputs.extend(_outputs(plan, m, by_fold))
    if not resume:  # reuse nothing: an up-to-date table is recomputed like any other
        for o in plan.outputs:
            o.state = "differs" if o.state == "up to date" else o.state
    clash = [o for o in plan.outputs if o.state == "differs"]
    if clash and not force:
        raise OutputExistsError(
            _clash_text(clash[0].path, resume)
            + (f" (and {len(clash) - 1} more tables)" if len(clash) > 1 else "")
            + "; pass --force (force=True) to overwrite or choose another --out"
        )
    return plan


def _clash_text(path: Path, resume: bool) -> str:
    """Why an existing table stops the run: other inputs, no resume, or the same table in another format."""
    if not path.exists():
        other = next(p for p in other_format_paths(path) if p.exists())
        return f"{other} exists (the table in another format; it would share the sidecar with {path.name})"
    why = ("was made from other inputs (checkpoint, data, preprocessing, TTA, AMP or BatchNorm folding differ)"
           if resume else "would be recomputed (no resume)")
    return f"{path} exists and {why}"


def _outputs(plan: Plan, m: int, by_fold: dict[int, list[int]]) -> list[Output]:
    cfg, folds = plan.configs[m], sorted(by_fold)
    base = plan.out_dir / cfg.name

    def output(name: str, kind: str, fs: list[int]) -> Output:
        items = [i for k in fs for i in by_fold[k]]
        key = table_key(name, [plan.items[i].key for i in items])
        path = base / f"{name}{TABLE_FORMATS[plan.table_format]}"
        return Output(m, name, kind, fs, items, path, key, output_state(path, key))

    if plan.split == "oof":
        return [output("oof", "oof", folds)]
    return [output(f"test_fold{k}", "test", [k]) for k in folds] + [output("test", "test", folds)]
