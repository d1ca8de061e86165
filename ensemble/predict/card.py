"""Model cards (`models/<name>.toml`) and the one function that resolves a model's configuration.

Precedence, in `resolve_config` only: flags > card > the model's own config (timm's
`pretrained_cfg` for an arch, never downloaded; the input/output shape of an ONNX file and the task
its metadata records) > defaults. A task given by a flag or the card that disagrees with the ONNX
file's recorded task is an error naming the file (a softmax model read as sigmoid, or the reverse).
Card paths (checkpoints, onnx, classes_file) are relative to the card; flag paths to the working
directory. Weights are given as a list (index = fold), a table fold -> file, one file (fold 0), or a
pattern with `{fold}` that expands to the files that exist (or to `folds`).

Example card::

    name = "effnet_b0_s1"
    family = "effnet_b0"
    arch = "efficientnet_b0"
    classes = ["cat", "dog", "fox"]      # or classes_file = "classes.txt", or num_classes = 3
    img_size = 384                       # or [h, w]
    crop_pct = 1.0
    checkpoints = "ckpt/fold{fold}/best.pth"
    task = "multiclass"                  # or "multilabel": a sigmoid per class (default multiclass)
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from glob import escape, glob
from pathlib import Path
from typing import Any

from ensemble.errors import ConfigError, preview
from ensemble.predict._card_fields import FIELDS, FLAGS, INTERPOLATIONS, RESIZE_MODES, classes_check
from ensemble.predict.config import ONNX_TASK_KEY, ModelConfig, check_onnx_task
from ensemble.task import MULTICLASS

__all__ = ["DEFAULTS", "FIELDS", "INTERPOLATIONS", "RESIZE_MODES", "format_card", "load_card", "resolve_config"]

# timm's crop_mode -> ours ("border" has no equivalent; it falls back to a center crop)
_TIMM_CROP_MODES = {"center": "crop", "squash": "squash", "border": "crop"}
DEFAULTS: dict[str, Any] = {
    "img_size": (224, 224),
    "mean": (0.485, 0.456, 0.406),  # ImageNet, as timm's IMAGENET_DEFAULT_MEAN
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 1.0,
    "interpolation": "bilinear",
    "resize_mode": "crop",
}


def load_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read a model card: TOML with known keys only. Paths stay as written (relative to the card).

    Raises:
        ConfigError: missing file, invalid TOML, unknown keys (the valid ones are listed).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such model card; give the path of a .toml card (see models/)")
    try:
        data = tomllib.loads(_utf8_text(p, "model card"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML ({e}); fix the card's syntax") from None
    if "trust_checkpoint" in data:
        # A card may come from anywhere; running pickled code must be the user's explicit choice.
        raise ConfigError(f"{p}: trust_checkpoint cannot be set in a card; pass --trust-checkpoint on the command line")
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise ConfigError(f"{p}: unknown keys {preview(unknown)}; valid keys: {', '.join(FIELDS)}")
    return data


class _Layer:
    """One source of values: the flags or a card, with the folder its relative paths start from."""

    def __init__(self, label: str, base: Path, raw: Mapping[str, Any], where: Callable[[str], str]) -> None:
        self.label, self.base, self.where = label, base, where
        self.values = {k: FIELDS[k](v, where(k)) for k, v in raw.items() if v is not None}


def resolve_config(card: str | os.PathLike | None = None, **flags: Any) -> ModelConfig:
    """Resolve one model's configuration: flags > card > the model's own config > defaults.

    Args:
        card: a model card (TOML), or None to use flags only.
        **flags: card fields given on the command line (None = not given): name, family, arch,
            onnx, checkpoints, folds, classes, classes_file, num_classes, img_size, mean, std,
            crop_pct, interpolation, resize_mode, ema, model_kwargs, task, and trust_checkpoint (a
            flag only). Lists may be given as comma-separated strings; ema=False counts as not given.

    Returns:
        The resolved `ModelConfig`; weight files are checked to exist.

    Raises:
        ConfigError: unknown card keys, bad values, neither arch nor onnx, no classes,
            num_classes disagreeing with classes, missing weight files, a task the ONNX file's
            metadata contradicts.
    """
    unknown = [k for k in flags if k not in FLAGS]
    if unknown:
        raise TypeError(f"resolve_config() got unknown flags {unknown}; valid: {', '.join(FLAGS)}")
    trust = bool(flags.pop("trust_checkpoint", None))
    if flags.get("ema") is False:  # a CLI switch left off means "not given": the card's ema stands
        flags["ema"] = None
    layers = [_Layer("flags", Path("."), flags, lambda k: f"--{k.replace('_', '-')}")]
    card_path = None
    if card is not None:
        card_path = Path(card)
        layers.append(_Layer(str(card_path), card_path.parent, load_card(card_path), lambda k: f"{card_path}: {k}"))
    src = layers[-1].label  # the card when there is one, for messages about what is missing

    def get(key: str) -> tuple[Any, _Layer | None]:
        for layer in layers:
            if key in layer.values:
                return layer.values[key], layer
        return None, None

    # -- backend: the higher-precedence of onnx / checkpoints wins; both in one source is ambiguous
    (onnx_spec, onnx_l), (ck_spec, ck_l) = get("onnx"), get("checkpoints")
    if onnx_l is not None and onnx_l is ck_l:
        raise ConfigError(f"{onnx_l.label}: both onnx and checkpoints are given; give one (onnx files run in ONNX Runtime, checkpoints in timm)")
    use_onnx = onnx_l is not None and (ck_l is None or layers.index(onnx_l) < layers.index(ck_l))
    arch, _ = get("arch")
    folds, _ = get("folds")
    if use_onnx:
        weights = _expand(onnx_spec, onnx_l, folds, "onnx")
    else:
        if arch is None:
            raise ConfigError(f"{src}: neither arch nor onnx is given; set arch (a timm model name) and checkpoints, or onnx files")
        if ck_l is None:
            raise ConfigError(f"{src}: arch {arch!r} has no checkpoints; set checkpoints (a list, or a pattern with {{fold}})")
        weights = _expand(ck_spec, ck_l, folds, "checkpoints")

    # -- the model's own config: timm's pretrained_cfg, or the ONNX file's shapes
    own: dict[str, Any] = _timm_defaults(arch, get("arch")[1]) if arch is not None else {}
    onnx_size, onnx_classes, onnx_task = _onnx_info(weights[min(weights)]) if use_onnx else (None, None, None)
    if onnx_size is not None:
        own["img_size"] = onnx_size

    def value(key: str) -> Any:
        v, _ = get(key)
        return v if v is not None else own.get(key, DEFAULTS.get(key))

    classes = _resolve_classes(get, onnx_classes, src)
    img_size = value("img_size")
    if onnx_size is not None and tuple(img_size) != onnx_size:
        raise ConfigError(
            f"{weights[min(weights)]}: the ONNX model takes {onnx_size[0]}x{onnx_size[1]} images but img_size is "
            f"{img_size[0]}x{img_size[1]}; set img_size = [{onnx_size[0]}, {onnx_size[1]}] or re-export at that size"
        )
    task, task_l = get("task")
    if onnx_task is not None:  # the file's own task fills in for a silent card, and must agree with a given one
        task = check_onnx_task(weights[min(weights)], onnx_task, task or onnx_task, task_l.where("task") if task_l else "the task")
    name, _ = get("name")
    if name is None:
        name = card_path.stem if card_path is not None else (arch or _onnx_name(onnx_spec))
    family, _ = get("family")
    return ModelConfig(
        name=name,
        family=family or name,
        classes=classes,
        img_size=tuple(img_size),
        mean=tuple(value("mean")),
        std=tuple(value("std")),
        crop_pct=float(value("crop_pct")),
        interpolation=value("interpolation"),
        resize_mode=value("resize_mode"),
        arch=None if use_onnx else arch,
        checkpoints={} if use_onnx else weights,
        onnx=weights if use_onnx else {},
        ema=bool(get("ema")[0]),
        trust_checkpoint=trust,
        card_path=card_path,
        model_kwargs=get("model_kwargs")[0] or {},
        task=task or MULTICLASS,
    )


def _expand(spec: Any, layer: _Layer, folds: tuple[int, ...] | None, key: str) -> dict[int, Path]:
    """Weights spec -> fold -> existing file; every missing file named."""
    where, base = layer.where(key), layer.base

    def path(s: str) -> Path:
        return base / os.path.expanduser(s)

    if isinstance(spec, str) and "{fold}" in spec:
        pattern = str(path(spec))
        if folds is not None:
            files = {f: Path(pattern.replace("{fold}", str(f))) for f in folds}
        else:
            parts = pattern.split("{fold}")
            rx = re.compile(re.escape(parts[0]) + r"(?P<fold>\d+)" + r"(?P=fold)".join(re.escape(p) for p in parts[1:]))
            files = {}
            for hit in sorted(glob("*".join(escape(p) for p in parts))):
                m = rx.fullmatch(hit)
                if m:
                    files[int(m["fold"])] = Path(hit)
            if not files:
                raise ConfigError(f"{where}: no file matches {pattern!r}; check the pattern ({{fold}} stands for the fold number) and the folder")
    else:
        if isinstance(spec, str):
            files = {0: path(spec)}  # one model trained on everything: fold 0
        elif isinstance(spec, list):
            files = {i: path(s) for i, s in enumerate(spec)}
        else:
            files = {int(k): path(s) for k, s in spec.items()}
        if folds is not None:
            absent = [f for f in folds if f not in files]
            if absent:
                raise ConfigError(f"{where}: no file for folds {preview(absent)} (files given for folds {preview(sorted(files))}); fix folds or the list")
            files = {f: files[f] for f in folds}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        rel = " (paths are relative to the card)" if layer.label != "flags" else ""
        noun = "checkpoint" if key == "checkpoints" else "ONNX"
        n = len(missing)
        raise ConfigError(f"{where}: {n} {noun} file{'s' if n > 1 else ''} missing: {preview(missing)}{rel}; fix the paths or choose folds")
    return dict(sorted(files.items()))


def _timm_defaults(arch: str, layer: _Layer | None) -> dict[str, Any]:
    """Preprocessing from timm's pretrained_cfg of `arch` (a registry lookup, nothing downloaded)."""
    import timm

    if not timm.is_model(arch):
        from ensemble.predict.checkpoint import close_archs

        where = layer.where("arch") if layer is not None else "arch"
        raise ConfigError(f"{where}: unknown timm architecture {arch!r}{close_archs(arch)}; see timm.list_models()")
    pc = timm.models.get_pretrained_cfg(arch)
    if pc is None:
        return {}
    out: dict[str, Any] = {}
    if pc.mean and pc.std and len(pc.mean) == 3:
        out["mean"], out["std"] = tuple(pc.mean), tuple(pc.std)
    if pc.crop_pct:
        out["crop_pct"] = min(float(pc.crop_pct), 1.0)
    if pc.input_size:
        out["img_size"] = tuple(int(s) for s in pc.input_size[-2:])
    if pc.interpolation in INTERPOLATIONS:
        out["interpolation"] = pc.interpolation
    out["resize_mode"] = _TIMM_CROP_MODES.get(pc.crop_mode, "crop")
    return out


