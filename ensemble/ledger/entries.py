"""Recording, listing and scoring submissions in the ledger."""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ensemble._io import sha256_file
from ensemble.errors import DuplicateSubmissionError, LedgerError
from ensemble.ledger._db import connect, ledger_path, write_transaction
from ensemble.ledger.submission_rows import (
    AS_NAME_SETS,
    AS_WRITTEN_SETS,
    Predictions,
    normalise_submission,
    prediction_agreement,
)
from ensemble.recipe import Recipe, read_recipe
from ensemble.submission import SubmissionFormat, read_submission
from ensemble.tables import sidecar_path
from ensemble.task import MULTICLASS, MULTILABEL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One recorded submission (a ledger row, without its stored predictions).

    Attributes:
        id: the entry number (1, 2, ...), never reused.
        path: the submission CSV (absolute, as it was when recorded).
        file_sha256: hash of the CSV's bytes.
        pred_sha256: hash of the normalised predictions (see `ensemble.ledger.submission_rows`).
        ids_sha256: hash of the id set.
        n_rows: number of predictions.
        labels_as: how targets were normalised ("class names" or "as written").
        classes: the classes used to normalise, or None.
        recipe_path, recipe_sha256, method, members: the blend that made it, when known.
        metric, higher_is_better: the metric of the blend's recorded scores, and its direction.
        oof_score, nested_score, ci95: the blend's scores from its recipe, in `metric`.
        created: UTC time recorded (ISO 8601).
        note: the user's note.
        public_score, private_score: leaderboard scores, once recorded.
        scored: UTC time the scores were last recorded.
    """

    id: int
    path: str
    file_sha256: str
    pred_sha256: str
    ids_sha256: str
    n_rows: int
    labels_as: str
    classes: list[str] | None
    recipe_path: str | None
    recipe_sha256: str | None
    method: str | None
    members: list[dict[str, Any]] | None
    metric: str | None
    higher_is_better: bool | None
    oof_score: float | None
    nested_score: float | None
    ci95: tuple[float, float] | None
    created: str
    note: str
    public_score: float | None
    private_score: float | None
    scored: str | None

    @property
    def sets(self) -> bool:
        """A multi-label submission (each row a set of classes)."""
        return self.labels_as in (AS_NAME_SETS, AS_WRITTEN_SETS)

    @property
    def honest(self) -> float | None:
        """The nested OOF score when recorded, else the in-sample one (in `metric`)."""
        return self.nested_score if self.nested_score is not None else self.oof_score

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 else None
        return d

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        d = dict(row)
        ci = (d.pop("ci_lo"), d.pop("ci_hi"))
        for stored in ("vocab", "codes"):
            d.pop(stored, None)
        return cls(
            **d | {
                "classes": json.loads(d["classes"]) if d["classes"] else None,
                "members": json.loads(d["members"]) if d["members"] else None,
                "ci95": ci if None not in ci else None,
                "higher_is_better": None if d["higher_is_better"] is None else bool(d["higher_is_better"]),
            }
        )


@dataclass(frozen=True)
class AddResult:
    """What recording a submission found.

    Attributes:
        entry: the new entry.
        duplicate_of: the earliest entry with identical predictions, or None.
        closest: the earlier entry (same ids) agreeing most with the new one, or None.
        agreement: share of rows where `closest` predicts the same (1.0 for a duplicate).
    """

    entry: Entry
    duplicate_of: Entry | None
    closest: Entry | None
    agreement: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry.to_dict(),
            "duplicate_of": self.duplicate_of.id if self.duplicate_of else None,
            "closest": self.closest.id if self.closest else None,
            "agreement": self.agreement,
        }


_COLUMNS = [f.name for f in Entry.__dataclass_fields__.values() if f.name not in ("id", "ci95")] + ["ci_lo", "ci_hi", "vocab", "codes"]


def _check_rows(sub: Path, n_rows: int, recipe: Recipe) -> None:
    """A submission recorded against a recipe must have as many rows as the blend's test table."""
    expected = recipe.n_test
    if expected is None and recipe.path is not None and (recipe.folder / "test.csv").is_file():
        from ensemble.tables import read_table

        expected = len(read_table(recipe.folder / "test.csv", kind="test"))  # recipes written before n_test
    if expected is not None and expected != n_rows:
        raise LedgerError(
            f"{sub}: {n_rows} rows, but the blend of {recipe.path or 'the recipe'} has {expected} test rows; "
            "record the submission that blend wrote, or drop --recipe"
        )


