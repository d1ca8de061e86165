"""The import plan: no circle among the package's module-level imports, and names private to a package stay in it."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ensemble"


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of the imports run when the module loads: not inside functions or TYPE_CHECKING."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for n in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                out.append((n.module, [a.name for a in n.names]))
            elif isinstance(n, ast.Import):
                out += [(a.name, []) for a in n.names]
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, p in modules.items():
        for target, names in _function_imports(p):
            if not target.startswith("ensemble"):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            graph[m] |= set(subs) or ({target} if target in modules else set())
    return graph


def test_imports_form_no_circle():
    """Lazy imports inside functions count too (a circle through them breaks as soon as both load)."""
    graph = _graph()
    assert "ensemble.report.similarity" in graph["ensemble.report.core"]  # the walk sees imports
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if t == m or m.startswith(t + "."):  # a module importing its own (initialising) package: no circle
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, " -> ".join(cycle)


def test_private_names_are_not_imported_across_packages():
    offenders = []
    for p in PKG.rglob("*.py"):
        here = _module(p)
        package = here if p.name == "__init__.py" else here.rpartition(".")[0]
        for target, names in [*_top_level_imports(p), *_function_imports(p)]:
            if not target.startswith("ensemble"):
                continue
            home = target.rpartition(".")[0] if target.rpartition(".")[2].startswith("_") else target
            private = [n for n in names if n.startswith("_")] + ([target] if target.rpartition(".")[2].startswith("_") else [])
            if private and not (package == home or package.startswith(home + ".") or home.startswith(package)):
                offenders.append(f"{here}: {', '.join(private)} from {target}")
    assert not offenders, offenders


def _function_imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of the module, in functions too, but not those only for type checkers."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    return [(n.module, [a.name for a in n.names]) for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and id(n) not in typing_only]
