"""`ens select`: choose the final submissions on a simulated private leaderboard (see `finals`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ensemble.labels import Columns, read_labels
from ensemble.select.candidates import Candidate, candidate_from_recipe, load_candidates
from ensemble.select.finals import CandidateScore, LBDisagreement, Pick, Selection, select_finals

__all__ = [
    "Candidate",
    "CandidateScore",
    "LBDisagreement",
    "Pick",
    "Selection",
    "candidate_from_recipe",
    "load_candidates",
    "select_finals",
    "select_submissions",
]


def select_submissions(
    labels: str | os.PathLike,
    *,
    ledger: str | os.PathLike | None = None,
    recipes: Sequence[str | os.PathLike] | None = None,
    n: int = 2,
    n_boot: int = 2000,
    seed: int = 42,
    columns: Columns = Columns(),
    all_classes: bool = False,
) -> Selection:
    """Load the candidates (given recipes, else the ledger's blends) and choose `n` finals.

    Args:
        labels: the labels CSV the blends' OOF tables were scored on.
        ledger: the ledger file (default `.ens/ledger.db`).
        recipes: recipe.json files (or blend folders); default every ledger entry with a recipe.
        n, n_boot, seed, all_classes: see `select_finals`.
        columns: the labels CSV's column names.

    Raises:
        LedgerError, TableError, LabelError, AlignmentError, ClassMismatchError, ConfigError.
    """
    cands = load_candidates(ledger=ledger, recipes=recipes)
    lab = read_labels(labels, classes=cands[0].oof.classes, columns=columns)
    return select_finals(cands, lab, n=n, n_boot=n_boot, seed=seed, all_classes=all_classes)
