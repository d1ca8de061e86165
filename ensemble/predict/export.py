"""`ens export-onnx`: one ONNX file per fold checkpoint, each checked against torch in ONNX Runtime.

The exporters (TorchScript, then dynamo) and their opset ranges live in `exporters.py`. Every file
is self-contained (weights inside, no external data file), has a dynamic batch axis, and is written
only after its parity check passes; a model card beside the files makes `ens predict --card
OUT/<name>.toml` run them. The model's task (multiclass softmax or multilabel sigmoid) is kept in each
file's metadata (`ens.task`) and in that card, so a file is never read under the other activation. A failed export leaves nothing: no file, no new folder.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensemble import __version__
from ensemble._io import atomic_outputs, sha256_bytes
from ensemble._progress import NoProgress, Progress
from ensemble.errors import ConfigError, ExportError
from ensemble.predict.card import format_card, resolve_config
from ensemble.predict.checkpoint import load_model
from ensemble.predict.config import ONNX_TASK_KEY, ModelConfig
from ensemble.predict.exporters import EXPORTER_CHOICES, EXPORTERS, check_opset, export_model

__all__ = ["EXPORTERS", "EXPORTER_CHOICES", "check_opset", "export_model", "export_onnx", "onnx_logits"]

def onnx_logits(data: bytes | str | os.PathLike, x: torch.Tensor) -> np.ndarray:
    """Logits of an ONNX model on a CPU batch, through ONNX Runtime's CPU provider (the parity oracle)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = data if isinstance(data, bytes) else str(data)
    try:
        sess = ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
        (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    except Exception as e:  # ORT raises its own types (InvalidGraph, Fail, NotImplemented...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ExportError(f"ONNX Runtime cannot run the exported model ({type(e).__name__}: {first}); "
                          "try another --opset or --exporter") from None
    return np.asarray(out, dtype=np.float32)


def _stamp(data: bytes, props: Mapping[str, str]) -> tuple[bytes, int]:
    """Add metadata to a serialized ONNX model (classes, preprocessing, source); returns it and its opset."""
    import onnx

    model = onnx.load_from_string(data)
    onnx.helper.set_model_props(model, dict(props))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return model.SerializeToString(), opset


