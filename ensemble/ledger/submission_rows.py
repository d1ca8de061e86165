"""Normalised submission predictions (the rows of a submission CSV as the ledger stores them): what "the same predictions" means, and how alike two are.

The rule (documented in the README):

1. Rows are sorted by id; ids are compared as the strings written (``"007"`` is not ``"7"``).
2. With the classes known (a recipe's ``classes``, or given), every target is mapped to its class
   name: a target equal to a class name is that class, otherwise an integer ``0..C-1`` is that
   class index (the rule labels CSVs follow). So a file written with class indices and one written
   with class names normalise the same.
3. Without classes, targets are compared exactly as written: ``"3"`` and ``"cat"`` differ — except
   against an entry that has classes, whose classes then map the written targets (`reconcile`).

The hash covers ids and normalised labels, so two files that differ only in row order, id order,
column names or the name/index form of their targets have the same hash.

Multi-label submissions (a set of classes per row) follow the same rules per class: a row's label
is its set, canonicalised (distinct classes, in class-index order when the classes are known, else
sorted as written), so ``"b a"`` and ``"a b"`` are the same predictions. Two submissions agree on
the share of (row, class) decisions they have in common: a row whose sets differ by one class of
twenty agrees on 19/20 of its decisions.

Stored form: the id list once per id set, and per submission its label vocabulary plus one small
integer code per row, so comparing two submissions is an integer comparison.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.errors import EnsembleError
from ensemble.labels import encode_labels
from ensemble.task import MULTILABEL

AS_NAMES = "class names"
AS_WRITTEN = "as written"
AS_NAME_SETS = "class-name sets"  # multi-label: each label a set of class names
AS_WRITTEN_SETS = "sets as written"
_SETS = (AS_NAME_SETS, AS_WRITTEN_SETS)
_SEP = "\x00"  # cannot occur inside a CSV field read as text, so joined strings stay unambiguous
_IN_SET = "\x1f"  # joins the classes of one set inside a normalised label (unit separator: not in class names)


@dataclass(eq=False)
class Predictions:
    """One submission's normalised predictions.

    Attributes:
        ids: string ids sorted, shape (n_rows,), object dtype.
        vocab: the distinct normalised labels (multi-label: each a canonical set, see `members`).
        codes: index into `vocab` per row, shape (n_rows,), int64.
        labels_as: `AS_NAMES` when mapped through known classes, else `AS_WRITTEN`; multi-label
            `AS_NAME_SETS` or `AS_WRITTEN_SETS`.
        classes: the classes used to map, or None.
    """

    ids: np.ndarray
    vocab: list[str]
    codes: np.ndarray
    labels_as: str
    classes: list[str] | None = None
    digest: str | None = None  # a probability submission's hash (ids and probabilities), else None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_sets(self) -> bool:
        """Multi-label: each row's label is a set of classes."""
        return self.labels_as in _SETS

    def members(self) -> list[list[str]]:
        """The classes of each vocabulary entry (a one-class list for a multiclass label)."""
        if not self.is_sets:
            return [[v] for v in self.vocab]
        return [v.split(_IN_SET) if v else [] for v in self.vocab]

    @property
    def shown(self) -> np.ndarray:
        """Each row's label as people read it (a set's classes joined by spaces), shape (n_rows,)."""
        if not self.is_sets:
            return self.labels
        return np.asarray([v.replace(_IN_SET, " ") for v in self.vocab], dtype=object)[self.codes]

    @property
    def labels(self) -> np.ndarray:
        """Normalised label per row, shape (n_rows,), object dtype."""
        return np.asarray(self.vocab, dtype=object)[self.codes]

    @cached_property
    def sha256(self) -> str:
        """Hash of ids and normalised labels (or probabilities): equal exactly when the predictions are the same."""
        if self.digest is not None:
            return self.digest
        h = hashlib.sha256(self.ids_sha256.encode())
        h.update(_SEP.join(self.labels.tolist()).encode("utf-8"))
        return h.hexdigest()

    @cached_property
    def ids_sha256(self) -> str:
        """Hash of the sorted ids: entries with equal id hashes compare row for row."""
        return hashlib.sha256(_SEP.join(self.ids.tolist()).encode("utf-8")).hexdigest()

    def ids_blob(self) -> bytes:
        return zlib.compress(_SEP.join(self.ids.tolist()).encode("utf-8"), 1)

    def codes_blob(self) -> bytes:
        dtype = np.uint8 if len(self.vocab) <= 256 else np.uint32
        return zlib.compress(self.codes.astype(dtype).tobytes(), 1)

    @classmethod
    def from_stored(
        cls, ids: np.ndarray | bytes, vocab_json: str, codes_blob: bytes, labels_as: str, classes_json: str | None
    ) -> Predictions:
        """Rebuild from the ledger's columns; `ids` is the stored blob or an already decoded array."""
        if isinstance(ids, bytes):
            text = zlib.decompress(ids).decode("utf-8")
            ids = np.array(text.split(_SEP) if text else [], dtype=object)
        vocab = json.loads(vocab_json)
        dtype = np.uint8 if len(vocab) <= 256 else np.uint32
        codes = np.frombuffer(zlib.decompress(codes_blob), dtype=dtype).astype(np.int64)
        return cls(ids, vocab, codes, labels_as, json.loads(classes_json) if classes_json else None)


