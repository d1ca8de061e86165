"""`ens predict`: checkpoints or ONNX models to per-fold OOF and test probabilities, with TTA.

The API is `ensemble.predict.predict(cards, data, *, split, ...)` (see `ensemble.predict.api`);
the module itself is callable too, so `ensemble.predict(card, data, split="oof")` works as
DESIGN.md documents. Submodules: `config` (the interface with the model side), `card`,
`checkpoint`, `runners` (model side), `data`, `tta`, `plan`, `engine`, `resume`, `api` (data side).
Heavy imports happen on first use.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["predict"]


def __getattr__(name: str) -> Any:
    if name == "predict":
        from ensemble.predict.api import predict

        return predict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """`import ensemble.predict` binds the package, shadowing the function of the same name in
    `ensemble`; making the package callable keeps `ensemble.predict(...)` meaning the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ensemble.predict.api import predict

        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
