"""`write_blend`: a blend folder (tables, sidecars, recipe.json) and its submission, all or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ensemble._io import check_writable, write_json
from ensemble.blend.assemble import BlendResult
from ensemble.errors import ConfigError, OutputError
from ensemble.submission import SubmissionFormat, write_submission
from ensemble.tables import PredTable, sidecar_path, views_path, write_table


def blend_outputs(out_dir: str | os.PathLike, *, with_test: bool, submission: str | os.PathLike | None) -> list[Path]:
    """Every file `write_blend` writes, for checking them before any work."""
    out = Path(out_dir)
    tables = [out / "oof.csv", *([out / "test.csv"] if with_test else [])]
    return [out / "recipe.json"] + [p for t in tables for p in (t, sidecar_path(t))] + (
        [Path(submission)] if submission is not None else []
    )


def write_blend(
    result: BlendResult,
    out_dir: str | os.PathLike,
    *,
    submission: str | os.PathLike | None = None,
    fmt: SubmissionFormat = SubmissionFormat(),
    force: bool = False,
    after_commit: Callable[[dict[str, Path]], None] | None = None,
) -> dict[str, Path]:
    """Write oof.csv, test.csv (with sidecars), recipe.json and the submission, all or nothing.

    Everything is first written to a staging folder beside `out_dir`, then moved into place
    (recipe.json last: readers look for it).

    Args:
        result: what `blend` or `apply_recipe` returned.
        out_dir: the blend folder (e.g. blends/NAME).
        submission: also write the competition CSV here (from the test blend).
        fmt: the submission's columns and target format.
        force: overwrite existing outputs.
        after_commit: called with the written paths by role once everything is in place (the
            ledger records the submission there); if it raises, every output is taken back (files
            it replaced restored), so the folder, submission and ledger entry are one unit.

    Returns:
        The written paths by role ("oof", "test", "recipe", "submission").

    Raises:
        OutputExistsError: an output exists and not `force`.
        OutputError: an output cannot be written.
        ConfigError: a submission without test tables.
    """
    out = Path(out_dir)
    tables: dict[str, PredTable] = {"oof": result.oof}
    if result.test is not None:
        tables["test"] = result.test
    if submission is not None and result.test is None:
        raise ConfigError("--submission needs test tables: put test.csv beside each member's oof.csv")
    check_writable(blend_outputs(out, with_test=result.test is not None, submission=submission), force=force)
    finals = {role: out / f"{role}.csv" for role in tables} | {"recipe": out / "recipe.json"}
    if submission is not None:
        finals["submission"] = Path(submission)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror or e}; choose another --out") from None
    try:
        staged: dict[str, Path] = {}
        for role, t in tables.items():
            staged[role] = write_table(t, staging / f"{role}.csv")
        if submission is not None:
            staged["submission"] = staging / "submission.csv"
            write_submission(result.test, staged["submission"], fmt)
        staged["recipe"] = staging / "recipe.json"
        write_json(staged["recipe"], result.recipe.to_dict())
        moves = [(sidecar_path(staged[r]), sidecar_path(finals[r])) for r in tables]
        moves += [(staged[r], finals[r]) for r in staged if r != "recipe"] + [(staged["recipe"], finals["recipe"])]
        _commit(moves, staging, lambda: after_commit(finals) if after_commit is not None else None)
        if result.test is None:
            for stale in (out / "test.csv", sidecar_path(out / "test.csv"), views_path(out / "test.csv")):
                stale.unlink(missing_ok=True)  # a test table of an earlier blend would not match this one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for role, t in tables.items():
        t.path = finals[role]
    return finals


def _commit(moves: list[tuple[Path, Path]], staging: Path, after: Callable[[], None]) -> None:
    """Move staged files into place, then run `after`; on any failure put everything back as it was."""
    backup = staging / ".replaced"
    backup.mkdir()
    done: list[tuple[Path, Path, Path | None]] = []  # (src, dst, backup of what dst held)
    try:
        for i, (src, dst) in enumerate(moves):
            dst.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if dst.exists():
                old = backup / str(i)
                shutil.move(dst, old)
            done.append((src, dst, old))
            shutil.move(src, dst)  # a rename on one filesystem
        after()
    except BaseException as e:
        for _, dst, old in reversed(done):
            dst.unlink(missing_ok=True)
            if old is not None:
                shutil.move(old, dst)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {e.filename or dst}: {e.strerror or e}; choose another output path") from None
        raise
