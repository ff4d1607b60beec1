"""The package's layers: no subpackage imports another that imports it back (issue 19).

Every ``import meddiff_lab.X...`` is counted, at the top of a module or inside a function, so a cycle
cannot hide behind an in-function import. Top-level modules (``runtime``, ``checkpoint``, ...) count
as layers of their own.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import meddiff_lab

PACKAGE = Path(meddiff_lab.__file__).resolve().parent

#: (module, subpackage it imports) edges that still close a cycle, each with its way out; remove a line
#: when its import goes. None is left: metrics/ measures and imports nothing from training/, which trains
#: (the segmenter, the domain encoder, the instruments) and imports metrics/ (issue 19).
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


def _edges() -> dict[tuple[str, str], set[str]]:
    """(importing layer, imported layer) -> the modules (paths under the package) that make that edge."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "meddiff_lab" and len(parts) > 1 and parts[1] != source:
                    edges[(source, parts[1])].add(relative.as_posix())
    return edges


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_subpackages():
    graph: dict[str, set[str]] = defaultdict(set)
    for (source, target), modules in _edges().items():
        if modules - {module for module, layer in KNOWN_CYCLE_EDGES if layer == target}:
            graph[source].add(target)
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle between subpackages: {' -> '.join(cycle)}"


def test_models_import_nothing_from_training():
    assert not _edges().get(("models", "training")), "models/ must not import training/ (training builds models)"


def test_metrics_import_nothing_from_training():
    assert not _edges().get(("metrics", "training")), (
        "metrics/ must not import training/ (training trains the instruments and evaluates with the metrics)"
    )


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
