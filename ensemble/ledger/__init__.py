"""The submission ledger: every submission recorded with its normalised-prediction hash, recipe and
scores, so the same file is never submitted twice and the finals are chosen on evidence.

An SQLite file (`.ens/ledger.db` by default); see `ensemble.ledger.submission_rows` for what counts
as the same predictions and `connect` for the safety rules (foreign files refused, concurrent writers
queued, nothing created until the first write).
"""

from ensemble.ledger._db import DEFAULT_LEDGER, connect, ledger_path
from ensemble.ledger.diff import SubmissionDiff, diff_submissions
from ensemble.ledger.entries import (
    AddResult,
    Entry,
    get_submission,
    list_submissions,
    load_predictions,
    record_submission,
    score_submission,
)
from ensemble.ledger.submission_rows import Predictions, prediction_agreement

__all__ = [
    "DEFAULT_LEDGER",
    "AddResult",
    "Entry",
    "Predictions",
    "SubmissionDiff",
    "connect",
    "diff_submissions",
    "get_submission",
    "ledger_path",
    "list_submissions",
    "load_predictions",
    "prediction_agreement",
    "record_submission",
    "score_submission",
]
