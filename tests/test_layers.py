"""The packages form layers: the kernel (`core`) imports no feature package, features
import only the kernel and the features below them, and no two packages import each
other, directly or round a loop. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "core"
FEATURES = ["crm", "routing", "cti", "transcripts", "reports", "webhooks", "privacy",
            "quality", "agent_console", "admin", "demo"]
ASSEMBLER = "callcenter"
PACKAGES = [KERNEL, *FEATURES, ASSEMBLER]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each package this one imports, with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


GRAPH = {package: imported_packages(package) for package in PACKAGES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A loop of packages, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_loop_and_only_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_package_level_import_cycle() -> None:
    cycle = find_cycle({p: set(deps) for p, deps in GRAPH.items()})
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_the_kernel_imports_no_feature_package() -> None:
    assert GRAPH[KERNEL] == {}, GRAPH[KERNEL]


@pytest.mark.parametrize("feature", FEATURES)
def test_a_feature_imports_only_the_kernel_and_features_below_it(feature: str) -> None:
    allowed = {KERNEL, *FEATURES[:FEATURES.index(feature)]}
    wrong = {p: sorted(files) for p, files in GRAPH[feature].items() if p not in allowed}
    assert not wrong, f"{feature} imports packages above it: {wrong}"


def test_nothing_imports_the_assembler() -> None:
    importers = [p for p in PACKAGES if ASSEMBLER in GRAPH[p]]
    assert importers == [], importers
