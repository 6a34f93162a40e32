"""The search package has no import circle, counting imports inside functions and the names the
package imports on first use (``search.__init__``)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import search

ROOT = Path(__file__).resolve().parents[2]


def _module_names(package: Path) -> Dict[str, Path]:
    """Dotted name of every module of ``package`` (a folder under ROOT), the package itself included."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The modules of ``modules`` that module ``name`` imports anywhere in its file (functions too).

    ``from pkg import x`` is an edge to ``pkg.x`` when that is a module, else to ``pkg`` itself.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                out.add(target if target in modules else base)
    return {m for m in out if m in modules and m != name}


def import_cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def _search_edges() -> Dict[str, Set[str]]:
    modules = _module_names(ROOT / "search")
    edges = {name: _imported(name, path, modules) for name, path in modules.items()}
    edges["search"] |= {f"search.{module}" for module in search._LAZY.values()}  # imported on first use
    return edges


def test_the_cycle_finder_finds_a_circle_through_an_import_inside_a_function(tmp_path: Path) -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(edges) == [["a", "b", "c"]]
    assert import_cycles(dict(edges, c=set())) == []
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from .pack import sqlite_path\n")
    modules = {"search.pack": module, "search._study": module}
    assert _imported("search._study", module, modules) == {"search.pack"}


def test_search_has_no_import_circle() -> None:
    edges = _search_edges()
    assert "search.pack" in edges["search.cli"]  # imported inside a function: the edges include those
    assert "search.runner" in edges["search"]  # and what the package imports on first use
    assert import_cycles(edges) == []
