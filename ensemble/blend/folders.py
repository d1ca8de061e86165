"""`blend_folders`: what `ens blend` does — read prediction folders, blend (or re-apply), write."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ensemble._io import check_writable
from ensemble._progress import Progress
from ensemble.blend.core import BlendResult, blend
from ensemble.blend.recipe import apply_recipe, write_blend
from ensemble.errors import ConfigError, TableError, preview
from ensemble.labels import Columns, read_labels
from ensemble.ledger import record_submission
from ensemble.ledger._db import connect
from ensemble.submission import SubmissionFormat
from ensemble.tables import PredTable, read_table, resolve_table_path


def read_members(pred_dirs: Sequence[str | os.PathLike]) -> tuple[list[PredTable], list[PredTable] | None]:
    """Each folder's oof.csv, and its test.csv when every folder has one.

    Raises:
        TableError: a folder lacks oof.csv, or some folders have test.csv and others not (named).
    """
    if not pred_dirs:
        raise ConfigError("no prediction folders given; pass the folders holding oof.csv and test.csv")
    oofs = [read_table(d, kind="oof") for d in pred_dirs]
    test_paths = [Path(t.path).with_name("test.csv") for t in oofs]
    missing = [f"{t.name} ({p})" for t, p in zip(oofs, test_paths) if not p.is_file()]
    if len(missing) == len(oofs):
        return oofs, None
    if missing:
        raise TableError(
            f"test table missing for member(s) {preview(missing)}; run `ens predict --split test` for them "
            "or leave those members out — every member of a blend needs test.csv beside oof.csv"
        )
    return oofs, [read_table(resolve_table_path(p, "test"), kind="test") for p in test_paths]


def blend_folders(
    pred_dirs: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    method: str | None = None,
    recipe: str | os.PathLike | None = None,
    columns: Columns = Columns(),
    submission: str | os.PathLike | None = None,
    fmt: SubmissionFormat = SubmissionFormat(),
    force: bool = False,
    strict: bool = False,
    ledger: str | os.PathLike | None = None,
    record: bool = True,
    note: str = "",
    progress: Progress | None = None,
    **options: Any,
) -> tuple[BlendResult, dict[str, Path]]:
    """Blend prediction folders (or re-apply `recipe` to them) and write the blend folder.

    Args:
        pred_dirs: folders holding oof.csv (and test.csv).
        out: the blend folder to write (blends/NAME); NAME names the blend.
        labels: labels CSV (required to fit; optional with `recipe`, where it re-scores the OOF blend).
        method: a METHODS key (required unless `recipe`).
        recipe: re-apply this recipe.json instead of fitting.
        columns: the labels CSV's column names.
        submission: also write the competition CSV here.
        fmt: the submission format.
        force: overwrite existing outputs.
        strict: with `recipe`, refuse members whose table hash differs from the recipe's.
        ledger: the submission ledger (default `.ens/ledger.db`) that records `submission`.
        record: record the submission in the ledger (identical earlier predictions are warned about).
        note: the ledger entry's note.
        progress: progress hook.
        **options: passed to `blend` (weights, top, seed_average, tune_bias, rounds, seed, nested, all_classes).

    Returns:
        The result and the written paths.
    """
    out = Path(out)
    # refuse an existing output before spending time on the fit
    check_writable([out / "recipe.json", *([submission] if submission is not None else [])], force=force)
    recording = submission is not None and record
    if recording:
        with connect(ledger, create=True):
            pass  # a foreign or corrupt ledger fails here, before anything is fitted or written
    oofs, tests = read_members(pred_dirs)
    if submission is not None and tests is None:
        raise ConfigError("--submission needs test tables: put test.csv beside each member's oof.csv")
    if recipe is not None:
        if method is not None or any(v not in (None, False) for k, v in options.items() if k in ("weights", "top", "tune_bias", "seed_average")):
            raise ConfigError("--recipe replays a fitted blend; drop --method/--weights/--top/--tune-bias/--seed-average")
        lab = read_labels(labels, columns=columns, classes=oofs[0].classes) if labels is not None else None
        result = apply_recipe(recipe, oofs, tests, labels=lab, strict=strict, name=out.name)
    else:
        if method is None:
            raise ConfigError("no --method given; choose one, or pass --recipe to re-apply a blend")
        if labels is None:
            raise ConfigError("no --labels given; blending needs the labels CSV (id, label, fold)")
        lab = read_labels(labels, columns=columns, classes=oofs[0].classes)
        result = blend(oofs, lab, method=method, test_tables=tests, name=out.name, progress=progress, **options)
    paths = write_blend(result, out, submission=submission, fmt=fmt, force=force)
    if recording:
        result.ledger_entry = record_submission(
            paths["submission"], ledger=ledger, fmt=fmt, recipe_path=paths["recipe"], note=note
        )
    return result, paths
