"""`blend_folders`: what `ens blend` does — read prediction folders, blend (or re-apply), write, record."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble._io import check_writable
from ensemble._progress import Progress
from ensemble.blend.apply import apply_recipe
from ensemble.blend.assemble import BlendResult
from ensemble.blend.core import BlendOptions, blend, with_tests
from ensemble.blend.write import blend_outputs, write_blend
from ensemble.errors import ConfigError, TableError, preview
from ensemble.labels import Columns, read_labels
from ensemble.memory import release_freed_memory
from ensemble.submission import SubmissionFormat
from ensemble.tables import TABLE_FORMATS, PredTable, hash_in_background, read_tables, resolve_table_path
from ensemble.task import common_task


@dataclass(frozen=True)
class WrittenBlend:
    """One blend folder written by `blend_folders`: the result, its files, and its ledger entry (if recorded)."""

    result: BlendResult
    paths: dict[str, Path]
    ledger_entry: Any = None


def read_members(
    pred_dirs: Sequence[str | os.PathLike], progress: Progress | None = None
) -> tuple[list[PredTable], list[PredTable] | None]:
    """Each folder's oof.csv, and its test.csv when every folder has one (many large tables: a progress bar).

    Each kind is read into one stack of the members (`read_tables(..., stack=True)`).

    Raises:
        TableError: a folder lacks oof.csv, or some folders have test.csv and others not (named).
    """
    oofs = read_oofs(pred_dirs, progress)
    paths = test_paths(oofs)
    return oofs, None if paths is None else read_tests(paths, progress)


def read_oofs(pred_dirs: Sequence[str | os.PathLike], progress: Progress | None = None) -> list[PredTable]:
    """Each folder's oof table, read into one stack of the members.

    Raises:
        ConfigError: no folders.
        TableError: a folder lacks oof.csv.
    """
    if not pred_dirs:
        raise ConfigError("no prediction folders given; pass the folders holding oof.csv and test.csv")
    return read_tables(pred_dirs, kind="oof", progress=progress, stack=True)


def read_tests(paths: Sequence[Path], progress: Progress | None = None) -> list[PredTable]:
    """The members' test tables (`test_paths`), read into one stack."""
    return read_tables(paths, kind="test", progress=progress, stack=True)


def test_paths(oofs: Sequence[PredTable]) -> list[Path] | None:
    """The test table beside each member's oof table, or None when no member has one.

    Raises:
        TableError: some folders have test.csv and others not (named).
    """
    folders = [Path(t.path).parent for t in oofs]
    has_test = [any((f / f"test{suffix}").is_file() for suffix in TABLE_FORMATS.values()) for f in folders]
    missing = [f"{t.name} ({f / 'test.csv'})" for t, f, h in zip(oofs, folders, has_test) if not h]
    if len(missing) == len(oofs):
        return None
    if missing:
        raise TableError(
            f"test table missing for member(s) {preview(missing)}; run `ens predict --split test` for them "
            "or leave those members out — every member of a blend needs test.csv (or .parquet) beside oof.csv"
        )
    return [resolve_table_path(f, "test") for f in folders]


