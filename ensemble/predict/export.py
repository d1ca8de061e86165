"""`ens export-onnx`: one ONNX file per fold checkpoint, each checked against torch in ONNX Runtime.

Exporters (a registry): "torchscript" (`torch.onnx.export(dynamo=False)`: fast, offline, any opset)
and "dynamo" (`torch.export` + onnxscript: slower, handles what TorchScript tracing cannot, opset
18 or later). "auto" tries TorchScript, then dynamo. Every file is self-contained (weights inside,
no external data file), has a dynamic batch axis, and is written only after its parity check passes;
a model card beside the files makes `ens predict --card OUT/<name>.toml` run them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensemble import __version__
from ensemble._io import atomic_outputs, sha256_bytes
from ensemble._progress import NoProgress, Progress
from ensemble._registry import Registry
from ensemble.errors import ConfigError, ExportError, unknown_name
from ensemble.predict.card import format_card, resolve_config
from ensemble.predict.checkpoint import load_model
from ensemble.predict.config import ModelConfig

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "logits"
# exporter name -> fn(model, sample, opset) -> serialized ONNX model
EXPORTERS: Registry[Callable[[torch.nn.Module, torch.Tensor, int], bytes]] = Registry("ONNX exporter")
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "torch.fx", "onnxscript")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters: warnings, log lines, and prints at the file-descriptor level (the
    TorchScript exporter dumps whole graphs to stderr from C++ when it fails); the library never prints."""
    levels = {n: logging.getLogger(n).level for n in _NOISY_LOGGERS}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for n in _NOISY_LOGGERS:
            logging.getLogger(n).setLevel(logging.CRITICAL)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for n, lvl in levels.items():
                logging.getLogger(n).setLevel(lvl)


@EXPORTERS.register("torchscript")
def _export_torchscript(model: torch.nn.Module, sample: torch.Tensor, opset: int) -> bytes:
    buf = io.BytesIO()  # in memory: one self-contained file, nothing written before the check
    torch.onnx.export(
        model, (sample,), buf, dynamo=False, opset_version=opset, do_constant_folding=True,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )
    return buf.getvalue()


@EXPORTERS.register("dynamo")
def _export_dynamo(model: torch.nn.Module, sample: torch.Tensor, opset: int) -> bytes:
    # The dynamo exporter has no kernels below opset 18 and its down-conversion fails on common
    # ops (Resize with antialias, Reduce* axes), so it exports at 18 or later.
    program = torch.onnx.export(
        model, (sample,), dynamo=True, opset_version=max(opset, 18), verbose=False,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
    )
    return program.model_proto.SerializeToString()


EXPORTER_CHOICES = ("auto", *EXPORTERS.names())  # "auto": each registered exporter in turn


def export_model(model: torch.nn.Module, sample: torch.Tensor, *, opset: int = 17, exporter: str = "auto") -> tuple[bytes, str]:
    """Serialize `model` to ONNX.

    Args:
        model: in eval mode, on the CPU.
        sample: an example input (B, 3, H, W); H and W are fixed in the graph, the batch is not.
        opset: ONNX opset (the dynamo exporter uses at least 18).
        exporter: "auto" (TorchScript, then dynamo if that fails), "torchscript" or "dynamo".

    Returns:
        (the ONNX model's bytes, the exporter that made it).

    Raises:
        ExportError: every exporter tried failed. UnknownNameError: an unknown exporter.
    """
    if exporter not in EXPORTER_CHOICES:
        raise unknown_name("ONNX exporter", exporter, EXPORTER_CHOICES)
    names = EXPORTERS.names() if exporter == "auto" else [exporter]
    errors = []
    for n in names:
        try:
            with _quiet(), torch.no_grad():
                return EXPORTERS.get(n)(model, sample, opset), n
        except Exception as e:  # exporters raise many types (UnsupportedOperatorError, torch.export errors, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            errors.append(f"{n}: {type(e).__name__}: {first}")
            log.debug("ONNX exporter %s failed: %s", n, e)
    other = " or --exporter dynamo" if names == ["torchscript"] else ""
    raise ExportError(f"ONNX export failed ({'; '.join(errors)}); try another --opset{other}")


def onnx_logits(data: bytes | str | os.PathLike, x: torch.Tensor) -> np.ndarray:
    """Logits of an ONNX model on a CPU batch, through ONNX Runtime's CPU provider (the parity oracle)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = data if isinstance(data, bytes) else str(data)
    sess = ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
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
        ConfigError: an ONNX model as input, bad batch/atol. ExportError: export failed or parity
            beyond `atol` (nothing is written). OutputExistsError: outputs exist without `force`.
    """
    if not isinstance(cfg, ModelConfig):
        cfg = resolve_config(cfg, **dict(overrides or {}))
    if cfg.backend != "torch":
        raise ConfigError(f"model {cfg.name!r} is already ONNX; export-onnx needs arch and checkpoints")
    if exporter not in EXPORTER_CHOICES:
        raise unknown_name("ONNX exporter", exporter, EXPORTER_CHOICES)
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
        with atomic_outputs([*files, card_file], force=force) as temps:
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


def _metadata(cfg: ModelConfig, fold: int, ckpt_sha: str) -> dict[str, str]:
    """What the ONNX file itself records about its inputs and origin (read with onnx or Netron)."""
    return {
        "ens.version": __version__, "ens.name": cfg.name, "ens.arch": str(cfg.arch), "ens.fold": str(fold),
        "ens.classes": json.dumps(list(cfg.classes)), "ens.img_size": json.dumps(list(cfg.img_size)),
        "ens.mean": json.dumps(list(cfg.mean)), "ens.std": json.dumps(list(cfg.std)),
        "ens.checkpoint_sha256": ckpt_sha,
    }


def _card_text(cfg: ModelConfig, rows: list[dict[str, Any]]) -> str:
    comments = [
        f"ONNX export of {cfg.card_path or cfg.name} (arch {cfg.arch}) by ens {__version__} export-onnx.",
        *(f"fold {r['fold']}: checkpoint sha256 {r['checkpoint_sha256']}, max abs diff vs torch {r['max_abs_diff']:.3g}" for r in rows),
    ]
    values = {
        "name": cfg.name,
        "family": cfg.family,
        "onnx": "fold{fold}.onnx",
        "folds": [r["fold"] for r in rows],
        "classes": list(cfg.classes),
        "img_size": list(cfg.img_size),
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "crop_pct": cfg.crop_pct,
        "interpolation": cfg.interpolation,
        "resize_mode": cfg.resize_mode,
    }
    return format_card(values, comments)
