"""Layers import downward only: motion -> animation -> export -> realtime / training -> the CLI."""
from __future__ import annotations

import ast

from conftest import ROOT

RANK = {"motion": 0, "animation": 1, "export": 2, "realtime": 3, "training": 3}


def imported_packages(source: str) -> set[str]:
    """Top-level names of every import in a module, function-level (lazy) imports included."""
    names = set()
    for node in ast.walk(ast.parse(source)):
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
