"""What the ledger and `ens select` read from a blend's recipe.json (written by `ens blend`).

Only the keys needed here are checked: `classes`, `members`, `method`, and `scores`
(`oof_macro_f1`, `nested_macro_f1` which may be null, `ci95`). Everything else is kept as is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble._io import read_json_object, sha256_file
from ensemble.errors import LedgerError


@dataclass(frozen=True)
class RecipeInfo:
    """A recipe's identity and scores.

    Attributes:
        path: the recipe.json (absolute).
        sha256: hash of its bytes.
        method: blend method.
        classes: class names in index order, or None when absent.
        members: per member `{"name", "oof_sha256", "test_sha256"}`.
        oof_macro_f1: in-sample OOF macro-F1 of the blend.
        nested_macro_f1: nested-CV estimate, None when the method fits nothing.
        ci95: bootstrap CI of the in-sample score, or None.
        raw: the whole recipe.
    """

    path: Path
    sha256: str
    method: str | None
    classes: list[str] | None
    members: list[dict[str, Any]]
    oof_macro_f1: float | None
    nested_macro_f1: float | None
    ci95: tuple[float, float] | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        """The blend's name: its folder."""
        return self.path.parent.name or self.path.stem

    @property
    def folder(self) -> Path:
        """The blend folder, holding oof.csv and test.csv."""
        return self.path.parent

    @property
    def honest(self) -> float | None:
        """The honest estimate: nested when there is one, else the in-sample score (a method that
        fits nothing has no optimism to remove)."""
        return self.nested_macro_f1 if self.nested_macro_f1 is not None else self.oof_macro_f1


def read_recipe(path: str | os.PathLike) -> RecipeInfo:
    """Read a recipe.json (or a blend folder holding one).

    Raises:
        LedgerError: missing file, invalid JSON, or keys of the wrong type.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "recipe.json"
    if not p.is_file():
        raise LedgerError(f"{p}: no such recipe; give the recipe.json that `ens blend` wrote (or its blend folder)")
    raw = read_json_object(p, LedgerError, what="recipe", fix="give the recipe.json that `ens blend` wrote")
    scores = raw.get("scores") or {}
    classes = raw.get("classes")
    members = raw.get("members") or []
    if not isinstance(scores, dict) or not isinstance(members, list) or (
        classes is not None and not isinstance(classes, list)
    ):
        raise LedgerError(f"{p}: recipe keys 'scores', 'members' or 'classes' have the wrong type; rewrite it with `ens blend`")
    ci = scores.get("ci95")
    return RecipeInfo(
        path=p.resolve(),
        sha256=sha256_file(p),
        method=raw.get("method"),
        classes=[str(c) for c in classes] if classes is not None else None,
        members=[
            {k: m.get(k) for k in ("name", "oof_sha256", "test_sha256")} for m in members if isinstance(m, dict)
        ],
        oof_macro_f1=_score(scores, "oof_macro_f1", p),
        nested_macro_f1=_score(scores, "nested_macro_f1", p),
        ci95=(float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None,
        raw=raw,
    )


def _score(scores: dict[str, Any], key: str, p: Path) -> float | None:
    v = scores.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise LedgerError(f"{p}: recipe scores.{key} is {v!r}, expected a number or null; rewrite it with `ens blend`")
    return float(v)
