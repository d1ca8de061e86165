"""`TargetFormat`: the submission's target spellings, in a module without heavy imports (the CLI's choices)."""

from __future__ import annotations

from enum import Enum


class TargetFormat(str, Enum):
    """How the submission writes its target: the class name or the class index (`--target-format`)."""

    NAME = "name"
    INDEX = "index"
    PROBS = "probs"  # one probability column per class, named by class (log-loss competitions)
