"""The first step of `swa`: the candidate checkpoints, the model they must fit, and which are used."""

from __future__ import annotations

import glob as globlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble.errors import ConfigError
from ensemble.swa.average import normalise_weights
from ensemble.swa.options import SwaOptions
from ensemble.swa.select import match_metrics, read_metrics, select_top_n
from ensemble.swa.write import output_paths

if TYPE_CHECKING:  # torch and the model side load when a card is given
    from ensemble.predict.config import ModelConfig

log = logging.getLogger(__name__)

FOLD = "{fold}"  # the placeholder of a fold number in --glob and --out


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
class SwaPlan:
    """What `swa` will do, decided before any weight is read.

    Attributes:
        out: the averaged checkpoint to write.
        sidecar: its JSON record.
        sources: every candidate, used ones first in selection order (best first with top-N).
        cfg: the card's resolved model, or None without a card.
        ema: average the EMA weights (asked for, or set in the card).
        trust: allow pickled objects (asked for, or set on the card's config).
        metric_name: the metric the candidates were ranked or recorded by, or None.
    """

    out: Path
    sidecar: Path
    sources: list[Source]
    cfg: ModelConfig | None
    ema: bool
    trust: bool
    metric_name: str | None

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
        if FOLD in glob:
            if fold is None:
                raise ConfigError(
                    f"--glob {glob!r} has {{fold}} but no --fold was given; pass --fold k, or an --out with {{fold}} "
                    "to average every fold"
                )
            glob = glob.replace(FOLD, str(fold))
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


def glob_folds(glob: str) -> list[int]:
    """The folds a `{fold}` pattern has files for: each k for which `glob` with k in place of `{fold}`
    matches a file, ascending (a fold is written as `ensemble` writes it: 0, 1, ..., 10, never 01).

    Raises:
        ConfigError: no file matches with a fold number in place of `{fold}`.
    """
    head, *rest = glob.split(FOLD)
    # the first {fold} captures the number; later ones must repeat it
    regex = _glob_regex(head) + r"(?P<fold>0|[1-9][0-9]*)" + r"(?P=fold)".join(_glob_regex(p) for p in rest)
    found = {m["fold"] for p in globlib.glob(glob.replace(FOLD, "*"), recursive=True)
             if (m := re.fullmatch(regex, p)) and Path(p).is_file()}
    if not found:
        raise ConfigError(
            f"--glob {glob!r} matches no files with a fold number in place of {{fold}} (from {Path.cwd()}); fix the pattern"
        )
    return sorted(int(k) for k in found)


def _glob_regex(pattern: str) -> str:
    """The regular expression of a `glob.glob` pattern (`**` spans folders, `*` and `?` stay in one)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append(r"(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(r".*")
            i += 2
            continue
        end = pattern.find("]", i + 2) if c == "[" else -1
        if end > 0:  # a character class; glob's [!...] is regex's [^...]
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        out.append({"*": r"[^/]*", "?": r"[^/]"}.get(c, re.escape(c)))
        i += 1
    return "".join(out)


def fold_options(checkpoints: Sequence[str | os.PathLike], options: SwaOptions) -> list[SwaOptions]:
    """One `SwaOptions` per output: `options` itself, or one per fold when `out` holds `{fold}`.

    With `{fold}` in `out` and no `fold`, every fold `glob`'s `{fold}` has files for is averaged
    (`glob_folds`), each into `out` with its number: K folds in one command, one `import torch`.

    Raises:
        ConfigError: `{fold}` in `out` without a `{fold}` glob or `fold`, or with checkpoint files given.
    """
    out = str(options.out)
    if FOLD not in out:
        return [options]
    if options.fold is not None:
        return [replace(options, out=Path(out.replace(FOLD, str(options.fold))))]
    if options.glob is None or FOLD not in options.glob:
        raise ConfigError(
            f"--out {out!r} has {{fold}} but neither --fold nor a --glob with {{fold}} says which folds; "
            "give --glob 'runs/fold{fold}/*.pth' to average every fold, or --fold k"
        )
    if checkpoints:
        raise ConfigError(
            f"--out {out!r} averages every fold of --glob, so checkpoint files ({Path(checkpoints[0])}, ...) have no "
            "fold; give them by --glob alone, or --fold k for one fold"
        )
    return [replace(options, out=Path(out.replace(FOLD, str(k))), fold=k) for k in glob_folds(options.glob)]


def plan_swa(checkpoints: Sequence[str | os.PathLike], options: SwaOptions) -> SwaPlan:
    """Check the options and outputs, gather and select the checkpoints, resolve the card's model.

    Raises:
        ConfigError: invalid options or inputs. OutputError / OutputExistsError: an output that
            cannot be written, or exists and not `force`.
    """
    from ensemble._io import check_writable

    out, sidecar = output_paths(options.out)
    check_writable([out, sidecar], force=options.force)
    options.check()
    cands = gather_checkpoints(checkpoints, glob=options.glob, fold=options.fold)
    if out.resolve() in {c.resolve() for c in cands}:
        raise ConfigError(f"--out {out} is one of the checkpoints being averaged; choose another output")
    cfg = _card_model(options, cands[0]) if options.card is not None else None
    sources = [Source(c) for c in cands]
    metric_name = None
    if options.metrics is not None:
        metric_name, values = read_metrics(options.metrics, metric=options.metric)
        for s, m in zip(sources, match_metrics(cands, values, options.metrics)):
            s.metric = m
    if options.top_n is not None:
        order = select_top_n(cands, [s.metric for s in sources], top_n=options.top_n, mode=options.mode,
                             metrics_path=str(options.metrics))
    else:
        order = list(range(len(cands)))
    used = [sources[i] for i in order]
    for s, w in zip(used, normalise_weights(options.weights, len(used))):
        s.weight = w
    if len(used) == 1:
        log.warning("only one checkpoint (%s) is used: the output is a copy of it", used[0].path)
    ema = options.ema or (cfg is not None and cfg.ema)
    trust = options.trust or (cfg is not None and cfg.trust_checkpoint)
    return SwaPlan(out, sidecar, used + [s for s in sources if not s.used], cfg, ema, trust, metric_name)


def _card_model(options: SwaOptions, first: Path) -> ModelConfig:
    """The card's model (arch, classes, preprocessing), its weights pointed at a candidate."""
    from ensemble.predict.card import load_card, resolve_config

    raw = load_card(options.card)
    if "onnx" in raw and "arch" not in raw:
        raise ConfigError(f"{options.card} is an ONNX model card; ens swa averages torch checkpoints: give the card of the timm model")
    # The card's own checkpoints may not exist yet (e.g. a card for the SWA outputs)
    k = 0 if options.fold is None else options.fold
    return resolve_config(options.card, checkpoints={k: str(first)}, folds=[k])
