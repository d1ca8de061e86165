"""Normalised submission predictions: what "the same predictions" means, and how alike two are.

The rule (documented in the README):

1. Rows are sorted by id; ids are compared as the strings written (``"007"`` is not ``"7"``).
2. With the classes known (a recipe's ``classes``, or given), every target is mapped to its class
   name: a target equal to a class name is that class, otherwise an integer ``0..C-1`` is that
   class index (the rule labels CSVs follow). So a file written with class indices and one written
   with class names normalise the same.
3. Without classes, targets are compared exactly as written: ``"3"`` and ``"cat"`` differ.

The hash covers ids and normalised labels, so two files that differ only in row order, id order,
column names or the name/index form of their targets have the same hash.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.errors import EnsembleError
from ensemble.labels import _encode_labels

AS_NAMES = "class names"
AS_WRITTEN = "as written"


@dataclass(eq=False)
class Predictions:
    """One submission's normalised predictions.

    Attributes:
        ids: string ids sorted, shape (n_rows,), object dtype.
        labels: normalised targets aligned with `ids`, shape (n_rows,), object dtype.
        labels_as: `AS_NAMES` when mapped through known classes, else `AS_WRITTEN`.
        classes: the classes used to map, or None.
    """

    ids: np.ndarray
    labels: np.ndarray
    labels_as: str
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sha256(self) -> str:
        """Hash of ids and normalised labels: equal exactly when the predictions are the same."""
        return _sha256_json([self.ids.tolist(), self.labels.tolist()])

    @property
    def ids_sha256(self) -> str:
        """Hash of the id set: entries with equal id hashes compare row for row."""
        return _sha256_json(self.ids.tolist())

    def to_blob(self) -> bytes:
        return zlib.compress(json.dumps([self.ids.tolist(), self.labels.tolist()]).encode("utf-8"), 6)

    @classmethod
    def from_blob(cls, blob: bytes, labels_as: str, classes: list[str] | None) -> Predictions:
        ids, labels = json.loads(zlib.decompress(blob).decode("utf-8"))
        return cls(np.array(ids, dtype=object), np.array(labels, dtype=object), labels_as, classes)


def normalise(frame: pd.DataFrame, classes: Sequence[str] | None, source: str | Path) -> Predictions:
    """Normalise a submission read by `ensemble.submission.read_submission`.

    Args:
        frame: columns `id` and `target` (strings), sorted by id.
        classes: the class names in index order, or None.
        source: the file, for error messages.

    Raises:
        ClassMismatchError: with `classes`, a target that is neither a class name nor an index.
    """
    ids = frame["id"].to_numpy(dtype=object)
    raw = frame["target"].to_numpy(dtype=object)
    if classes is None:
        return Predictions(ids, raw, AS_WRITTEN, None)
    codes, classes = _encode_labels(raw, classes, Path(source), "target")
    return Predictions(ids, np.asarray(classes, dtype=object)[codes], AS_NAMES, list(classes))


def reconcile(a: Predictions, b: Predictions) -> tuple[Predictions, Predictions]:
    """Map the targets of the one without classes through the other's classes, when they all map.

    So an entry recorded without a recipe (indices as written) still compares with one recorded
    with a recipe (class names). Unchanged when both or neither have classes, or a target is unknown.
    """
    if (a.classes is None) == (b.classes is None):
        return a, b
    known, other = (a, b) if a.classes is not None else (b, a)
    try:
        codes, _ = _encode_labels(other.labels, known.classes, Path("submission"), "target")
    except EnsembleError:
        return a, b
    mapped = Predictions(other.ids, np.asarray(known.classes, dtype=object)[codes], AS_NAMES, known.classes)
    return (a, mapped) if known is a else (mapped, b)


def agreement(a: Predictions, b: Predictions) -> tuple[float | None, np.ndarray, np.ndarray]:
    """Share of the common ids where `a` and `b` predict the same label (after `reconcile`).

    Returns:
        (rate or None when no id is common, index into `a` of the common ids, index into `b`).
    """
    a, b = reconcile(a, b)
    if len(a) == len(b) and np.array_equal(a.ids, b.ids):
        ia = ib = np.arange(len(a))
    else:
        ib_all = pd.Index(b.ids).get_indexer(pd.Index(a.ids))
        ia = np.flatnonzero(ib_all >= 0)
        ib = ib_all[ia]
    if len(ia) == 0:
        return None, ia, ib
    return float(np.mean(a.labels[ia] == b.labels[ib])), ia, ib


def _sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode("utf-8")).hexdigest()