def set_predictions(ids: np.ndarray, chosen: np.ndarray, classes: Sequence[str]) -> Predictions:
    """Multi-label predictions from decisions: `chosen` bool (n, C) over `classes`, rows in `ids` order."""
    uniq, codes = np.unique(np.asarray(chosen, dtype=bool), axis=0, return_inverse=True)
    vocab = [_IN_SET.join(classes[j] for j in np.flatnonzero(u)) for u in uniq]
    return Predictions(np.asarray(ids, dtype=object), vocab, codes.ravel().astype(np.int64), AS_NAME_SETS, list(classes))


def normalise_submission(frame: pd.DataFrame, classes: Sequence[str] | None, source: str | Path) -> Predictions:
    """Normalise a submission read by `ensemble.submission.read_submission`.

    Args:
        frame: columns `id` and `target` (strings; multi-label, `attrs["task"]`: tuples of classes),
            sorted by id.
        classes: the class names in index order, or None.
        source: the file, for error messages.

    Raises:
        ClassMismatchError: with `classes`, a target that is neither a class name nor an index.
    """
    ids = frame["id"].to_numpy(dtype=object)
    target = frame["target"].to_numpy(dtype=object)
    sets = frame.attrs.get("task") == MULTILABEL
    if sets:  # a canonical key per set: distinct classes, sorted as written
        target = np.asarray([_IN_SET.join(sorted(set(t))) for t in target], dtype=object)
    codes, uniques = pd.factorize(target)
    vocab = [str(u) for u in uniques]
    digest = frame.attrs.get("digest")
    written = Predictions(ids, vocab, codes.astype(np.int64), AS_WRITTEN_SETS if sets else AS_WRITTEN, None, digest)
    if classes is None:
        return written
    return replace(through_classes(written, list(classes), source), digest=digest)


def through_classes(p: Predictions, classes: list[str], source: str | Path) -> Predictions:
    """Map the vocabulary (not every row) through the classes; equal names (or sets) merge into one code.

    Raises:
        ClassMismatchError: a label (a class of a set) that is neither a class name nor an index.
    """
    return _sets_through_classes(p, classes, source) if p.is_sets else _through_classes(p, classes, source)


def _sets_through_classes(p: Predictions, classes: list[str], source: str | Path) -> Predictions:
    """Each set's classes mapped to names (one rule for every token: all names or all indices), in class-index order."""
    members = p.members()
    tokens = sorted({t for m in members for t in m})
    index: dict[str, int] = {}
    if tokens:
        as_index, classes = encode_labels(np.asarray(tokens, dtype=object), classes, Path(source), "target")
        index = dict(zip(tokens, as_index.tolist()))
    canon = [_IN_SET.join(classes[i] for i in sorted({index[t] for t in m})) for m in members]
    remap, vocab = pd.factorize(np.asarray(canon, dtype=object))
    return Predictions(p.ids, [str(v) for v in vocab], remap[p.codes].astype(np.int64), AS_NAME_SETS, list(classes))


