"""The task of a model and its tables: one class per row (`multiclass`) or a set of classes (`multilabel`).

A light module (the CLI reads it at start-up): numpy loads inside the functions.

- `multiclass`: logits go through a softmax; a table's rows are probabilities summing to 1;
  labels are one class per row, `y` int64 of shape (n_samples,).
- `multilabel`: logits go through a sigmoid, per class; each value is a probability in [0, 1] and
  rows sum to anything; labels are sets of classes (`a|b`, an empty cell for none), `y` an
  indicator matrix uint8 of shape (n_samples, n_classes). A class is predicted when its
  probability is above its threshold (0.5 unless tuned: strictly above, `p > t`).

Every recorded table says its task in its sidecar (`"task"`); a table without one is multiclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ensemble.errors import ConfigError, TableError

if TYPE_CHECKING:
    import numpy as np

MULTICLASS = "multiclass"
MULTILABEL = "multilabel"
TASKS = (MULTICLASS, MULTILABEL)
DEFAULT_THRESHOLD = 0.5
LABEL_SEP = "|"  # what joins several classes in a multi-label labels CSV (`--label-sep`)


def check_task(task: object, where: str) -> str:
    """`task` if it is one of TASKS, else one line naming where it was read and the choices.

    Raises:
        ConfigError: an unknown task.
    """
    if task not in TASKS:
        raise ConfigError(f"{where}: task {task!r} is not one of {', '.join(TASKS)}; write task = \"multiclass\" or \"multilabel\"")
    return str(task)


def task_of_meta(meta: dict[str, Any], source: str) -> str:
    """The task a sidecar records (multiclass when it records none).

    Raises:
        TableError: the sidecar records an unknown task.
    """
    task = meta.get("task", MULTICLASS)
    if task not in TASKS:
        raise TableError(f"{source}: the sidecar's task {task!r} is not one of {', '.join(TASKS)}; fix or delete the sidecar")
    return str(task)


def common_task(tasks: list[tuple[str, str]]) -> str:
    """The one task of several tables, given as (source, task) pairs.

    Raises:
        TableError: the tables mix tasks (names one of each).
    """
    found = sorted({t for _, t in tasks})
    if len(found) > 1:
        example = {t: next(s for s, v in tasks if v == t) for t in found}
        raise TableError(
            f"tables mix tasks: {example[MULTICLASS]} is multiclass (softmax) but {example[MULTILABEL]} is "
            "multilabel (sigmoid); blend or compare tables of one task"
        )
    return found[0] if found else MULTICLASS


def activate(logits: np.ndarray, task: str) -> np.ndarray:
    """Probabilities from logits (float64 (n, C)): a row softmax (multiclass) or an elementwise sigmoid (multilabel)."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    if task == MULTILABEL:
        return sigmoid(z)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z) elementwise in float64, without overflow and exact in the tails (e^-40, not 0)."""
    import numpy as np

    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    with np.errstate(invalid="ignore"):  # NaN stays NaN (callers refuse it)
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def decisions(probs: np.ndarray, thresholds: np.ndarray | float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Multi-label decisions: bool (n, C), a class predicted when its probability is strictly above its threshold."""
    import numpy as np

    return np.asarray(probs) > np.asarray(thresholds, dtype=np.float64)
