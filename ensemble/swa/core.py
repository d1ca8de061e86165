"""`swa`: choose checkpoints, average them, optionally refresh BatchNorm, write checkpoint + sidecar."""

from __future__ import annotations

import glob as globlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ensemble import __version__
from ensemble._io import json_default, atomic_outputs, check_writable, sha256_file
from ensemble._progress import Progress
from ensemble.errors import ConfigError
from ensemble.labels import Columns
from ensemble.swa.average import StateDict, average_checkpoints, normalise_weights
from ensemble.swa.bn import BnRefresh, has_batchnorm
from ensemble.swa.select import match_metrics, read_metrics, select_top_n
from ensemble.swa.write import output_paths, save_state_dict

log = logging.getLogger(__name__)

BN_NOTE = (
    "BatchNorm refresh can hurt as well as help: score this model and the one without --bn-data on OOF "
    "(ens predict, then ens oof-report) and keep the better"
)


@dataclass
class Source:
    """One candidate checkpoint.

    Attributes:
        path: the file.
        metric: its value in the metrics file, or None.
        weight: its weight in the average (sums to 1 over the used ones), or None when not selected.
        sha256: hex SHA-256 of the file (used ones only).
    """

    path: Path
    metric: float | None = None
    weight: float | None = None
    sha256: str | None = None

    @property
    def used(self) -> bool:
        return self.weight is not None


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


def gather_checkpoints(
    checkpoints: Sequence[str | os.PathLike] = (), *, glob: str | None = None, fold: int | None = None
) -> list[Path]:
    """The candidate files: `checkpoints` as given, then the sorted matches of `glob`.

    Args:
        checkpoints: explicit files.
        glob: a pattern (`**` allowed), relative to the working directory; `{fold}` is replaced by `fold`.
        fold: the fold number for `{fold}`.

    Raises:
        ConfigError: a missing file, a pattern that matches nothing or needs --fold, a file given twice,
            or no candidates at all.
    """
    paths = [Path(p) for p in checkpoints]
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"{p}: no such checkpoint file; check the path")
    if glob is not None:
        if "{fold}" in glob:
            if fold is None:
                raise ConfigError(f"--glob {glob!r} has {{fold}} but no --fold was given; pass --fold k")
            glob = glob.replace("{fold}", str(fold))
        found = sorted(Path(p) for p in globlib.glob(glob, recursive=True) if Path(p).is_file())
        if not found:
            raise ConfigError(f"--glob {glob!r} matches no files (from {Path.cwd()}); fix the pattern")
        paths += found
    if not paths:
        raise ConfigError("no checkpoints to average; give checkpoint files or --glob PATTERN")
    seen: dict[Path, Path] = {}
    for p in paths:
        if p.resolve() in seen:
            raise ConfigError(f"{p} is given twice (also as {seen[p.resolve()]}); give each checkpoint once")
        seen[p.resolve()] = p
    return paths


