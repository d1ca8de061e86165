"""Writing an averaged state dict: `.safetensors` (default) or a weights-only loadable `.pth`.

The output is a plain state dict (no nesting, no prefixes), so `ensemble.predict.checkpoint
.load_state_dict` and `ens predict` read it like any other checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble._registry import Registry
from ensemble.errors import ConfigError

if TYPE_CHECKING:  # torch loads when a file is written, not when the CLI lists the formats
    import torch

StateDict = dict[str, "torch.Tensor"]


def _save_safetensors(sd: StateDict, path: Path) -> None:
    from safetensors.torch import save_file

    # safetensors refuses views and shared storage; every averaged tensor is a fresh contiguous one,
    # but integer buffers taken as is may be views of a loaded file
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()}, str(path), metadata={"format": "pt"})


def _save_torch(sd: StateDict, path: Path) -> None:
    import torch

    # only tensors in a plain dict: loadable with torch.load(weights_only=True)
    torch.save({k: v.detach().contiguous().clone() for k, v in sd.items()}, path)


# output suffix -> writer; the suffix of --out picks the format
FORMATS: Registry[Callable[[StateDict, Path], None]] = Registry("checkpoint format (suffix of --out)")
FORMATS.add(".safetensors", _save_safetensors)
FORMATS.add(".pth", _save_torch)
FORMATS.add(".pt", _save_torch)


def output_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """The checkpoint and its sidecar JSON (same name, `.json` suffix).

    Raises:
        ConfigError: a suffix that is not a known format.
    """
    p = Path(out)
    if p.suffix not in FORMATS:
        raise ConfigError(
            f"--out {p}: unknown checkpoint suffix {p.suffix or '(none)'!r}; end it in one of: {', '.join(FORMATS.names())}"
        )
    return p, p.with_suffix(".json")


def save_state_dict(sd: StateDict, path: Path, suffix: str) -> None:
    """Write `sd` to `path` in the format of `suffix` (the final name's, as `path` may be a temp)."""
    FORMATS.get(suffix)(sd, path)
