"""ens: turn fold checkpoints into honest, blended competition submissions.

The stable API (DESIGN.md): `read_table`, `write_table`, `macro_f1`, `oof_report`, `blend`,
`predict`. Heavy modules (torch, timm, onnxruntime) load only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from ensemble.errors import EnsembleError  # noqa: E402

# name -> module that defines it; imported on first access so `ens --help` stays fast (even the
# tables: numpy and pandas alone take a third of a second to import)
_LAZY = {
    "PredTable": "ensemble.tables",
    "make_table": "ensemble.tables",
    "read_table": "ensemble.tables",
    "write_table": "ensemble.tables",
    "macro_f1": "ensemble.metrics",
    "oof_report": "ensemble.report",
    "blend": "ensemble.blend",
    "predict": "ensemble.predict",
    "read_labels": "ensemble.labels",
    "swa": "ensemble.swa",
    "record_submission": "ensemble.ledger",
    "select_finals": "ensemble.select",
}

__all__ = ["EnsembleError", "__version__", *_LAZY]


if TYPE_CHECKING:
    from ensemble.tables import PredTable, make_table, read_table, write_table  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