def swa(
    checkpoints: Sequence[str | os.PathLike] = (),
    *,
    out: str | os.PathLike,
    card: str | os.PathLike | None = None,
    fold: int | None = None,
    glob: str | None = None,
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
    metrics: str | os.PathLike | None = None,
    metric: str | None = None,
    mode: str | None = None,
    ema: bool = False,
    trust: bool = False,
    bn_data: str | os.PathLike | None = None,
    bn_batches: int = 100,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
    columns: Columns = Columns(),
    root: str | os.PathLike | None = None,
    seed: int = 42,
    force: bool = False,
    progress: Progress | None = None,
) -> SwaResult:
    """Average checkpoints of one model into one checkpoint (`ens swa`).

    Args:
        checkpoints: checkpoint files (any layout `ens predict` reads).
        out: the output; its suffix picks the format (`.safetensors`, or `.pth`/`.pt`, a plain state
            dict loadable with weights_only=True). A sidecar `out` with `.json` records the inputs.
        card: model card; needed for `bn_data`; also checks the average loads strictly into its arch.
        fold: the fold: fills `{fold}` in `glob`, and its rows are left out of the BatchNorm refresh.
        glob: pattern of further checkpoint files, e.g. "runs/fold{fold}/epoch*.pth".
        weights: one weight per checkpoint (uniform when None); not with `top_n`.
        top_n: keep the best `top_n` checkpoints by `metrics`; needs `metrics` and `mode`.
        metrics: metrics file (see `ensemble.swa.select`).
        metric: its CSV column.
        mode: "max" when higher is better, "min" when lower is; required with `top_n`.
        ema: average the EMA weights of each checkpoint.
        trust: allow unpickling arbitrary objects (runs code from the files).
        bn_data: data CSV to refresh BatchNorm statistics on (needs `card`).
        bn_batches: the most batches for the refresh.
        batch_size: images per refresh batch.
        workers: DataLoader workers for the refresh.
        device: "auto", "cpu", "cuda" or "cuda:N" for the refresh.
        columns: column names of `bn_data`.
        root: folder the image paths of `bn_data` are relative to.
        seed: seed of the refresh's row sample.
        force: overwrite `out` and its sidecar.
        progress: hook for long steps.

    Returns:
        The written files and every candidate with its metric, weight and hash.

    Raises:
        ConfigError: invalid options or inputs (checked before any checkpoint is read).
        ModelLoadError: unreadable or mismatching checkpoints.
        OutputExistsError: `out` or its sidecar exists and not `force`.
    """
    out_path, sidecar = output_paths(out)
    check_writable([out_path, sidecar], force=force)
    _check_options(top_n=top_n, metrics=metrics, mode=mode, weights=weights, bn_data=bn_data, card=card)
    cands = gather_checkpoints(checkpoints, glob=glob, fold=fold)
    if out_path.resolve() in {c.resolve() for c in cands}:
        raise ConfigError(f"--out {out_path} is one of the checkpoints being averaged; choose another output")
    cfg = None
    if card is not None:
        from ensemble.predict.card import load_card, resolve_config

        raw = load_card(card)
        if "onnx" in raw and "arch" not in raw:
            raise ConfigError(f"{card} is an ONNX model card; ens swa averages torch checkpoints: give the card of the timm model")
        # Only the card's model (arch, classes, preprocessing) is wanted; its own checkpoints may not
        # exist yet (e.g. a card for the SWA outputs), so point them at a candidate.
        k = 0 if fold is None else fold
        cfg = resolve_config(card, checkpoints={k: str(cands[0])}, folds=[k])
        ema, trust = ema or cfg.ema, trust or cfg.trust_checkpoint

    sources = [Source(c) for c in cands]
    metric_name = None
    if metrics is not None:
        metric_name, values = read_metrics(metrics, metric=metric)
        for s, m in zip(sources, match_metrics(cands, values, metrics)):
            s.metric = m
    if top_n is not None:
        order = select_top_n(cands, [s.metric for s in sources], top_n=top_n, mode=mode, metrics_path=str(metrics))
    else:
        order = list(range(len(cands)))
    used = [sources[i] for i in order]
    for s, w in zip(used, normalise_weights(weights, len(used))):
        s.weight = w
    sources = used + [s for s in sources if not s.used]
    if len(used) == 1:
        log.warning("only one checkpoint (%s) is used: the output is a copy of it", used[0].path)

    model = None
    if cfg is not None:
        from ensemble.predict.checkpoint import create_model

        model = create_model(cfg)
        if bn_data is not None and not has_batchnorm(model):
            raise ConfigError(f"{cfg.arch} has no BatchNorm layers, so there is nothing to refresh; drop --bn-data")
    avg = average_checkpoints(
        [s.path for s in used], weights=[s.weight for s in used], ema=ema, trust=trust, progress=progress,
        expected=None if model is None else list(model.state_dict()),
    )
    bn: BnRefresh | None = None
    if model is not None:
        from ensemble.predict.checkpoint import check_fits

        # the check `ens predict` makes: fail here, not when the output is first used
        check_fits(model, avg, used[0].path, cfg)
        model.load_state_dict(avg, strict=True)
        if bn_data is not None:
            avg, bn = _refresh(
                model, avg, cfg, bn_data, fold=fold, bn_batches=bn_batches, batch_size=batch_size,
                workers=workers, device=device, columns=columns, root=root, seed=seed, progress=progress,
            )
    for s in used:
        s.sha256 = sha256_file(s.path)

    meta: dict[str, Any] = {
        "tool": "ens swa",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": out_path.suffix.lstrip("."),
        "ema": ema,
        "card": str(card) if card is not None else None,
        "arch": cfg.arch if cfg is not None else None,
        "fold": fold,
        "selection": {"top_n": top_n, "mode": mode, "metrics": str(metrics) if metrics else None, "metric": metric_name},
        "integer_tensors": "0-dim counters (num_batches_tracked): max over sources; others: equal in all sources",
        "sources": [{"path": str(s.path), "sha256": s.sha256, "weight": s.weight, "metric": s.metric} for s in used],
        "not_selected": [{"path": str(s.path), "metric": s.metric} for s in sources if not s.used],
        "bn_refresh": asdict(bn) if bn is not None else None,
    }
    with atomic_outputs([sidecar, out_path], force=force) as (tmp_json, tmp_ckpt):
        save_state_dict(avg, tmp_ckpt, out_path.suffix)
        meta["sha256"] = sha256_file(tmp_ckpt)
        tmp_json.write_text(json.dumps(meta, indent=2, default=json_default) + "\n", encoding="utf-8")
    return SwaResult(out_path, sidecar, meta["sha256"], sources, meta)


def _check_options(
    *, top_n: int | None, metrics: object, mode: str | None, weights: object, bn_data: object, card: object
) -> None:
    """Combinations of options that cannot work, refused before anything is read."""
    if top_n is not None:
        if metrics is None or mode is None:
            raise ConfigError("--top-n needs --metrics FILE and --mode max|min (max when higher is better, e.g. F1)")
        if weights is not None:
            raise ConfigError("--weights with --top-n is ambiguous; use one or the other")
    elif mode is not None:
        raise ConfigError("--mode says which end of --metrics --top-n keeps; pass --top-n N too")
    if bn_data is not None and card is None:
        raise ConfigError("--bn-data needs --card CARD with an arch (the model to run and its preprocessing)")


def _refresh(
    model: torch.nn.Module, avg: StateDict, cfg: Any, bn_data: str | os.PathLike, *, fold: int | None,
    bn_batches: int, batch_size: int, workers: int, device: str, columns: Columns,
    root: str | os.PathLike | None, seed: int, progress: Progress | None,
) -> tuple[StateDict, BnRefresh]:
    """Refresh `model`'s BatchNorm statistics on `bn_data`; returns the new state dict in `avg`'s dtypes."""
    from ensemble.predict.runners import resolve_device
    from ensemble.swa.bn import data_batches, refresh_bn

    dev = resolve_device(device)
    batches, info = data_batches(
        cfg, bn_data, fold=fold, n_batches=bn_batches, batch_size=batch_size, workers=workers, device=dev,
        seed=seed, columns=columns, root=root, progress=progress,
    )
    refresh_bn(model, batches, device=dev)
    fresh = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {k: fresh[k].to(t.dtype) for k, t in avg.items()}, info
