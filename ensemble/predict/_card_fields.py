"""Checks of model-card fields: the same for card values and command-line flags.

Each check takes the raw value and `where` (the card and key, or the flag) for its error message,
and returns the normalised value. `FIELDS` is the one list of card keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ensemble.errors import ConfigError, preview
from ensemble.task import check_task

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
RESIZE_MODES = ("crop", "squash")

def _bad(where: str, what: str) -> ConfigError:
    return ConfigError(f"{where}: {what}")


def _split(v: Any) -> Any:
    """Flags may arrive as 'a,b,c' strings; cards give lists."""
    if isinstance(v, str) and "," in v:
        return [s.strip() for s in v.split(",") if s.strip()]
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _bad(where, f"must be a non-empty string, got {v!r}")
    return v.strip()


def _name(v: Any, where: str) -> str:
    s = _str(v, where)
    if "/" in s or "\\" in s or s in (".", ".."):
        raise _bad(where, f"{s!r} is used as a folder name (preds/<name>/); drop the path separators")
    return s


def _pos_int(v: Any, where: str) -> int:
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _bad(where, f"must be a positive integer, got {v!r}")
    return v


def _img_size(v: Any, where: str) -> tuple[int, int]:
    v = _split(v.replace("x", ",") if isinstance(v, str) else v)
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise _bad(where, f"must be one integer or [height, width], got {v!r}")
        return (_pos_int(v[0], where), _pos_int(v[1], where))
    s = _pos_int(v, where)
    return (s, s)


def _triple(v: Any, where: str, *, positive: bool = False) -> tuple[float, float, float]:
    v = _split(v)
    try:
        vals = tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else ()
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 3 or (positive and min(vals) <= 0):
        need = "3 positive numbers" if positive else "3 numbers"
        raise _bad(where, f"must be {need} (R, G, B on the 0..1 scale), got {v!r}")
    return vals  # type: ignore[return-value]


def _crop_pct(v: Any, where: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = -1.0
    if isinstance(v, bool) or not 0.0 < f <= 1.0:
        raise _bad(where, f"must be a number in (0, 1] (1.0 = no crop), got {v!r}")
    return f


def _choice(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(v: Any, where: str) -> str:
        if v not in choices:
            raise _bad(where, f"{v!r} is not one of: {', '.join(choices)}")
        return v

    return check


def classes_check(v: Any, where: str) -> tuple[str, ...]:
    v = _split(v)
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(c, (str, int)) for c in v):
        raise _bad(where, f"must be a non-empty list of class names, got {v!r}")
    names = tuple(str(c).strip() for c in v)
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise _bad(where, f"duplicate class names {preview(dup)}; each class once, in index order")
    return names


def _folds(v: Any, where: str) -> tuple[int, ...]:
    v = _split(v)
    v = [v] if isinstance(v, (int, str)) else v
    try:
        out = tuple(int(f) for f in v)
    except (TypeError, ValueError):
        raise _bad(where, f"must be a list of fold numbers, got {v!r}") from None
    if not out or min(out) < 0:
        raise _bad(where, f"must be a list of fold numbers >= 0, got {v!r}")
    return out


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _bad(where, f"must be true or false, got {v!r}")
    return v


def _table(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise _bad(where, f"must be a table of keyword arguments, got {v!r}")
    return dict(v)


def _weights(v: Any, where: str) -> Any:
    """list | {fold} pattern or single file | table fold -> file; checked, expanded later."""
    if isinstance(v, str) and "," in v and "{fold}" not in v:  # --checkpoints a.pth,b.pth
        v = _split(v)
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (str, os.PathLike)) for x in v):
        return [os.fspath(x) for x in v]
    if isinstance(v, Mapping) and v and all(isinstance(x, (str, os.PathLike)) for x in v.values()):
        try:
            return {int(k): os.fspath(x) for k, x in v.items()}
        except ValueError:
            raise _bad(where, f"table keys must be fold numbers, got {list(v)}") from None
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    raise _bad(where, f"must be a file, a list of files (one per fold), a table fold -> file, or a pattern with {{fold}}; got {v!r}")


# Every card key and flag, with its check; the card's valid keys are listed from here.
FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "name": _name,
    "family": _name,
    "arch": _str,
    "onnx": _weights,
    "checkpoints": _weights,
    "folds": _folds,
    "classes": classes_check,
    "classes_file": _str,
    "num_classes": _pos_int,
    "img_size": _img_size,
    "mean": _triple,
    "std": lambda v, w: _triple(v, w, positive=True),
    "crop_pct": _crop_pct,
    "interpolation": _choice(INTERPOLATIONS),
    "resize_mode": _choice(RESIZE_MODES),
    "ema": _bool,
    "model_kwargs": _table,
    "task": check_task,  # multiclass (softmax) | multilabel (a sigmoid per class)
}
FLAGS = (*FIELDS, "trust_checkpoint")
