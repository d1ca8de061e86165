"""Resumable parts of a prediction run, and the rule for existing outputs.

A *part* is the merged probabilities of one work item (model x fold x image shard), stored as
`<out>/<model>/.parts/<split>_fold<k>_<shard>.npz` (atomic write) as soon as the item is done. Its
*key* hashes everything its numbers depend on: the weights file's SHA-256, the ids and paths of its
rows (as written in the data CSV), the preprocessing and normalisation, the architecture and
backend, the task (softmax or sigmoid), the TTA views, the merge, whether views are kept, AMP and
BatchNorm folding. A rerun reuses a part whose key
matches and recomputes one whose key differs, so an interrupted run continues where it stopped.
Image *contents* are not hashed (that would cost a full read); replacing an image at the same
path needs `resume=False` (`--no-resume`).

Existing final tables: each table's sidecar records `inputs_key`, a hash of its parts' keys. When a
table exists and its recorded key equals the new one, it is *up to date*: it is read back, not
recomputed or rewritten. When it exists with another key (or none), or the same table exists in
another format (`oof.csv` when `oof.parquet` is asked for: they would share the sidecar), the run
stops before any work with `OutputExistsError` unless `force` (which then replaces it; the parts are
reused, so switching formats costs no inference).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ensemble._io import atomic_outputs
from ensemble.predict.config import ModelConfig
from ensemble.tables import other_format_paths
from ensemble.task import MULTICLASS

PART_FORMAT = 1  # bump when the part layout or key recipe changes, so old parts are not misread


@dataclass
class Part:
    """The result of one work item.

    Attributes:
        key: the inputs hash it was computed from.
        rows: row indices into the data, shape (n,).
        probs: merged probabilities, float32 (n, C); rows that could not be decoded are zeros.
        ok: which rows were decoded, bool (n,).
        views: per-view probabilities, float32 (V, n, C), or None when views were not kept.
        bad: reason per row that was skipped (row index -> reason).
    """

    key: str
    rows: np.ndarray
    probs: np.ndarray
    ok: np.ndarray
    views: np.ndarray | None = None
    bad: dict[int, str] | None = None


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def part_key(
    cfg: ModelConfig,
    weights_sha256: str,
    rows_fingerprint: str,
    views: list[str],
    merge: str,
    save_views: bool,
    amp: str,
    fuse_bn: bool = True,
) -> str:
    """The inputs hash of one part (see the module docstring for what goes in)."""
    extra: dict[str, Any] = {"fuse_bn": True} if fuse_bn and cfg.backend == "torch" else {}  # folding changes the last bits
    if cfg.task != MULTICLASS:  # sigmoid parts never stand in for softmax ones (nor the reverse)
        extra["task"] = cfg.task
    return _hash({
        **extra,  # absent when off (multiclass), so parts made before these existed stay valid
        "format": PART_FORMAT,
        "weights": weights_sha256,
        "rows": rows_fingerprint,
        "backend": cfg.backend,
        "arch": cfg.arch,
        "ema": cfg.ema,
        "classes": list(cfg.classes),
        "preprocess": [list(cfg.img_size), cfg.crop_pct, cfg.interpolation, cfg.resize_mode],
        "normalise": [list(cfg.mean), list(cfg.std)],
        "views": views,
        "merge": merge,
        "save_views": save_views,
        "amp": amp,
    })


def table_key(kind: str, part_keys: list[str]) -> str:
    """The inputs hash of a final table: its kind and its parts' keys, in order."""
    return _hash({"format": PART_FORMAT, "kind": kind, "parts": part_keys})


def part_path(out_dir: Path, model: str, split: str, fold: int, shard: int) -> Path:
    return Path(out_dir) / model / ".parts" / f"{split}_fold{fold}_{shard:04d}.npz"


def save_part(path: Path, part: Part) -> None:
    """Atomically write a part (a rerun overwrites a stale one)."""
    bad_rows = np.array(sorted(part.bad or {}), dtype=np.int64)
    arrays = {
        "key": np.array(part.key), "rows": part.rows, "probs": part.probs, "ok": part.ok,
        "bad_rows": bad_rows, "bad_reasons": np.array([part.bad[r] for r in bad_rows] if len(bad_rows) else [], dtype=str),
    }
    if part.views is not None:
        arrays["views"] = part.views
    with atomic_outputs([path], force=True) as (tmp,):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_part(path: Path, key: str, rows: np.ndarray, *, allow_bad: bool) -> Part | None:
    """The stored part if it exists, its key matches and it covers `rows`; else None.

    A part that skipped unreadable images is reused only when skipping is allowed again
    (otherwise the rerun recomputes it and reports the bad image as an error).
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or not np.array_equal(z["rows"], rows):
                return None
            bad = {int(r): str(s) for r, s in zip(z["bad_rows"], z["bad_reasons"])}
            if bad and not allow_bad:
                return None
            views = z["views"] if "views" in z.files else None
            return Part(key, z["rows"], z["probs"], z["ok"], views, bad)
    except (OSError, ValueError, KeyError, EOFError):
        return None  # unreadable (e.g. a foreign file): recompute it


def recorded_key(table_path: Path) -> str | None:
    """The `inputs_key` in an existing table's sidecar, or None."""
    sidecar = table_path.with_suffix(".json")
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get("inputs_key")
    except (OSError, ValueError, AttributeError):
        return None


def output_state(table_path: Path, key: str) -> str:
    """"new" (no table), "up to date" (exists with this key) or "differs" (exists with other inputs,
    or exists in another format)."""
    if any(p.exists() for p in other_format_paths(table_path)):
        return "differs"
    if not os.path.exists(table_path):
        return "new"
    return "up to date" if recorded_key(table_path) == key else "differs"
