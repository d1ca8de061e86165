"""`ens submissions diff A B`: how two recorded submissions differ."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ensemble.errors import LedgerError
from ensemble.ledger._db import connect
from ensemble.ledger.entries import Entry, entry_predictions, get_entry
from ensemble.ledger.submission_rows import Predictions, prediction_agreement, reconcile


@dataclass(frozen=True)
class SubmissionDiff:
    """Two submissions compared on their common ids.

    Attributes:
        a, b: the entries.
        n_common: ids in both.
        only_a, only_b: ids in one only.
        agreement: share of common ids with the same label (multi-label: of equal (row, class) decisions).
        per_class: one dict per label: `label`, `a` and `b` counts (common ids), `change` (b - a);
            multi-label: per class, the rows predicting it.
        flipped: the common ids whose label (set) differs: columns `id`, `a`, `b`, in id order (a
            set's classes joined by spaces).
        sets: the submissions are multi-label.
    """

    a: Entry
    b: Entry
    n_common: int
    only_a: int
    only_b: int
    agreement: float
    per_class: list[dict[str, Any]]
    flipped: pd.DataFrame
    sets: bool = False

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready; `limit` caps the flipped rows (None: all)."""
        rows = self.flipped if limit is None else self.flipped.head(limit)
        return {
            "a": self.a.id,
            "b": self.b.id,
            "n_common": self.n_common,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "agreement": self.agreement,
            "sets": self.sets,
            "n_flipped": len(self.flipped),
            "per_class": self.per_class,
            "flipped": rows.to_dict(orient="records"),
        }


def diff_submissions(a: int, b: int, *, ledger: str | os.PathLike | None = None) -> SubmissionDiff:
    """Compare two entries: agreement, per-class count changes, and the rows that flipped.

    Raises:
        LedgerError: an entry does not exist, or the two share no id.
    """
    with connect(ledger, create=False) as con:
        ea, eb = get_entry(con, a, ledger), get_entry(con, b, ledger)
        pa, pb = reconcile(entry_predictions(con, a), entry_predictions(con, b))
    rate, ia, ib = prediction_agreement(pa, pb)
    if rate is None:
        raise LedgerError(
            f"submissions #{a} and #{b} share no id ({ea.n_rows} and {eb.n_rows} rows); "
            "they predict different test sets and cannot be compared"
        )
    la, lb = pa.labels[ia], pb.labels[ib]
    ca, cb = _class_counts(pa, ia), _class_counts(pb, ib)
    classes = pa.classes if pa.classes is not None and pa.classes == pb.classes else None
    seen = set(ca.index) | set(cb.index)
    order = [c for c in classes if c in seen] if classes else sorted(seen)
    per_class = [
        {"label": str(c), "a": int(ca.get(c, 0)), "b": int(cb.get(c, 0)), "change": int(cb.get(c, 0) - ca.get(c, 0))}
        for c in order
    ]
    flip = np.flatnonzero(la != lb)
    flipped = pd.DataFrame({"id": pa.ids[ia][flip], "a": pa.shown[ia][flip], "b": pb.shown[ib][flip]})
    return SubmissionDiff(
        a=ea, b=eb, n_common=len(ia), only_a=len(pa) - len(ia), only_b=len(pb) - len(ib),
        agreement=rate, per_class=per_class, flipped=flipped, sets=pa.is_sets or pb.is_sets,
    )


def _class_counts(p: Predictions, rows: np.ndarray) -> pd.Series:
    """Rows of `rows` predicting each class (a set counts once for each of its classes)."""
    per_code = np.bincount(p.codes[rows], minlength=len(p.vocab))
    counts: dict[str, int] = {}
    for members, n in zip(p.members(), per_code.tolist()):
        for c in members:
            counts[c] = counts.get(c, 0) + n
    out = pd.Series(counts, dtype=np.int64)
    return out[out > 0]