def blend_folders(
    pred_dirs: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    options: BlendOptions | None = None,
    recipe: str | os.PathLike | None = None,
    by_family: bool = False,
    columns: Columns = Columns(),
    classes: Sequence[str] | None = None,
    submission: str | os.PathLike | None = None,
    fmt: SubmissionFormat = SubmissionFormat(),
    force: bool = False,
    strict: bool = False,
    ledger: str | os.PathLike | None = None,
    record: bool = True,
    note: str = "",
    progress: Progress | None = None,
) -> list[WrittenBlend]:
    """Blend prediction folders (or re-apply `recipe` to them) and write the blend folder(s).

    Args:
        pred_dirs: folders holding oof.csv (and test.csv).
        out: the blend folder to write (blends/NAME); NAME names the blend.
        labels: labels CSV (required to fit; optional with `recipe`, where it re-scores the OOF blend).
        options: what to fit (required unless `recipe`).
        recipe: re-apply this recipe.json instead of fitting.
        by_family: blend each family's members on their own into `out/<family>/` (e.g. the seed
            average of every architecture, as prediction folders for later blends).
        columns: the labels CSV's column names (and `label_sep`, what joins a multi-label cell's classes).
        classes: the class order integer labels refer to.
        submission: also write the competition CSV here.
        fmt: the submission format.
        force: overwrite existing outputs.
        strict: with `recipe`, refuse members whose table hash differs from the recipe's.
        ledger: the submission ledger (default `.ens/ledger.db`) that records `submission`.
        record: record the submission in the ledger (identical earlier predictions are warned about).
        note: the ledger entry's note.
        progress: progress hook.

    Returns:
        One `WrittenBlend` (one per family with `by_family`). The blend folder, its submission and
        its ledger entry are written all or nothing.
    """
    from ensemble.ledger import connect, record_submission

    out = Path(out)
    if recipe is not None and (options is not None or by_family):
        raise ConfigError("--recipe replays a fitted blend; drop --method/--weights/--top/--tune-bias/--tune-thresholds/--seed-average/--by-family")
    if recipe is None and options is None:
        raise ConfigError("no --method given; choose one, or pass --recipe to re-apply a blend")
    if recipe is None and labels is None:
        raise ConfigError("no --labels given; blending needs the labels CSV (id, label, fold)")
    oofs = read_oofs(pred_dirs, progress)
    tests_at = test_paths(oofs)
    hash_in_background([t.path for t in oofs] + (tests_at or []))  # for the recipe (or its check), meanwhile
    # the test tables are read after the first fit (a recipe reads them at once): while the blend is
    # fitted and scored, the members' test stack (0.18 GB for 10 x 250k x 18) is not in memory too
    tests = None if tests_at is None or recipe is None else read_tests(tests_at, progress)
    groups = _groups(oofs, by_family)
    if submission is not None and len(groups) > 1:
        raise ConfigError("--by-family with several families writes one blend per family; blend them to make a submission")
    if submission is not None and tests_at is None:
        raise ConfigError("--submission needs test tables: put test.csv beside each member's oof.csv")
    folders = {fam: out / fam if by_family else out for fam in groups}
    # refuse an existing or unwritable output before spending time on the fit
    check_writable([p for f in folders.values() for p in blend_outputs(f, with_test=tests_at is not None, submission=submission)], force=force)
    recording = submission is not None and record
    if recording:
        with connect(ledger, create=True):
            pass  # a foreign or corrupt ledger fails here, before anything is fitted or written
    task = common_task([(t.source, t.task) for t in oofs])  # tables mixing tasks fail here, naming one of each
    lab = read_labels(labels, columns=columns, classes=oofs[0].classes, task=task) if labels is not None else None
    release_freed_memory()  # what reading the labels freed, before the fit
    written = []
    for fam, idx in groups.items():
        o = [oofs[i] for i in idx]
        folder = folders[fam]
        if recipe is not None:
            t = None if tests is None else [tests[i] for i in idx]
            result = apply_recipe(recipe, o, t, labels=lab, strict=strict, name=folder.name, progress=progress)
        else:
            result = blend(o, lab, options=options, classes=classes, name=folder.name, progress=progress)
            if tests_at is not None:
                tests = tests or read_tests(tests_at, progress)
                result = with_tests(result, [tests[i] for i in idx])
        entry: list[Any] = []

        def record_it(paths: dict[str, Path]) -> None:
            entry.append(record_submission(paths["submission"], ledger=ledger, fmt=fmt, recipe_path=paths["recipe"], note=note))

        paths = write_blend(result, folder, submission=submission, fmt=fmt, force=force,
                            after_commit=record_it if recording else None)
        written.append(WrittenBlend(result, paths, entry[0] if entry else None))
    return written


def _groups(oofs: list[PredTable], by_family: bool) -> dict[str, list[int]]:
    """Member indices per blend: all in one (keyed ""), or one blend per family."""
    if not by_family:
        return {"": list(range(len(oofs)))}
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(oofs):
        groups.setdefault(t.family, []).append(i)
    return groups
