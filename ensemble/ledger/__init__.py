"""The submission ledger: every submission recorded with its normalised-prediction hash, recipe and
scores, so the same file is never submitted twice and the finals are chosen on evidence.

An SQLite file (`.ens/ledger.db` by default); see `ensemble.ledger.normalise` for what counts as the
same predictions and `ensemble.ledger._db` for the safety rules (foreign files refused, concurrent
writers queued).
"""

from ensemble.ledger._db import DEFAULT_LEDGER
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
from ensemble.ledger.normalise import Predictions
from ensemble.ledger.recipe import RecipeInfo, read_recipe

__all__ = [
    "DEFAULT_LEDGER",
    "AddResult",
    "Entry",
    "Predictions",
    "RecipeInfo",
    "SubmissionDiff",
    "diff_submissions",
    "get_submission",
    "list_submissions",
    "load_predictions",
    "read_recipe",
    "record_submission",
    "score_submission",
]
