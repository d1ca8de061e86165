"""`ens select`: choose the final submissions on a simulated private leaderboard (see `finals`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ensemble._io import sha256_file
from ensemble.errors import ConfigError, preview
from ensemble.labels import Columns, read_labels
from ensemble.metrics.choice import MetricChoice
from ensemble.select.candidates import Candidate, candidate_from_recipe, load_candidates
from ensemble.select.finals import (
    CandidateScore,
    LBDisagreement,
    Pick,
    Selection,
    select_finals,
)
from ensemble.task import common_task

__all__ = [
    "Candidate",
    "CandidateScore",
    "LBDisagreement",
    "Pick",
    "Selection",
    "candidate_from_recipe",
    "load_candidates",
    "recorded_labels",
    "recorded_metric",
    "select_finals",
    "select_submissions",
]


def select_submissions(
    labels: str | os.PathLike | None = None,
    *,
    ledger: str | os.PathLike | None = None,
    recipes: Sequence[str | os.PathLike] | None = None,
    n: int = 2,
    n_boot: int | None = None,
    seed: int = 42,
    columns: Columns | None = None,
    classes: Sequence[str] | None = None,
    metric: str | None = None,
    all_classes: bool = False,
    higher_is_better: bool | None = None,
    solution: str | os.PathLike | None = None,
    solution_id_col: str | None = None,
    group_col: str | None = None,
    label_sep: str | None = None,
) -> Selection:
    """Load the candidates (given recipes, else the ledger's blends) and choose `n` finals.

    Args:
        labels: the labels CSV the blends' OOF tables were scored on; default: the one their
            recipes record (every candidate must record the same file, by hash).
        ledger: the ledger file (default `.ens/ledger.db`).
        recipes: recipe.json files (or blend folders); default every ledger entry with a recipe.
        n, n_boot, seed, classes: see `select_finals`.
        columns: the labels CSV's column names and label separator (default: the recorded ones, else
            id/label/fold and "|").
        metric: the leaderboard's metric: a registry name or a metric file (default: the one the
            candidates' recipes were scored in, when they agree, else macro_f1).
        all_classes: shorthand for metric "macro_f1_all".
        higher_is_better, solution, solution_id_col: a metric file's direction and solution.
        group_col: a labels column whose groups the bootstrap resamples whole.
        label_sep: what joins a multi-label labels cell's classes (overrides `columns`' and the recorded one).

    Raises:
        LedgerError, TableError, LabelError, AlignmentError, ClassMismatchError, ConfigError.
    """
    cands = load_candidates(ledger=ledger, recipes=recipes)
    if labels is None:
        labels, recorded_columns = recorded_labels(cands)
        columns = columns or recorded_columns
    if label_sep is not None:
        columns = replace(columns or Columns(), label_sep=label_sep)
    task = common_task([(c.oof.source, c.oof.task) for c in cands])  # multi-label candidates read label sets
    lab = read_labels(labels, classes=cands[0].oof.classes, columns=columns or Columns(), task=task)
    name = metric or recorded_metric(cands)
    same = name == recorded_metric(cands)  # the recipes' metric file: their solution and groups too
    chosen = MetricChoice(
        name, higher_is_better if higher_is_better is not None or not same else recorded_option(cands, "higher_is_better"),
        str(solution) if solution is not None else recorded_option(cands, "solution") if same else None,
        solution_id_col or (recorded_option(cands, "solution_id_col") if same else None),
        group_col or (recorded_option(cands, "group_col") if same else None), all_classes,
    ).resolve(lab, list(cands[0].oof.classes), task=task)
    group_col = group_col or (recorded_option(cands, "group_col") if same else None)
    return select_finals(cands, lab, n=n, n_boot=chosen.resamples(n_boot, 2000), seed=seed, metric=chosen, classes=classes,
                         groups=lab.groups(group_col))


def recorded_option(cands: Sequence[Candidate], key: str) -> object:
    """An option every candidate's recipe recorded with one value (the metric file's solution, ...), else None."""
    values = {repr(c.recipe.options.get(key)) if c.recipe is not None else None for c in cands}
    if len(values) != 1 or None in values:
        return None
    c = cands[0]
    return c.recipe.options.get(key) if c.recipe is not None else None


def recorded_metric(cands: Sequence[Candidate]) -> str:
    """The metric the candidates' recipes were scored in, when they all agree; else macro_f1."""
    names = {c.nested_metric for c in cands if c.nested_metric is not None}
    return names.pop() if len(names) == 1 else "macro_f1"


def recorded_labels(cands: Sequence[Candidate]) -> tuple[Path, Columns]:
    """The labels CSV every candidate's recipe records (path and columns), checked by hash.

    Raises:
        ConfigError: a candidate records none, candidates record different files, or the file is
            gone or changed since; each names the candidates and says to pass --labels.
    """
    refs = {c.name: (c.recipe.labels if c.recipe is not None else None) for c in cands}
    missing = [name for name, r in refs.items() if r is None]
    if missing:
        raise ConfigError(
            f"candidates {preview(missing)} record no labels file (blended before ens recorded it, or in memory); "
            "pass --labels train.csv"
        )
    by_hash: dict[str, list[str]] = {}
    for name, r in refs.items():
        by_hash.setdefault(r.sha256, []).append(name)
    if len(by_hash) > 1:
        groups = "; ".join(f"{preview(names)} on {refs[names[0]].path}" for names in by_hash.values())
        raise ConfigError(f"candidates were blended against different labels files ({groups}); pass --labels to choose one")
    ref = next(iter(refs.values()))
    p = Path(ref.path)
    if not p.is_file():
        raise ConfigError(f"{p}: the labels file the candidates were blended against is gone; pass --labels")
    if sha256_file(p) != ref.sha256:
        raise ConfigError(f"{p}: the labels file changed since the candidates were blended (SHA-256); pass --labels to use it anyway")
    return p, Columns(id=ref.id_col, label=ref.label_col, fold=ref.fold_col, label_sep=ref.label_sep)
