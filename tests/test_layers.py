"""Layers import downward only: motion -> core -> export -> realtime / training -> app -> the CLI."""
from __future__ import annotations

import ast

from conftest import ROOT

RANK = {"motion": 0, "core": 1, "export": 2, "realtime": 3, "training": 3, "app": 4}


def imported_packages(source: str, lazy: bool = True) -> set[str]:
    """Top-level names of every import in a module, function-level (lazy) imports included unless not `lazy`."""
    names = set()
    tree = ast.parse(source)
    for node in ast.walk(tree) if lazy else tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_scanner_sees_lazy_and_dotted_imports():
    assert imported_packages("import a.b\ndef f():\n    from c.d import e\n") == {"a", "c"}


def test_packages_import_only_lower_layers():
    upward = []
    for package, rank in RANK.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in imported_packages(path.read_text()):
                if name in RANK and name != package and RANK[name] >= rank:
                    upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert upward == []


def module_imports(source: str) -> set[str]:
    """Dotted names of every module a file imports (lazy imports included), as written."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from where the walk closed it)."""
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                cycles.append(path[path.index(child):] + [child])
            elif child not in state:
                visit(child, path + [child])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_cycle_finder_finds_a_planted_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    """No import circle between our modules (e.g. export backends -> quantize -> bench -> backends)."""
    graph = {}
    for package in RANK:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            graph[module] = {name for name in module_imports(path.read_text()) if name.split(".")[0] in RANK}
    assert import_cycles(graph) == []
