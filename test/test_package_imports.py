"""The package's import graph: no cycles (lazy imports inside functions count too), and runtime
packages never import test doubles or benchmark/evaluation code.

The graph is read from the source with ``ast`` (nothing is imported): a node per module of
``httm_ros``, an edge for every ``import``/``from ... import`` of another ``httm_ros`` module,
wherever it sits in the file. ``from pkg import name`` points at ``pkg.name`` when that is a module,
else at ``pkg`` itself (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "httm_ros"


def _module_names() -> Dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _package_of(name: str) -> str:
    """The package a module's relative imports are resolved against."""
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _resolve(base: str, level: int, target: str) -> str:
    if level == 0:
        return target
    parts = base.split(".")
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def _edges(name: str) -> Set[str]:
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    out: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(_package_of(name), node.level, node.module or "")
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:          # `import httm_ros.x.y` of a name inside a module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: _edges(name) for name in MODULES}


def _find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle as a list of modules (first == last), or [] (iterative DFS, colours)."""
    colour: Dict[str, int] = {}
    for start in sorted(graph):
        if colour.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not colour.get(nxt):
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return []


def test_cycle_finder_finds_a_planted_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_imports():
    src = "def f():\n    from .attention import plans\n"
    tree = ast.parse(src)
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    assert len(GRAPH) > 50 and sum(map(len, GRAPH.values())) > 50


def test_no_import_cycles():
    cycle = _find_cycle(GRAPH)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


RUNTIME = ("httm_ros.vggt", "httm_ros.httm", "httm_ros.pipeline", "httm_ros.ros")
NOT_FOR_RUNTIME = ("httm_ros.bench", "httm_ros.eval", "httm_ros.synthetic")


@pytest.mark.parametrize("package", RUNTIME)
def test_runtime_packages_do_not_import_tests_benchmarks_or_ground_truth(package):
    bad = sorted((m, t) for m, ts in GRAPH.items() if m == package or m.startswith(package + ".")
                 for t in ts if t.startswith(NOT_FOR_RUNTIME))
    assert not bad, f"{package} imports benchmark/evaluation/synthetic code: {bad}"


def test_every_module_name_means_one_thing():
    """No two modules of the package share a file name (``__init__``/``__main__`` aside): ``cli``,
    ``stats``, ``bench`` or ``config`` in several packages made readers guess which one is meant."""
    names: Dict[str, List[str]] = {}
    for name, path in MODULES.items():
        if path.name not in ("__init__.py", "__main__.py"):
            names.setdefault(path.stem, []).append(name)
    repeated = {stem: mods for stem, mods in names.items() if len(mods) > 1}
    assert not repeated, f"module names used twice: {repeated}"