def record_submission(
    submission_path: str | os.PathLike,
    *,
    ledger: str | os.PathLike | None = None,
    fmt: SubmissionFormat = SubmissionFormat(),
    recipe_path: str | os.PathLike | None = None,
    note: str = "",
    strict: bool = False,
    classes: Sequence[str] | None = None,
    task: str | None = None,
) -> AddResult:
    """Record a submission CSV in the ledger, flagging identical earlier predictions.

    Args:
        submission_path: the competition CSV.
        ledger: the ledger file (default `.ens/ledger.db`); created when absent.
        fmt: the CSV's id and target columns.
        recipe_path: the blend's recipe.json (scores, member hashes, classes to normalise with).
        note: free text shown in `ens submissions list`.
        strict: refuse (and record nothing) when the predictions equal an earlier entry's.
        classes: class names to normalise targets with; default the recipe's.
        task: `multilabel` when each row holds a set of classes (joined by `fmt.label_sep`);
            default the recipe's blend's (its tables' sidecar), else `multiclass`.

    Returns:
        The new entry, the duplicate if any, and the closest earlier entry with its agreement rate.

    Raises:
        DuplicateSubmissionError: `strict` and identical to an earlier entry.
        LedgerError: the ledger is not ours or is unreadable; a bad recipe.
        LabelError, ClassMismatchError: the CSV is malformed or its targets are not classes.
    """
    sub = Path(submission_path)
    recipe: Recipe | None = read_recipe(recipe_path) if recipe_path is not None else None
    preds_frame = read_submission(sub, fmt, task=task or recipe_task(recipe))
    if classes is None and recipe is not None:
        classes = recipe.classes
    preds = normalise_submission(preds_frame, classes, sub)
    if recipe is not None:
        _check_rows(sub, len(preds), recipe)
    scores = recipe.scores if recipe is not None else None
    record = {
        "path": str(sub.resolve()),
        "file_sha256": sha256_file(sub),
        "pred_sha256": preds.sha256,
        "ids_sha256": preds.ids_sha256,
        "n_rows": len(preds),
        "labels_as": preds.labels_as,
        "classes": json.dumps(preds.classes) if preds.classes is not None else None,
        "recipe_path": str(recipe.path) if recipe else None,
        "recipe_sha256": recipe.sha256 if recipe else None,
        "method": recipe.method if recipe else None,
        "members": json.dumps([
            {"name": m.name, "oof_sha256": m.oof_sha256, "test_sha256": m.test_sha256} for m in recipe.members
        ]) if recipe else None,
        "metric": scores.metric if scores else None,
        "higher_is_better": int(scores.higher_is_better) if scores else None,
        "oof_score": scores.oof if scores else None,
        "nested_score": scores.nested if scores else None,
        "ci_lo": scores.ci95[0] if scores and scores.ci95 else None,
        "ci_hi": scores.ci95[1] if scores and scores.ci95 else None,
        "created": _now(),
        "note": note,
        "public_score": None,
        "private_score": None,
        "scored": None,
        "vocab": json.dumps(preds.vocab),
        "codes": preds.codes_blob(),
    }
    with connect(ledger, create=True) as con, write_transaction(con):
        # one transaction: a concurrent `add` of the same file sees this one, or this one sees it
        row = con.execute("SELECT * FROM submissions WHERE pred_sha256 = ? ORDER BY id LIMIT 1", (preds.sha256,)).fetchone()
        duplicate = Entry.from_row(row) if row else None
        closest, rate = (duplicate, 1.0) if duplicate is not None else _closest(con, preds)
        if duplicate is None and rate == 1.0 and closest is not None and closest.n_rows == len(preds) and preds.digest is None:
            duplicate = closest  # same ids, same labels once names and indices are reconciled (probabilities: by digest only)
        if duplicate is not None and strict:
            raise DuplicateSubmissionError(
                f"{sub}: predictions are identical to submission #{duplicate.id} ({duplicate.path}"
                f"{', ' + repr(duplicate.note) if duplicate.note else ''}); nothing recorded — "
                "submit something new, or drop --strict to record it anyway"
            )
        if con.execute("SELECT 1 FROM idsets WHERE ids_sha256 = ?", (preds.ids_sha256,)).fetchone() is None:
            con.execute("INSERT INTO idsets (ids_sha256, ids) VALUES (?, ?)", (preds.ids_sha256, preds.ids_blob()))
        cur = con.execute(
            f"INSERT INTO submissions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            [record[c] for c in _COLUMNS],
        )
        entry = get_entry(con, int(cur.lastrowid), ledger)
    if duplicate is not None:
        logger.warning(
            "DUPLICATE: %s has predictions IDENTICAL to submission #%d (%s%s, %s); recorded as #%d anyway — "
            "submitting it again wastes a slot (--strict refuses duplicates)",
            sub, duplicate.id, duplicate.path, f", {duplicate.note!r}" if duplicate.note else "",
            duplicate.created, entry.id,
        )
    return AddResult(entry, duplicate, closest, rate)


