"""`TargetFormat`: the submission's target spellings, in a module without heavy imports (the CLI's choices)."""

from __future__ import annotations

from enum import Enum


class TargetFormat(str, Enum):
    """How the submission writes its target (`--target-format`).

    One class per row (multiclass): `name` and `labels` write the argmax class name, `index` its
    index. A set of classes per row (multi-label: the classes with p > 0.5): `name` and `labels`
    write their class names joined by the submission's label separator (a space by default),
    `index` their indices joined the same way. `probs` writes one probability column per class
    for either task.
    """

    NAME = "name"
    INDEX = "index"
    PROBS = "probs"  # one probability column per class, named by class (log-loss competitions)
    LABELS = "labels"  # the predicted class names (joined, for a multi-label table): `name` spelled for label sets
