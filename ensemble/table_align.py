"""One id order and one class order for several prediction tables (re-exported by `ensemble.tables`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ensemble.errors import AlignmentError, ClassMismatchError, preview

if TYPE_CHECKING:
    from ensemble.tables import PredTable


def conform_classes(tables: Sequence[PredTable], classes: Sequence[str] | None = None) -> list[PredTable]:
    """Put every table's columns in one class order (the first table's, or `classes`).

    Raises:
        ClassMismatchError: a table's class set differs; the message names what is missing and extra.
    """
    ref = list(classes) if classes is not None else list(tables[0].classes)
    out = []
    for t in tables:
        if t.classes == ref:
            out.append(t)
            continue
        missing = [c for c in ref if c not in t.classes]
        extra = [c for c in t.classes if c not in ref]
        if missing or extra:
            parts = ([f"lacks {preview(missing)}"] if missing else []) + ([f"has extra {preview(extra)}"] if extra else [])
            raise ClassMismatchError(
                f"{t.source}: classes differ from the reference ({' and '.join(parts)}); "
                "all tables must be predictions over the same classes"
            )
        order = np.array([t.classes.index(c) for c in ref])
        views = None if t.views is None else {k: v[:, order] for k, v in t.views.items()}
        out.append(replace(t, classes=ref, probs=t.probs[:, order], views=views))
    return out


def align_ids(ids: np.ndarray, ref: np.ndarray, *, source: str, ref_name: str) -> np.ndarray | None:
    """Index that puts `ids` in the order of `ref` (None when they already are); both must hold the same set.

    Raises:
        AlignmentError: naming a few missing and extra ids and how many.
    """
    if len(ids) == len(ref) and np.array_equal(ids, ref):
        return None
    index = pd.Index(ids).get_indexer(pd.Index(ref))
    missing = ref[index < 0]
    extra = np.setdiff1d(ids, ref) if len(ids) + len(missing) != len(ref) else np.array([], dtype=object)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"{len(missing)} ids of {ref_name} are missing ({preview(missing)})")
        if len(extra):
            parts.append(f"{len(extra)} ids are not in {ref_name} ({preview(extra)})")
        raise AlignmentError(
            f"{source}: {'; '.join(parts)}; predict on exactly the rows of {ref_name}"
        )
    return index


def align(tables: Sequence[PredTable], ids: np.ndarray | None = None, *, ref_name: str | None = None) -> list[PredTable]:
    """Reorder tables to one id order (`ids`, or the first table's) and one class order.

    Raises:
        AlignmentError: a table covers other ids.
        ClassMismatchError: a table has other classes.
    """
    if not tables:
        return []
    tables = conform_classes(tables)
    ref = tables[0].ids if ids is None else np.asarray(ids, dtype=object)
    ref_name = ref_name or (tables[0].source if ids is None else "the labels")
    out = []
    for t in tables:
        index = align_ids(t.ids, ref, source=t.source, ref_name=ref_name)
        out.append(t if index is None else t.take(index))
    return out