def _onnx_info(path: Path) -> tuple[tuple[int, int] | None, int | None, str | None]:
    """(H, W) when the ONNX input is fixed-size, the output width, and the task its metadata records."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        graph = model.graph
    except Exception as e:  # onnx raises DecodeError, ValueError, ... for a bad file
        raise ConfigError(f"{path}: not a readable ONNX model ({type(e).__name__}); re-export it (ens export-onnx)") from None

    def dims(value_info: Any) -> list[int | None]:
        return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]

    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    shape = dims(inputs[0]) if inputs else []
    size = (shape[2], shape[3]) if len(shape) == 4 and shape[2] and shape[3] else None
    out = dims(graph.output[0]) if graph.output else []
    task = next((p.value for p in model.metadata_props if p.key == ONNX_TASK_KEY), None)
    return size, (out[-1] if len(out) == 2 else None), task


def _resolve_classes(get: Callable[[str], tuple[Any, _Layer | None]], onnx_classes: int | None, src: str) -> tuple[str, ...]:
    (names, names_l), (file, file_l) = get("classes"), get("classes_file")
    if names_l is not None and names_l is file_l:
        raise ConfigError(f"{names_l.label}: both classes and classes_file are given; give one")
    if file_l is not None and (names_l is None or file_l.label == "flags"):  # the higher source wins
        names = _read_classes_file(file_l.base / os.path.expanduser(file), file_l.where("classes_file"))
    n, n_l = get("num_classes")
    if names is not None:
        if n is not None and n != len(names):
            raise ConfigError(f"{n_l.where('num_classes')} is {n} but {len(names)} classes are listed; make them agree (or drop num_classes)")
    else:
        n = n if n is not None else onnx_classes
        if n is None:
            raise ConfigError(f"{src}: no classes; set classes = [...] (in index order) or classes_file, or num_classes for classes named 0..C-1")
        names = tuple(str(i) for i in range(n))
    if onnx_classes is not None and onnx_classes != len(names):
        raise ConfigError(f"{src}: the ONNX model has {onnx_classes} outputs but {len(names)} classes are given; use the classes it was trained on")
    return names


def _read_classes_file(path: Path, where: str) -> tuple[str, ...]:
    if not path.is_file():
        raise ConfigError(f"{where}: no such file {str(path)!r}; give a text file with one class name per line")
    names = [s.strip() for s in _utf8_text(path, "classes file").splitlines() if s.strip()]
    return classes_check(names, f"{path}")


def _utf8_text(path: Path, what: str) -> str:
    """A text file that must be UTF-8 (TOML is); anything else is one ConfigError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: the {what} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def _onnx_name(spec: Any) -> str:
    first = spec if isinstance(spec, str) else (spec[0] if isinstance(spec, list) else spec[min(spec)])
    p = Path(first)
    return p.parent.name if "{fold}" in p.name and p.parent.name not in ("", ".") else p.stem.replace("{fold}", "")


def format_card(values: Mapping[str, Any], comments: list[str] | tuple[str, ...] = ()) -> str:
    """Write card values as TOML (strings, numbers, booleans, lists and one-level tables).

    Args:
        values: card keys -> values, written in the order given.
        comments: lines written first, as TOML comments.
    """
    lines = [f"# {c}" for c in comments]
    tables = []
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml(v)}")
    for k, t in tables:
        lines += ["", f"[{k}]", *(f"{_toml(str(kk))} = {_toml(vv)}" for kk, vv in t.items())]
    return "\n".join(lines) + "\n"


def _toml(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(os.fspath(v) if isinstance(v, os.PathLike) else str(v))  # a TOML basic string
