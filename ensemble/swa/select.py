"""Which checkpoints to average: a metrics file and top-N by an explicit direction.

Metrics file formats (one value per checkpoint; rows for checkpoints not being averaged are ignored):

- JSON: an object mapping checkpoint -> number, e.g. ``{"runs/fold0/epoch9.pth": 0.871, ...}``;
  the metric is named after the file (``val_f1.json`` -> "val_f1").
- CSV: a header row; the first column names the checkpoint, the metric is the column given by
  `metric` (``--metric``), or the only other column when there are two.

A checkpoint is named by its path (relative to the metrics file's folder or to the working
directory, or absolute) or by its bare file name when that is unambiguous among the checkpoints.

Nothing assumes higher is better (timm's `avg_checkpoints.py` does): the direction is the required
`mode`, "max" (accuracy, F1) or "min" (loss). Ties keep the checkpoints' order.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ensemble._registry import Registry
from ensemble.errors import ConfigError, preview

# mode -> sort key of a metric value: the best checkpoints sort first
MODES: Registry[Callable[[float], float]] = Registry("selection mode")
MODES.add("max", lambda v: -v)
MODES.add("min", lambda v: v)


def read_metrics(path: str | os.PathLike, *, metric: str | None = None) -> tuple[str, dict[str, float]]:
    """Read a metrics file (see the module doc).

    Args:
        path: a `.json` or `.csv` file.
        metric: the CSV column holding the metric (needed when the CSV has more than two columns).

    Returns:
        (metric name: the CSV column, or the JSON file's stem; {checkpoint key: value}).

    Raises:
        ConfigError: missing or unreadable file, unknown column, non-numeric or duplicate entries.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such metrics file; give a JSON object or CSV of checkpoint -> metric (--metrics)")
    if p.suffix.lower() == ".json":
        if metric is not None:
            raise ConfigError(f"{p}: --metric picks a CSV column; a JSON metrics file holds one metric")
        # imported here: `ens --help` reads MODES from this module
        from ensemble._io import read_json_object

        obj = read_json_object(p, ConfigError, what="metrics file", fix="write an object of checkpoint -> number")
        return p.stem, {str(k): _number(v, p, k) for k, v in obj.items()}  # e.g. val_f1.json -> "val_f1"
    import pandas as pd  # only when a metrics CSV is read: `ens --help` lists swa's choices without it

    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None
    cols = [str(c) for c in frame.columns]
    if metric is None:
        if len(cols) != 2:
            raise ConfigError(
                f"{p}: {len(cols)} columns ({', '.join(cols)}); name the metric column with --metric "
                "(the first column names the checkpoint)"
            )
        metric = cols[1]
    elif metric not in cols[1:]:
        raise ConfigError(f"{p}: no metric column {metric!r}; choose one of: {', '.join(cols[1:])}")
    keys = frame[cols[0]].tolist()
    dup = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dup:
        raise ConfigError(f"{p}: checkpoints listed twice: {preview(dup)}; keep one row per checkpoint")
    return metric, {k: _number(v, p, k) for k, v in zip(keys, frame[metric])}


def _number(v: object, p: Path, key: object) -> float:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(v, bool) or not math.isfinite(x):
        raise ConfigError(f"{p}: metric of {key!r} is {v!r}, not a finite number; fix or drop that row")
    return x


def match_metrics(
    checkpoints: Sequence[Path], values: dict[str, float], metrics_path: str | os.PathLike
) -> list[float | None]:
    """The metric of each checkpoint (None where the file has none).

    Raises:
        ConfigError: a bare file name that fits several checkpoints, or two entries for one checkpoint.
    """
    base = Path(metrics_path).parent
    by_file: dict[Path, float] = {}
    by_name: dict[str, float] = {}
    for key, v in values.items():
        k = Path(key)
        if len(k.parts) == 1:
            by_name[key] = v
        for cand in {(base / k).resolve(), k.resolve()}:
            by_file[cand] = v  # a key may be relative to the metrics file or to the working directory
    names = [c.name for c in checkpoints]
    out: list[float | None] = []
    for c in checkpoints:
        path_hit = by_file.get(c.resolve())
        name_hit = by_name.get(c.name)
        if name_hit is not None and path_hit is None and names.count(c.name) > 1:
            raise ConfigError(
                f"{metrics_path}: {c.name!r} fits several checkpoints ({preview(x for x in checkpoints if x.name == c.name)}); "
                "name them by path in the metrics file"
            )
        out.append(path_hit if path_hit is not None else name_hit)
    return out


def select_top_n(
    checkpoints: Sequence[Path], metrics: Sequence[float | None], *, top_n: int, mode: str, metrics_path: str
) -> list[int]:
    """Indices of the `top_n` best checkpoints, best first.

    Args:
        checkpoints: the candidates.
        metrics: one value per candidate (from `match_metrics`).
        top_n: how many to keep, 1 <= top_n <= len(checkpoints).
        mode: "max" (higher is better) or "min" (lower is better); no default on purpose.
        metrics_path: for messages.

    Raises:
        ConfigError: top_n out of range, or a candidate without a metric.
        UnknownNameError: an unknown mode.
    """
    key = MODES.get(mode)
    if not 1 <= top_n <= len(checkpoints):
        raise ConfigError(
            f"--top-n {top_n} but {len(checkpoints)} checkpoints were given; choose 1 to {len(checkpoints)}"
        )
    missing = [str(c) for c, m in zip(checkpoints, metrics) if m is None]
    if missing:
        raise ConfigError(
            f"{metrics_path} has no metric for {preview(missing)}; add a row per checkpoint (path or file name)"
        )
    order = sorted(range(len(checkpoints)), key=lambda i: key(metrics[i]))  # stable: ties keep input order
    return order[:top_n]
