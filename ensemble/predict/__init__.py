"""`ens predict`: checkpoints or ONNX models to per-fold OOF and test probabilities, with TTA.

The API is `ensemble.predict.predict(cards, data, *, split, ...)` (see `ensemble.predict.api`);
the module itself is callable too, so `ensemble.predict(card, data, split="oof")` works as
DESIGN.md documents. Submodules: `config` (the interface with the model side), `card`,
`checkpoint`, `runners`, `export` and `exporters` (model side), `options` (`PredictOptions`),
`data`, `images`, `tta`, `plan`, `engine`, `group`, `stacking`, `resume`, `assemble`, `api` (data
side). Heavy imports happen on first use.
"""

from __future__ import annotations

from typing import Any

from ensemble._api import make_module_callable

__all__ = ["predict"]


def __getattr__(name: str) -> Any:
    if name == "predict":
        from ensemble.predict.api import predict

        return predict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


make_module_callable(__name__, "predict")
