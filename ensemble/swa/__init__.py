"""Weight-space averaging (`ens swa`): uniform, weighted, top-N by a metric, EMA; BatchNorm refresh.

The averaged checkpoint is a plain state dict (`.safetensors` or `.pth`) that `ens predict` loads
like any other, so an SWA model is scored on OOF and blended beside the single checkpoints and the
seed average. Submodules: `options` (`SwaOptions`), `plan` (the candidates and which are used),
`average` (the averaging), `select` (metrics file, top-N), `bn` (BatchNorm refresh), `write` (output
formats, the sidecar), `core` (`swa`: plan, average, write). Names load on first use,
so the CLI can read the registries without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ensemble._api import make_module_callable

_LAZY = {
    "average_checkpoints": "average", "check_compatible": "average", "normalise_weights": "average",
    "BnRefresh": "bn", "refresh_bn": "bn",
    "BN_NOTE": "core", "SwaOptions": "options", "Source": "plan", "SwaResult": "write", "gather_checkpoints": "plan",
    "swa": "core",
    "MODES": "select", "match_metrics": "select", "read_metrics": "select", "select_top_n": "select",
    "FORMATS": "write", "output_paths": "write", "save_state_dict": "write",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"ensemble.swa.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


make_module_callable(__name__, "swa")