def _through_classes(p: Predictions, classes: list[str], source: str | Path) -> Predictions:
    """Map the vocabulary (not every row) through the classes; equal names merge into one code."""
    as_index, classes = encode_labels(np.asarray(p.vocab, dtype=object), classes, Path(source), "target")
    used, remap = np.unique(as_index, return_inverse=True)
    vocab = [classes[i] for i in used]
    return Predictions(p.ids, vocab, remap[p.codes].astype(np.int64), AS_NAMES, classes)


def reconcile(a: Predictions, b: Predictions) -> tuple[Predictions, Predictions]:
    """Map the targets of the one without classes through the other's classes, when they all map.

    So an entry recorded without a recipe (indices as written) still compares with one recorded
    with a recipe (class names). Unchanged when both or neither have classes, or a target is unknown.
    """
    if (a.classes is None) == (b.classes is None):
        return a, b
    known, other = (a, b) if a.classes is not None else (b, a)
    try:
        mapped = through_classes(other, known.classes, "submission")
    except EnsembleError:
        return a, b
    return (a, mapped) if known is a else (mapped, b)


def prediction_agreement(a: Predictions, b: Predictions) -> tuple[float | None, np.ndarray, np.ndarray]:
    """Share of the common ids where `a` and `b` predict the same label (after `reconcile`); when
    either holds sets (multi-label), the share of equal (row, class) decisions (`set_agreement`).

    Returns:
        (rate or None when no id is common, index into `a` of the common ids, index into `b`).
    """
    a, b = reconcile(a, b)
    if len(a) == len(b) and (a.ids is b.ids or np.array_equal(a.ids, b.ids)):
        ia = ib = np.arange(len(a))
    else:
        ib_all = pd.Index(b.ids).get_indexer(pd.Index(a.ids))
        ia = np.flatnonzero(ib_all >= 0)
        ib = ib_all[ia]
    if len(ia) == 0:
        return None, ia, ib
    if a.is_sets or b.is_sets:
        return set_agreement(a, b, ia, ib), ia, ib
    # b's codes in a's vocabulary (-1: a label a never predicts), so rows compare as integers
    lookup = {v: i for i, v in enumerate(a.vocab)}
    b_in_a = np.array([lookup.get(v, -1) for v in b.vocab], dtype=np.int64)
    return float(np.mean(a.codes[ia] == b_in_a[b.codes[ib]])), ia, ib


def set_agreement(a: Predictions, b: Predictions, ia: np.ndarray, ib: np.ndarray) -> float:
    """Share of equal (row, class) decisions of rows `ia` of `a` and `ib` of `b`.

    The classes are the known ones (either's) and every class either predicts, so a class neither
    ever predicts counts as agreed on every row when the classes are known (a multiclass label is a
    one-class set).
    """
    ma, mb = a.members(), b.members()
    seen = sorted({t for m in (*ma, *mb) for t in m})
    universe = list(dict.fromkeys([*(a.classes or []), *(b.classes or []), *seen]))
    if not universe:
        return 1.0  # every row of both is the empty set
    pos = {c: j for j, c in enumerate(universe)}

    def indicator(members: list[list[str]]) -> np.ndarray:  # (V, T) bool
        out = np.zeros((len(members), len(universe)), dtype=bool)
        rows = np.repeat(np.arange(len(members)), [len(m) for m in members])
        out[rows, [pos[t] for m in members for t in m]] = True
        return out

    va, vb = indicator(ma), indicator(mb)
    if len(ma) * len(mb) * len(universe) <= 1 << 24:  # few distinct sets (the usual case): compare sets, not rows
        differ = (va[:, None, :] != vb[None, :, :]).sum(axis=2)  # (Va, Vb) classes the two sets disagree on
        return float(1.0 - differ[a.codes[ia], b.codes[ib]].sum() / (len(ia) * len(universe)))
    return float(np.mean(va[a.codes[ia]] == vb[b.codes[ib]]))
