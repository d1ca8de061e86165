"""The last step of `swa`: the averaged state dict and its sidecar, written together.

Formats: `.safetensors` (default) or a weights-only loadable `.pth`. The output is a plain state
dict (no nesting, no prefixes), so `ensemble.predict.checkpoint.load_state_dict` and `ens predict`
read it like any other checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble._registry import Registry
from ensemble.errors import ConfigError

if TYPE_CHECKING:  # torch loads when a file is written, not when the CLI lists the formats
    import torch

    from ensemble.swa.bn import BnRefresh
    from ensemble.swa.plan import Source, SwaPlan

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


@dataclass
class SwaResult:
    """What `swa` wrote.

    Attributes:
        out: the averaged checkpoint.
        sidecar: its JSON record (`out` with a `.json` suffix).
        sha256: hex SHA-256 of `out`.
        sources: every candidate, used ones first in selection order (best first with top-N).
        meta: the sidecar's content.
    """

    out: Path
    sidecar: Path
    sha256: str
    sources: list[Source] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def used(self) -> list[Source]:
        return [s for s in self.sources if s.used]


def write_swa(plan: SwaPlan, avg: StateDict, bn: BnRefresh | None, *, card: str | os.PathLike | None,
              fold: int | None, selection: dict[str, Any], force: bool) -> SwaResult:
    """Hash the used checkpoints, then write the average and its sidecar all-or-nothing.

    Args:
        plan: what was averaged.
        avg: the averaged (and possibly BatchNorm-refreshed) state dict.
        bn: what the BatchNorm refresh covered, or None.
        card: the model card given, recorded as is.
        fold: the fold, recorded.
        selection: top_n, mode, metrics file and metric of the selection, recorded.
        force: overwrite existing outputs.
    """
    # imported here: `ens --help` reads FORMATS from this module
    from ensemble import __version__
    from ensemble._io import atomic_outputs, json_default, sha256_file

    used = plan.used
    for s in used:
        s.sha256 = sha256_file(s.path)
    meta: dict[str, Any] = {
        "tool": "ens swa",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": plan.out.suffix.lstrip("."),
        "ema": plan.ema,
        "card": str(card) if card is not None else None,
        "arch": plan.cfg.arch if plan.cfg is not None else None,
        "fold": fold,
        "selection": selection,
        "integer_tensors": "0-dim counters (num_batches_tracked): max over sources; others: equal in all sources",
        "sources": [{"path": str(s.path), "sha256": s.sha256, "weight": s.weight, "metric": s.metric} for s in used],
        "not_selected": [{"path": str(s.path), "metric": s.metric} for s in plan.sources if not s.used],
        "bn_refresh": asdict(bn) if bn is not None else None,
    }
    with atomic_outputs([plan.sidecar, plan.out], force=force) as (tmp_json, tmp_ckpt):
        save_state_dict(avg, tmp_ckpt, plan.out.suffix)
        meta["sha256"] = sha256_file(tmp_ckpt)
        tmp_json.write_text(json.dumps(meta, indent=2, default=json_default) + "\n", encoding="utf-8")
    return SwaResult(plan.out, plan.sidecar, meta["sha256"], plan.sources, meta)
