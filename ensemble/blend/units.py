"""Blend units: the members themselves, or (seed averaging) one average per seed family."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ensemble.errors import AlignmentError, ConfigError, preview
from ensemble.labels import Labels
from ensemble.tables import PredTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """What enters the blend as one: a name and the indices of the members it averages."""

    name: str
    members: tuple[int, ...]

    def probs(self, tables: list[PredTable]) -> np.ndarray:
        """Mean of its members' probabilities in `tables` (OOF or test, one per member), float32 (n, C)."""
        return _mean([tables[i].probs for i in self.members])


def _mean(arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    return np.mean(np.stack(arrays), axis=0, dtype=np.float64).astype(np.float32)


def build_units(members: list[PredTable], *, seed_average: bool) -> list[Unit]:
    """One unit per member, or per family (in order of first appearance) with `seed_average`.

    Seed averaging is this step, before any method: a family's seeds become one unit.
    """
    if not seed_average:
        return [Unit(t.name, (i,)) for i, t in enumerate(members)]
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(members):
        groups.setdefault(t.family, []).append(i)
    return [Unit(fam, tuple(idx)) for fam, idx in groups.items()]


def check_members(members: list[PredTable], labels: Labels) -> None:
    """Refuse members a blend cannot combine: repeated names, or OOF tables made on other folds.

    Raises:
        ConfigError: two members share a name (recipes match members by name).
        AlignmentError: members' sidecars record different folds, or folds the labels lack.
    """
    names = [t.name for t in members]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        where = [t.source for t in members if t.name in dup]
        raise ConfigError(
            f"members named {preview(dup)} appear more than once ({preview(where)}); each member needs its own "
            "model name (the sidecar's 'model' or its folder) — recipes match members by name"
        )
    recorded = [(t, t.meta.get("folds")) for t in members if isinstance(t.meta.get("folds"), list)]
    if recorded:
        ref_t, ref = recorded[0]
        for t, f in recorded[1:]:
            if sorted(map(int, f)) != sorted(map(int, ref)):
                raise AlignmentError(
                    f"{t.source}: made on folds {sorted(map(int, f))} but {ref_t.source} on {sorted(map(int, ref))}; "
                    "OOF tables must come from the same folds — re-run `ens predict` with one fold set"
                )
        if labels.folds is not None:
            have = set(int(v) for v in np.unique(labels.folds))
            extra = sorted(set(map(int, ref)) - have)
            if extra:
                raise AlignmentError(
                    f"{ref_t.source}: made on folds {preview(extra)} that {labels.source} does not have; "
                    "give the labels CSV whose fold column the models were trained on"
                )
    shas = {str(t.meta["data"]["sha256"]) for t in members if isinstance(t.meta.get("data"), dict) and t.meta["data"].get("sha256")}
    if len(shas) > 1:
        log.warning("members were predicted from %d different data CSVs; check that they share one fold assignment", len(shas))
