"""Architecture figures of edgecnn, from its source alone (stdlib only).

Prints the longest functions, how many exceed 60 and 100 lines, how many take 10 or more
parameters, how many imports of edgecnn's own modules happen inside functions, the import
cycles among edgecnn's modules (counting those in-function imports), and lines per package.

Usage: python scripts/archstats.py [REPO_ROOT]
"""

from __future__ import annotations

import ast
import sys
from collections import Counter, defaultdict
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the edgecnn package."""
    found = {}
    for path in sorted((root / "edgecnn").rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a module, or a module's attribute) lies in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


class _Imports(ast.NodeVisitor):
    """edgecnn modules one module imports, and how many of those imports sit inside a function."""

    def __init__(self, module: str, is_package: bool, known: dict[str, Path]):
        self.module, self.is_package, self.known = module, is_package, known
        self.targets: set[str] = set()
        self.in_function = 0
        self._depth = 0

    def visit_FunctionDef(self, node):  # noqa: N802 (ast's naming)
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def _add(self, name: str) -> None:
        target = _resolve(name, self.known)
        if target and target != self.module:
            self.targets.add(target)
            self.in_function += self._depth > 0

    def visit_Import(self, node):  # noqa: N802
        for alias in node.names:
            if alias.name.startswith("edgecnn"):
                self._add(alias.name)

    def visit_ImportFrom(self, node):  # noqa: N802
        base = node.module or ""
        if node.level:
            package = self.module if self.is_package else self.module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        if base.startswith("edgecnn"):
            for alias in node.names:
                self._add(f"{base}.{alias.name}")


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of more than one module that all reach each other (strongly connected components)."""
    reach = {m: _reachable(edges, m) for m in edges}
    found, placed = [], set()
    for m in sorted(edges):
        if m in placed:
            continue
        component = sorted(n for n in reach[m] if m in reach[n])
        placed.update(component)
        if len(component) > 1:
            found.append(component)
    return found


def main(root: Path) -> None:
    known = modules(root)
    functions = []  # (lines, parameters, name)
    edges: dict[str, set[str]] = defaultdict(set)
    in_function = 0
    lines = Counter()
    for name, path in known.items():
        source = path.read_text()
        tree = ast.parse(source)
        parts = name.split(".")
        lines[
            parts[1] if len(parts) > 2 or path.name == "__init__.py" and len(parts) > 1 else "(top level)"
        ] += len(source.splitlines())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                functions.append(
                    (
                        node.end_lineno - node.lineno + 1,
                        len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs),
                        f"{name}:{node.name}",
                    )
                )
        visitor = _Imports(name, path.name == "__init__.py", known)
        visitor.visit(tree)
        edges[name] |= visitor.targets
        in_function += visitor.in_function
    for name in known:
        edges.setdefault(name, set())
    functions.sort(reverse=True)
    print(f"modules {len(known)}, functions {len(functions)}")
    print(
        "longest:",
        ", ".join(f"{n} ({length} lines, {params} parameters)" for length, params, n in functions[:5]),
    )
    over60, over100 = sum(f[0] > 60 for f in functions), sum(f[0] > 100 for f in functions)
    print(f"functions over 60 lines: {over60}, over 100: {over100}")
    print(f"functions with 10 or more parameters: {sum(f[1] >= 10 for f in functions)}")
    print(f"imports of edgecnn modules inside functions: {in_function}")
    found = cycles(edges)
    print(f"import cycles (counting imports inside functions): {len(found)}")
    for component in found:
        print(f"  {len(component)} modules: {', '.join(component)}")
    print("lines per package:", ", ".join(f"{k} {v}" for k, v in sorted(lines.items())))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
