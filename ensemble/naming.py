"""Display names that must be told apart (report rows, select candidates): one rule for repeats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence


def unique_names(names: Sequence[str], suffix: Callable[[int, int], str]) -> list[str]:
    """`names` with a suffix on every name that occurs more than once.

    Args:
        names: the names, in order.
        suffix: `(position, occurrence)` -> the text appended to a repeated name (occurrence counts
            from 1 for each name); return "" to keep an occurrence as is.

    Returns:
        The names, repeated ones suffixed; names that occur once are unchanged.
    """
    total = Counter(names)
    seen: Counter[str] = Counter()
    out = []
    for i, n in enumerate(names):
        seen[n] += 1
        out.append(n + suffix(i, seen[n]) if total[n] > 1 else n)
    return out
