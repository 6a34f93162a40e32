"""No import circle anywhere in the repository (tinysnn/, search/, bench/), counting imports inside
functions and the names a package imports on first use.

The edges are read from the source (ast), not from a running interpreter, so an import that only a
rare path reaches counts too:

* ``import a.b`` and ``from a import b`` where ``a.b`` is a module are edges to the module ``a.b``;
  ``from a import name`` of anything else is an edge to ``a``. (A submodule's parent package runs
  before it in any case, so ``from . import sibling`` is an edge to the sibling, not to the
  package: a package whose ``__init__`` imports its modules is no circle.)
* A package ``__init__`` with a dict literal whose values name its own modules (``search._LAZY``,
  ``tinysnn._PUBLIC``: names imported on first use) has an edge to each of them.
* bench/ is a folder of scripts, not a package: a bare ``import x`` in a script resolves to ``x.py``
  beside it, else in bench/ (the scripts put bench/ on ``sys.path``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tinysnn", "search", "bench")


def module_names(folder: Path) -> Dict[str, Path]:
    """Dotted name of every module under ``folder`` (a folder under ROOT), packages included."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _script_sibling(name: str, path: Path, modules: Dict[str, Path]) -> str:
    """The bench module a bare ``name`` imported by the script ``path`` means ('' if none)."""
    for folder in (path.parent, ROOT / "bench"):
        dotted = ".".join((folder / name).relative_to(ROOT).parts)
        if dotted in modules:
            return dotted
    return ""


def imported(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    script = name.startswith("bench.")
    out: Set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name)
                if script:
                    out.add(_script_sibling(alias.name, path, modules))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            elif script and base not in modules:
                base = _script_sibling(base, path, modules) or base
            for alias in node.names:
                target = f"{base}.{alias.name}"
                out.add(target if target in modules else base)
    if path.name == "__init__.py":  # names imported on first use
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                out.update(f"{name}.{v.value}" for v in node.value.values if isinstance(v, ast.Constant))
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


def repository_edges() -> Dict[str, Set[str]]:
    modules: Dict[str, Path] = {}
    for folder in FOLDERS:
        modules.update(module_names(ROOT / folder))
    return {name: imported(name, path, modules) for name, path in modules.items()}


def test_the_cycle_finder_finds_a_circle_through_an_import_inside_a_function(tmp_path: Path) -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(edges) == [["a", "b", "c"]]
    assert import_cycles(dict(edges, c=set())) == []
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from .pack import sqlite_path\n")
    modules = {"search.pack": module, "search._study": module}
    assert imported("search._study", module, modules) == {"search.pack"}


def test_the_edges_include_first_use_names_and_bench_siblings() -> None:
    edges = repository_edges()
    assert "search.pack" in edges["search.cli"]  # imported inside a function
    assert "search.runner" in edges["search"]  # what the package imports on first use
    assert "tinysnn.train" in edges["tinysnn"]
    assert "bench._common" in edges["bench.accuracy"]  # a bare import of a bench/ sibling
    assert "bench.paper_quant" in edges["bench.accuracy"]
    assert "bench.experiments._constants" in edges["bench.experiments.itq_seeds"]
    assert "tinysnn.sim.numba_kernels" in edges["tinysnn.sim.numba_backend"]  # from . import numba_kernels


def test_the_repository_has_no_import_circle() -> None:
    assert import_cycles(repository_edges()) == []
