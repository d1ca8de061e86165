"""Every error text a user can see is asserted by some test (STYLE habit 7).

The library's user-facing errors are the `EnsembleError` family. This test walks `ensemble/` with
`ast`, finds every place that builds one (a `raise` of anything but a built-in exception or
`typer.Exit`, and every call of an error class or of a function that returns one), and takes the
literal text of its message: the string pieces between the f-string's placeholders. A site counts
as tested when one of its distinctive pieces appears in a string literal of some test file (regex
backslashes removed, so ``match=r"no rows \\(only"`` counts). Distinctive means a piece of at least
`DISTINCT` characters or, when the message has none, its longest piece if that has at least
`SHORTEST` characters; a message with no such piece (``f"{where}: {what}"``) is a template whose
text comes from its callers, which are sites of their own.

Run ``python -m tests.test_error_texts`` to list the untested sites.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ensemble"
TESTS = ROOT / "tests"
DISTINCT = 20
SHORTEST = 10

# Raised names that are not user-facing: Python's own exceptions mark programming errors.
NOT_USER_FACING = {name for name in dir(builtins) if name.endswith(("Error", "Exception"))} | {
    "Exit",  # typer.Exit carries an exit code, not a message
}
BUILDERS = {"unknown_name", "output_error", "fail"}  # helpers that return an EnsembleError

# Sites no test can reach, keyed by "path" (every site in it, or under it when it ends with "/")
# or "path :: a piece of the message"; each with the reason.
ALLOWED: dict[str, str] = {
    "ensemble/metrics/file.py :: not importable as Python": "a guard: importlib finds a loader for every existing .py path",
}


@dataclass(frozen=True)
class Site:
    """One place in the library that builds a user-facing error."""

    path: str  # relative to the repository root
    line: int
    pieces: tuple[str, ...]  # the message's literal text, split at placeholders

    @property
    def distinctive(self) -> tuple[str, ...]:
        long = tuple(p for p in self.pieces if len(p) >= DISTINCT)
        if long:
            return long
        longest = max(self.pieces, key=len, default="")
        return (longest,) if len(longest) >= SHORTEST else ()

    @property
    def message(self) -> str:
        return " … ".join(self.pieces)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _name(func: ast.expr) -> str:
    """`ConfigError` for `ConfigError(...)`, `errors.ConfigError(...)` and `r.fail(...)` → `fail`."""
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _pieces(call: ast.Call) -> tuple[str, ...]:
    """The literal text of a call's arguments, split where values are substituted."""
    pieces: list[str] = []
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        for node in ast.walk(arg):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                pieces += (p.strip() for p in re.split(r"[{}]", node.value))
    return tuple(p for p in pieces if p)


def _trees() -> list[tuple[str, ast.Module]]:
    return [
        (p.relative_to(ROOT).as_posix(), ast.parse(p.read_text(encoding="utf-8")))
        for p in sorted(PACKAGE.rglob("*.py"))
    ]


def _error_names(trees: list[tuple[str, ast.Module]]) -> set[str]:
    """Names of error classes (subclasses of EnsembleError) and of functions returning one."""
    classes = {"EnsembleError"}
    grew = True
    while grew:  # subclasses of subclasses, wherever they are defined
        found = {
            node.name
            for _, tree in trees
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and any(_name(b) in classes for b in node.bases)
        }
        grew = not found <= classes
        classes |= found
    builders = {
        node.name
        for _, tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.returns is not None and _name(node.returns) in classes
    }
    return classes | builders | BUILDERS


@cache
def error_sites() -> tuple[Site, ...]:
    """Every call that builds or raises a user-facing error and has text of its own."""
    trees = _trees()
    makers = _error_names(trees)
    sites = []
    for path, tree in trees:
        raised = {
            id(node.exc)
            for node in ast.walk(tree)
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
            and _name(node.exc.func) not in NOT_USER_FACING
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (id(node) in raised or _name(node.func) in makers):
                site = Site(path, node.lineno, _pieces(node))
                if site.distinctive:
                    sites.append(site)
    return tuple(sorted(set(sites), key=lambda s: (s.path, s.line)))


@cache
def corpus() -> tuple[str, ...]:
    """Every string literal of the tests (but this file's), backslashes removed."""
    texts = []
    for p in sorted(TESTS.rglob("*.py")):
        if p.resolve() == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value.replace("\\", ""))
    return tuple(texts)


def _windows(text: str) -> set[str]:
    return {text[i : i + DISTINCT] for i in range(len(text) - DISTINCT + 1)}


@cache
def _tested_windows() -> frozenset[str]:
    """The `DISTINCT`-character windows of the test strings that belong to one message only.

    A window shared by two different messages ("; give at least one positive weight") tells
    nothing about which of them a test saw, so it counts for neither.
    """
    seen = set().union(*map(_windows, corpus()))
    return _own_windows() & seen


@cache
def _own_windows() -> frozenset[str]:
    """The `DISTINCT`-character windows of error texts that occur in one message only."""
    owners: dict[str, set[str]] = {}
    for site in error_sites():
        for piece in site.pieces:
            for w in _windows(piece):
                owners.setdefault(w, set()).add(site.message)
    return frozenset(w for w, messages in owners.items() if len(messages) == 1)


def is_tested(site: Site) -> bool:
    """Whether a test string holds `DISTINCT` characters in a row of this message's own text
    (or the whole of its longest piece, when every piece is shorter)."""
    for piece in site.distinctive:
        if len(piece) < DISTINCT:
            if any(piece in text for text in corpus()):
                return True
        elif not _windows(piece).isdisjoint(_tested_windows()):
            return True
        elif _windows(piece).isdisjoint(_own_windows()) and any(piece in text for text in corpus()):
            return True  # every window is shared with other messages: the whole piece must appear
    return False


def allowed_by(site: Site) -> str | None:
    """The allow-list key that excuses `site`, if any."""
    for key in ALLOWED:
        path, _, fragment = (part.strip() for part in key.partition("::"))
        in_path = site.path.startswith(path) if path.endswith("/") else site.path == path
        if in_path and (not fragment or fragment in site.message):
            return key
    return None


def untested_sites() -> list[Site]:
    return [s for s in error_sites() if allowed_by(s) is None and not is_tested(s)]


def test_the_walk_finds_the_error_sites():
    """Guard the walker itself: it must see the raise forms the package uses."""
    texts = {piece for site in error_sites() for piece in site.pieces}
    for known in (
        "no such recipe",  # raise ConfigError(f"...")
        "cannot write",  # return OutputError(...) inside output_error
        "not valid JSON",  # raise error(...) with an error class passed in
        "the ledger is unreadable",  # a builder annotated to return a LedgerError
    ):
        assert any(known in t for t in texts), known
    assert len(error_sites()) > 200


def test_every_user_facing_error_text_is_asserted_by_a_test():
    missing = untested_sites()
    assert not missing, (
        f"{len(missing)} user-facing error texts are asserted by no test; assert a distinctive "
        f"piece (>= {DISTINCT} characters) of each, or add it to ALLOWED with the reason:\n"
        + "\n".join(map(str, missing))
    )


def test_the_allow_list_names_live_sites_only():
    keys_used = {allowed_by(s) for s in error_sites()}
    stale = [key for key in ALLOWED if key not in keys_used]
    assert not stale, f"ALLOWED entries that match no error site (remove them): {stale}"
    tested = [str(s) for s in error_sites() if "::" in (allowed_by(s) or "") and is_tested(s)]
    assert not tested, f"allow-listed sites that a test now asserts (remove them from ALLOWED): {tested}"


if __name__ == "__main__":
    for site in untested_sites():
        print(site)