def recipe_task(recipe: Recipe | None) -> str:
    """The task of a recipe's blend: multilabel when the recipe or its blend's tables' sidecar says so, else multiclass."""
    if recipe is None:
        return MULTICLASS
    recorded = getattr(recipe, "task", None)
    if recorded != MULTILABEL and recipe.path is not None:  # recipes written before they recorded a task
        for name in ("test.csv", "oof.csv"):
            side = sidecar_path(recipe.folder / name)
            if side.is_file():
                try:
                    recorded = json.loads(side.read_text(encoding="utf-8")).get("task")
                except (OSError, ValueError, AttributeError):
                    continue  # an unreadable sidecar is the table reader's to report
                break
    return MULTILABEL if recorded == MULTILABEL else MULTICLASS


def list_submissions(ledger: str | os.PathLike | None = None) -> list[Entry]:
    """Every entry, oldest first.

    Raises:
        LedgerError: no ledger at the path, or not ours.
    """
    with connect(ledger, create=False) as con:
        return [Entry.from_row(r) for r in con.execute("SELECT * FROM submissions ORDER BY id")]


def get_submission(entry_id: int, ledger: str | os.PathLike | None = None) -> Entry:
    """One entry by number.

    Raises:
        LedgerError: no such entry (the message gives the valid range).
    """
    with connect(ledger, create=False) as con:
        return get_entry(con, entry_id, ledger)


def load_predictions(entry_id: int, ledger: str | os.PathLike | None = None) -> tuple[Entry, Predictions]:
    """An entry and its stored normalised predictions."""
    with connect(ledger, create=False) as con:
        entry = get_entry(con, entry_id, ledger)
        return entry, entry_predictions(con, entry_id)


def score_submission(
    entry_id: int,
    *,
    public: float | None = None,
    private: float | None = None,
    ledger: str | os.PathLike | None = None,
) -> Entry:
    """Record leaderboard scores for an entry (a score not given is left as it was).

    Raises:
        LedgerError: neither score given, a score that is not a finite number, or no such entry.
    """
    if public is None and private is None:
        raise LedgerError(f"submission #{entry_id}: no score given; pass --public X and/or --private Y")
    for name, v in (("public", public), ("private", private)):
        if v is not None and not math.isfinite(v):
            raise LedgerError(f"submission #{entry_id}: --{name} {v} is not a finite number; give the leaderboard score")
    with connect(ledger, create=False) as con, write_transaction(con):
        get_entry(con, entry_id, ledger)
        con.execute(
            "UPDATE submissions SET public_score = COALESCE(?, public_score), "
            "private_score = COALESCE(?, private_score), scored = ? WHERE id = ?",
            (public, private, _now(), entry_id),
        )
        return get_entry(con, entry_id, ledger)


def get_entry(con: sqlite3.Connection, entry_id: int, ledger: str | os.PathLike | None) -> Entry:
    """One entry read on an open ledger connection (`ledger` names the file in the error).

    Raises:
        LedgerError: no such entry (the message gives the valid range).
    """
    row = con.execute("SELECT * FROM submissions WHERE id = ?", (int(entry_id),)).fetchone()
    if row is None:
        lo, hi = con.execute("SELECT MIN(id), MAX(id) FROM submissions").fetchone()
        held = f"#{lo}..#{hi}" if lo is not None else "no submissions"
        raise LedgerError(
            f"{ledger_path(ledger)}: no submission #{entry_id} (the ledger holds {held}); see `ens submissions list`"
        )
    return Entry.from_row(row)


def entry_predictions(con: sqlite3.Connection, entry_id: int) -> Predictions:
    """An entry's stored normalised predictions, read on an open ledger connection."""
    row = con.execute(
        "SELECT i.ids, s.vocab, s.codes, s.labels_as, s.classes FROM submissions s "
        "JOIN idsets i ON i.ids_sha256 = s.ids_sha256 WHERE s.id = ?", (entry_id,)
    ).fetchone()
    return Predictions.from_stored(*row)


def _closest(con: sqlite3.Connection, preds: Predictions) -> tuple[Entry | None, float | None]:
    """The earlier entry over the same ids with the highest agreement (latest on ties)."""
    best: tuple[float, int] | None = None
    rows = con.execute(
        "SELECT id, vocab, codes, labels_as, classes FROM submissions WHERE ids_sha256 = ? ORDER BY id",
        (preds.ids_sha256,),
    ).fetchall()
    for entry_id, *stored in rows:
        other = Predictions.from_stored(preds.ids, *stored)  # same id hash: the same sorted ids
        rate, _, _ = prediction_agreement(preds, other)
        if rate is not None and (best is None or rate >= best[0]):
            best = (rate, entry_id)
    if best is None:
        return None, None
    row = con.execute("SELECT * FROM submissions WHERE id = ?", (best[1],)).fetchone()
    return Entry.from_row(row), best[0]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
