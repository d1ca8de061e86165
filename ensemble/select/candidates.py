"""Candidates for the final submissions: blends known by their recipe, with OOF, test and LB scores."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble._io import sha256_file
from ensemble.errors import LedgerError
from ensemble.ledger import (
    Entry,
    Predictions,
    ledger_path,
    list_submissions,
    load_predictions,
)
from ensemble.ledger.submission_rows import AS_NAMES, set_predictions
from ensemble.naming import unique_names
from ensemble.recipe import Recipe, read_recipe
from ensemble.submission import predicted_sets
from ensemble.tables import PredTable, read_table
from ensemble.task import MULTILABEL

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Candidate:
    """One blend that could be a final submission.

    Attributes:
        name: display name (the blend folder; `#id` added when two share a name).
        oof: the blend's OOF prediction table.
        nested: the recipe's nested-CV estimate, None when the method fits nothing.
        nested_metric: the metric `nested` is in (the recipe's), or None for "the one selected on".
        recipe: the recipe, or None for a candidate built in memory.
        test: the test predictions (as submitted, when from the ledger), or None.
        entry_id: the ledger entry, when the candidate came from (or matched) one.
        public_score, private_score: leaderboard scores from the ledger.
    """

    name: str
    oof: PredTable
    nested: float | None = None
    nested_metric: str | None = None
    recipe: Recipe | None = None
    test: Predictions | None = None
    entry_id: int | None = None
    public_score: float | None = None
    private_score: float | None = None

    def nested_in(self, metric: str) -> float | None:
        """The nested estimate when it is in `metric` (a recipe scored in another metric has none here)."""
        if self.nested is None or (self.nested_metric is not None and self.nested_metric != metric):
            return None
        return self.nested


def test_predictions(table: PredTable) -> Predictions:
    """Argmax class names of a test table, as the ledger normalises a submission; a multi-label table's
    predicted sets as its default submission writes them (p > 0.5, else the top class)."""
    if table.task == MULTILABEL:
        return set_predictions(table.ids, predicted_sets(table), table.classes)
    return Predictions(table.ids, list(table.classes), table.probs.argmax(axis=1).astype(np.int64), AS_NAMES, list(table.classes))


def candidate_from_recipe(recipe: Recipe, *, name: str | None = None) -> Candidate:
    """A candidate from a recipe: its folder's oof.csv, and test.csv when present.

    Raises:
        TableError: the blend folder has no (valid) oof.csv.
    """
    oof = read_table(recipe.folder / "oof.csv")
    test_path = recipe.folder / "test.csv"
    test = test_predictions(read_table(test_path, kind="test")) if test_path.is_file() else None
    return Candidate(name or recipe.folder.name, oof, recipe.scores.nested, recipe.scores.metric, recipe, test)


def load_candidates(
    *, ledger: str | os.PathLike | None = None, recipes: Sequence[str | os.PathLike] | None = None
) -> list[Candidate]:
    """The candidates: the given recipes, else every ledger entry made from a recipe.

    With recipes, leaderboard scores come from ledger entries of the same recipe (matched by hash)
    when a ledger exists. From the ledger, submissions of one recipe make one candidate (its latest
    scored entry, whose submitted predictions are the test predictions); entries whose recipe is
    gone or has changed since are skipped with a warning.

    Raises:
        LedgerError: no recipes given and the ledger holds no entry with a usable recipe.
    """
    if recipes:
        infos = list({i.path: i for i in map(read_recipe, recipes)}.values())  # the same file twice is one
        entries = _entries_if_any(ledger)
        out = []
        for info in infos:
            c = candidate_from_recipe(info)
            scored = [e for e in entries if e.recipe_sha256 == info.sha256]
            if scored:
                _attach_scores(c, scored)
            out.append(c)
        return _unique_names(out)

    entries = list_submissions(ledger)
    by_recipe: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        if e.recipe_sha256 is not None and e.recipe_path is not None:
            by_recipe.setdefault((e.recipe_path, e.recipe_sha256), []).append(e)
    out = []
    for (_, sha), group in by_recipe.items():
        path = Path(group[-1].recipe_path or "")
        if not path.is_file():
            logger.warning("skipping submission #%d: its recipe %s is gone", group[-1].id, path)
            continue
        if sha256_file(path) != sha:
            logger.warning("skipping submission #%d: its recipe %s changed since it was recorded", group[-1].id, path)
            continue
        c = candidate_from_recipe(read_recipe(path))
        _attach_scores(c, group)
        c.test = load_predictions(c.entry_id, ledger)[1]  # what was actually submitted
        out.append(c)
    if not out:
        raise LedgerError(
            f"{ledger_path(ledger)}: no submission with a usable recipe among {len(entries)} entries; "
            "record blends with `ens submissions add FILE --recipe recipe.json`, or pass recipes to `ens select`"
        )
    return _unique_names(out)


def _entries_if_any(ledger: str | os.PathLike | None) -> list[Entry]:
    # an explicit --ledger must exist; the default one is optional when recipes are given
    if ledger is None and not ledger_path(None).exists():
        return []
    return list_submissions(ledger)


def _attach_scores(c: Candidate, group: list[Entry]) -> None:
    scored = [e for e in group if e.public_score is not None or e.private_score is not None]
    chosen = scored[-1] if scored else group[-1]
    c.entry_id, c.public_score, c.private_score = chosen.id, chosen.public_score, chosen.private_score


def _unique_names(cands: list[Candidate]) -> list[Candidate]:
    names = unique_names(
        [c.name for c in cands], lambda i, _: f" (#{cands[i].entry_id})" if cands[i].entry_id is not None else f" ({i + 1})"
    )
    for c, n in zip(cands, names):
        c.name = n
    return cands

