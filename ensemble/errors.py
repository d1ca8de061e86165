"""The `EnsembleError` family: every user-facing failure of the library.

Each message says what went wrong, where (file, column, id, key), and the fix, on one line. The
library raises these and never prints or exits; `ensemble.cli` turns them into one red line on
stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class EnsembleError(Exception):
    """Base class of every error a user can cause."""


class TableError(EnsembleError):
    """A prediction table is malformed: ids, class columns or probabilities."""


class AlignmentError(EnsembleError):
    """Tables (or tables and labels) do not cover the same ids."""


class ClassMismatchError(EnsembleError):
    """Tables, labels or checkpoints disagree on the classes."""


class LabelError(EnsembleError):
    """A labels / data CSV is malformed: columns, labels, folds or paths."""


class UnknownNameError(EnsembleError):
    """A name (method, view, metric, ...) is not in its registry."""


class OutputExistsError(EnsembleError):
    """An output exists and `force` was not given."""


class OutputError(EnsembleError):
    """An output path cannot be written: no permission, a file in the way, a folder where a file goes."""


class ConfigError(EnsembleError):
    """A model card or a combination of options is invalid."""


class ModelLoadError(EnsembleError):
    """A checkpoint or ONNX model cannot be loaded into the requested model."""


class DataError(EnsembleError):
    """An image is missing or cannot be decoded."""


class LedgerError(EnsembleError):
    """The submission ledger is unreadable or a request to it is invalid."""


def preview(items: Iterable[object], total: int | None = None, k: int = 5) -> str:
    """Format a few offending items and how many there are, for an error message.

    Args:
        items: the offending items (only the first `k` are shown).
        total: how many there are in all; counted from `items` when None.
        k: how many to show.

    Returns:
        e.g. ``'"00042", "00043" and 17 more (19 in all)'``.
    """
    items = list(items)
    total = len(items) if total is None else total
    shown = ", ".join(repr(str(x)).replace("'", '"') for x in items[:k])
    if total > k:
        return f"{shown} and {total - k} more ({total} in all)"
    return shown


def unknown_name(kind: str, name: str, choices: Sequence[str]) -> UnknownNameError:
    """Build the error for a name that is not one of `choices`."""
    return UnknownNameError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}")


class DuplicateSubmissionError(LedgerError):
    """A submission's predictions are identical to an earlier one and duplicates were refused."""


class ExportError(EnsembleError):
    """An ONNX export failed, or the exported model disagrees with torch beyond the tolerance."""


class MetricError(EnsembleError):
    """Inputs to a metric disagree: lengths, shapes, or labels outside the classes."""


class DistributedError(EnsembleError):
    """A rank of a distributed run failed (or stopped because another one did).

    Every rank raises it so that every process exits with the same status; only rank 0's copy is
    shown (`silent` on the others), so a run prints its one line once.
    """

    def __init__(self, message: str, *, silent: bool = False) -> None:
        super().__init__(message)
        self.silent = silent