def export_onnx(
    cfg: ModelConfig | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    opset: int = 17,
    atol: float = 1e-4,
    batch: int = 2,
    force: bool = False,
    seed: int = 42,
    exporter: str = "auto",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Export every fold checkpoint of `cfg` to `out_dir/fold<k>.onnx`, checked against torch.

    Each model is exported on the CPU in float32 with a dynamic batch axis, then run by ONNX
    Runtime and by torch on the same random batch (normal noise, seeded, of `batch` rows, a
    different batch size than the export's sample so the dynamic axis is exercised). All files
    and the card `out_dir/<name>.toml` are written together, only when every fold passes.

    Args:
        cfg: a torch model (arch + checkpoints), or a model card resolved with `overrides`.
        out_dir: output folder (created).
        overrides: flags of `card.resolve_config` applied over the card (when `cfg` is a card).
        opset: ONNX opset.
        atol: largest allowed absolute difference of logits between ONNX Runtime and torch.
        batch: rows of the parity batch.
        force: overwrite existing files.
        seed: seed of the parity batch.
        exporter: "auto", "torchscript" or "dynamo".
        progress: advanced once per fold.

    Returns:
        One row per fold: fold, file, max_abs_diff, opset, exporter, sha256, checkpoint_sha256, card.

    Raises:
        ConfigError: an ONNX model as input, bad batch/atol, an opset out of range. ExportError:
            export failed or parity beyond `atol` (nothing is written, no folder is left behind).
        OutputExistsError: outputs exist without `force`. OutputError: they cannot be written.
    """
    if not isinstance(cfg, ModelConfig):
        cfg = resolve_config(cfg, **dict(overrides or {}))
    if cfg.backend != "torch":
        raise ConfigError(f"model {cfg.name!r} is already ONNX; export-onnx needs arch and checkpoints")
    check_opset(opset, exporter)
    if batch < 1 or not atol > 0:
        raise ConfigError(f"--batch must be >= 1 and --atol > 0 (got batch={batch}, atol={atol})")
    progress = progress or NoProgress()
    out = Path(out_dir)
    files = [out / f"fold{k}.onnx" for k in cfg.folds]
    card_file = out / f"{cfg.name}.toml"
    gen = torch.Generator().manual_seed(seed)
    h, w = cfg.img_size
    x = torch.randn(batch, 3, h, w, generator=gen)  # (B, 3, H, W): normalised images are ~N(0, 1)
    sample = torch.randn(batch + 1, 3, h, w, generator=gen)
    rows: list[dict[str, Any]] = []
    progress.start(f"exporting {cfg.name}", len(files))
    try:
        with _new_folders_removed_on_error(out), atomic_outputs([*files, card_file], force=force) as temps:
            for fold, final, tmp in zip(cfg.folds, files, temps):
                model, ckpt_sha = load_model(cfg, fold, device="cpu")
                data, used = export_model(model, sample, opset=opset, exporter=exporter)
                with torch.inference_mode():
                    ref = model(x).float().numpy()
                got = onnx_logits(data, x)
                diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
                if not diff <= atol:
                    raise ExportError(
                        f"{final}: ONNX Runtime and torch disagree on fold {fold} (max abs logit difference "
                        f"{diff:.3g} > atol {atol:g}, shapes {got.shape} vs {ref.shape}); nothing was written; "
                        "try another --exporter or --opset, or raise --atol if the difference is expected"
                    )
                data, opset_used = _stamp(data, _metadata(cfg, fold, ckpt_sha))
                tmp.write_bytes(data)
                rows.append({
                    "fold": fold, "file": str(final), "max_abs_diff": diff, "opset": opset_used,
                    "exporter": used, "sha256": sha256_bytes(data), "checkpoint_sha256": ckpt_sha, "card": str(card_file),
                })
                progress.advance()
            temps[-1].write_text(_card_text(cfg, rows), encoding="utf-8")
    finally:
        progress.stop()
    return rows


@contextlib.contextmanager
def _new_folders_removed_on_error(folder: Path) -> Iterator[None]:
    """Remove `folder` and the parents this export creates for it when the export fails (nothing partial)."""
    new = []
    p = folder
    while not p.exists() and p != p.parent:
        new.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for q in new:  # innermost first; a folder something else has put a file in stays
            with contextlib.suppress(OSError):
                q.rmdir()
        raise


def _metadata(cfg: ModelConfig, fold: int, ckpt_sha: str) -> dict[str, str]:
    """What the ONNX file itself records about its inputs and origin (read with onnx or Netron)."""
    return {
        "ens.version": __version__, "ens.name": cfg.name, "ens.arch": str(cfg.arch), "ens.fold": str(fold),
        "ens.classes": json.dumps(list(cfg.classes)), "ens.img_size": json.dumps(list(cfg.img_size)),
        "ens.mean": json.dumps(list(cfg.mean)), "ens.std": json.dumps(list(cfg.std)),
        "ens.checkpoint_sha256": ckpt_sha, ONNX_TASK_KEY: cfg.task,
    }


def _card_text(cfg: ModelConfig, rows: list[dict[str, Any]]) -> str:
    comments = [
        f"ONNX export of {cfg.card_path or cfg.name} (arch {cfg.arch}) by ens {__version__} export-onnx.",
        *(f"fold {r['fold']}: checkpoint sha256 {r['checkpoint_sha256']}, max abs diff vs torch {r['max_abs_diff']:.3g}" for r in rows),
    ]
    values = {
        "name": cfg.name,
        "family": cfg.family or None,  # a config built without a card may have none (the card then defaults it)
        "onnx": "fold{fold}.onnx",
        "folds": [r["fold"] for r in rows],
        "classes": list(cfg.classes),
        "img_size": list(cfg.img_size),
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "crop_pct": cfg.crop_pct,
        "interpolation": cfg.interpolation,
        "resize_mode": cfg.resize_mode,
        "task": cfg.task,
    }
    return format_card(values, comments)
