"""One rule for display names that repeat (report rows, select candidates)."""

from __future__ import annotations

from ensemble.naming import unique_names


def test_only_repeated_names_get_a_suffix_and_occurrences_count_per_name():
    names = ["a", "b", "a", "c", "a", "b"]
    got = unique_names(names, lambda i, n: "" if n == 1 else f"#{n}")
    assert got == ["a", "b", "a#2", "c", "a#3", "b#2"]
    assert len(set(got)) == len(got)
    tagged = unique_names(names, lambda i, n: f" ({i + 1})")
    assert tagged == ["a (1)", "b (2)", "a (3)", "c", "a (5)", "b (6)"]  # "c" occurs once: unchanged
    assert unique_names([], lambda i, n: "x") == []
