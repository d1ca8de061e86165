"""Checkpoints to timm models: safe loading, every common layout, strict loads with useful errors.

Layouts read by `load_state_dict`: a plain state dict; a dict nesting it under `state_dict`,
`model`, `model_state_dict` or `net` (EMA weights under `state_dict_ema`, `model_ema` or `ema`);
keys prefixed by DDP's `module.`, torch.compile's `_orig_mod.` or Lightning's `model.`; and
`.safetensors` files. Torch files are read with `weights_only=True` (plus data-only classes such as
argparse.Namespace and numpy arrays, which timm's train.py and many loops save beside the weights)
unless the user trusts them.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from ensemble._io import sha256_file
from ensemble.errors import ConfigError, ModelLoadError, preview
from ensemble.predict.config import ModelConfig

log = logging.getLogger(__name__)

# Where training scripts put the weights, most specific first (timm, Lightning, plain loops).
RAW_KEYS = ("state_dict", "model", "model_state_dict", "net")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema", "ema_state_dict")
# Wrappers whose name prefixes every key; stripped when *all* keys carry one.
WRAPPER_PREFIXES = ("module.", "model.")
COMPILE_SEGMENT = "_orig_mod."  # torch.compile: may sit anywhere in a key (compiled submodule)


def load_state_dict(
    path: str | os.PathLike,
    *,
    ema: bool = False,
    trust: bool = False,
    expected: Collection[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Read a checkpoint's weights on the CPU, whatever its layout.

    Args:
        path: `.safetensors`, or a torch file (`.pth`, `.pt`, `.ckpt`, `.bin`, ...).
        ema: return the EMA weights; an error when the file holds none.
        trust: allow full unpickling (runs code from the file); `weights_only=True` otherwise.
        expected: the model's keys, if known; a wrapper prefix is then also stripped when only
            some keys carry it (e.g. a Lightning module holding `model.*` and `criterion.*`).

    Returns:
        Parameter/buffer name -> tensor, prefixes stripped.

    Raises:
        ModelLoadError: file missing or unreadable, pickled objects without `trust`, no EMA
            weights with `ema`, no tensors found.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such checkpoint file; check the path in the card or --checkpoints")
    if p.suffix == ".safetensors":
        obj: Any = _read_safetensors(p)
    else:
        obj = _read_torch(p, trust=trust)
    sd = _unwrap(obj, p, ema=ema)
    return strip_prefixes(sd, expected=expected)


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{p}: not a readable safetensors file ({_short(e)}); re-save it or check the download") from None


def _data_only_globals() -> list[Any]:
    """Classes that only carry data, allowed under weights_only: timm's train.py saves its argparse
    Namespace, and many loops save numpy metrics or arrays beside the weights."""
    import argparse

    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    dtypes = {type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "?")}
    return [argparse.Namespace, core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def _read_torch(p: Path, *, trust: bool) -> Any:
    try:
        if trust:
            return torch.load(p, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_data_only_globals()):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if trust or found is None:
            detail = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
            why = detail.group(1).strip() if detail else _short(e)
            raise ModelLoadError(f"{p}: not a readable torch checkpoint ({why}); check the file (truncated download?)") from None
        # weights_only refuses anything but tensors and plain containers; say why and how to proceed.
        raise ModelLoadError(
            f"{p}: the checkpoint contains pickled Python objects that could run code when loaded "
            f"(it references {found.group(1)}); if you trust its source, pass --trust-checkpoint "
            "(trust_checkpoint=True) to load it anyway, or re-save only its state_dict / as .safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as e:
        # RuntimeError: not a zip / truncated; AttributeError/ImportError: trusted pickle of a class
        # that no longer exists.
        raise ModelLoadError(f"{p}: not a readable torch checkpoint ({_short(e)}); check the file (truncated download?)") from None


def _short(e: BaseException) -> str:
    """First line of an exception message, trimmed, for a one-line error."""
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, p: Path, *, ema: bool, depth: int = 0) -> dict[str, torch.Tensor]:
    """Find the (EMA) state dict inside a loaded checkpoint object."""
    if isinstance(obj, torch.nn.Module):  # a whole pickled model (trusted load)
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{p}: holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead")
    if ema:
        for k in EMA_KEYS:
            if k in obj and obj[k] is not None:
                return _unwrap(obj[k], p, ema=False, depth=depth + 1)
        raise ModelLoadError(
            f"{p}: no EMA weights (none of the keys {', '.join(EMA_KEYS)}); "
            f"top-level keys: {preview(list(obj)[:50], total=len(obj))}; drop --ema to load the raw weights"
        )
    if _is_state_dict(obj):
        return dict(obj)
    if depth < 2:
        for k in RAW_KEYS:
            if k in obj and isinstance(obj[k], (Mapping, torch.nn.Module)):
                return _unwrap(obj[k], p, ema=False, depth=depth + 1)
    # Mixed dicts (tensors plus a few ints/strings of metadata) still count when most values are tensors.
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) >= len(obj) / 2:
        return tensors
    raise ModelLoadError(
        f"{p}: no weights found (a state dict, or one under {', '.join(RAW_KEYS)}); "
        f"top-level keys: {preview(list(obj), total=len(obj))}"
    )


def strip_prefixes(sd: Mapping[str, torch.Tensor], *, expected: Collection[str] | None = None) -> dict[str, torch.Tensor]:
    """Drop `_orig_mod.` segments and `module.` / `model.` wrapper prefixes from state-dict keys.

    A wrapper prefix is stripped when every key carries it; with `expected` keys given, also when
    the keys carrying it (prefix removed) are exactly the expected ones and the plain keys are not.
    """
    out = {k.replace(COMPILE_SEGMENT, ""): v for k, v in sd.items()}
    changed = True
    while changed:  # e.g. "module.model." from DDP around a Lightning-style wrapper
        changed = False
        for pre in WRAPPER_PREFIXES:
            if out and all(k.startswith(pre) for k in out):
                out = {k[len(pre):]: v for k, v in out.items()}
                changed = True
    if expected is not None and not set(expected) <= set(out):
        want = set(expected)
        for pre in WRAPPER_PREFIXES:
            sub = {k[len(pre):]: v for k, v in out.items() if k.startswith(pre)}
            if sub and set(sub) == want:
                dropped = len(out) - len(sub)
                log.info("using the %d weights under %r; %d other entries ignored", len(sub), pre, dropped)
                return sub
    return out


def create_model(cfg: ModelConfig) -> torch.nn.Module:
    """The timm model of `cfg`, random weights, `num_classes` outputs (never downloads).

    Models with a fixed input size (ViTs: position embeddings) are built at `cfg.img_size`, so a
    checkpoint trained at that size loads.
    """
    import timm

    if cfg.arch is None:
        raise ConfigError(f"model {cfg.name!r} has no timm arch (it is an ONNX model); set arch in the card or --arch")
    if not timm.is_model(cfg.arch):
        raise ConfigError(f"unknown timm architecture {cfg.arch!r}{close_archs(cfg.arch)}; see timm.list_models()")
    kwargs = dict(cfg.model_kwargs)
    pcfg = timm.models.get_pretrained_cfg(cfg.arch)
    if pcfg is not None and pcfg.fixed_input_size and "img_size" not in kwargs:
        if tuple(pcfg.input_size[1:]) != tuple(cfg.img_size):
            kwargs["img_size"] = tuple(cfg.img_size)
    try:
        return timm.create_model(cfg.arch, pretrained=False, num_classes=cfg.num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"timm cannot build {cfg.arch!r} with model_kwargs {kwargs}: {_short(e)}; fix model_kwargs in the card") from None


def close_archs(arch: str) -> str:
    """' (did you mean a, b?)' for a mistyped timm name, or ''."""
    import difflib

    import timm

    close = difflib.get_close_matches(arch.split(".")[0], timm.list_models(), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def load_model(cfg: ModelConfig, fold: int, *, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, str]:
    """Build fold `fold`'s model, load its checkpoint strictly, and put it in eval mode on `device`.

    Returns:
        (model, SHA-256 of the checkpoint file).

    Raises:
        ConfigError: no checkpoint for this fold.
        ModelLoadError: unreadable checkpoint, or keys/shapes that do not fit the model (the
            message lists missing and unexpected keys and a classifier-width disagreement).
    """
    if fold not in cfg.checkpoints:
        have = ", ".join(map(str, sorted(cfg.checkpoints))) or "none"
        raise ConfigError(f"model {cfg.name!r} has no checkpoint for fold {fold} (folds with checkpoints: {have})")
    path = Path(cfg.checkpoints[fold])
    model = create_model(cfg)
    own = model.state_dict()
    sd = load_state_dict(path, ema=cfg.ema, trust=cfg.trust_checkpoint, expected=own.keys())
    for k in own:  # BatchNorm step counters (absent from old or trimmed checkpoints) never change eval outputs
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = own[k]
    check_fits(model, sd, path, cfg)
    model.load_state_dict(sd, strict=True)
    model.eval().to(device)
    return model, sha256_file(path)


def check_fits(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], path: Path, cfg: ModelConfig) -> None:
    """Raise a readable `ModelLoadError` when `sd` does not load strictly into `model`."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    width = _classifier_width(model, sd)
    if width is not None and width != cfg.num_classes:
        parts.append(
            f"its classifier has {width} outputs but num_classes is {cfg.num_classes} "
            f"({len(cfg.classes)} classes in the card); the card's classes must be the ones the model was trained on"
        )
    if missing:
        parts.append(f"missing keys {preview(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {preview(unexpected)}")
    if mismatched:
        shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]
        parts.append(f"shape mismatches (checkpoint vs model) {preview(shapes)}")
    raise ModelLoadError(
        f"{path}: checkpoint does not fit {cfg.arch} with {cfg.num_classes} classes: {'; '.join(parts)}; "
        "check arch, img_size, classes and model_kwargs in the card (and --ema)"
    )


def _classifier_width(model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> int | None:
    """Output width of the checkpoint's classifier, found through timm's `pretrained_cfg['classifier']`."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier")
    if names is None:
        return None
    for name in (names,) if isinstance(names, str) else names:
        for key in (f"{name}.weight", f"{name}.fc.weight"):
            if key in sd and sd[key].ndim >= 1:
                return int(sd[key].shape[0])
    return None
