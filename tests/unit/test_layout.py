"""The layout's rules, checked (issue 16): no import cycles among ledgerd's modules, data flows one way
(domain imports nothing of projections or service, projections nothing of service), and no module is
over ~400 lines except the few the README's layout section names and says why."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "projections", "service")
MAX_LINES = 420  # "about 400"
# module -> why it is one thing (the README's layout section says the same)
LONG_MODULES: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "ledgerd." + ".".join(parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, path: Path) -> Iterator[str]:
    """The ledgerd modules `name` imports, wherever in the file (a function-level import is still a
    dependency), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from package import module` depends on that module; `from module import name`, on the module
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            names = len(submodules) < len(node.names)
            targets = [*submodules, *([base] if names else [])]
        else:
            continue
        yield from (target for target in targets if target in MODULES and target != name)


GRAPH = {name: set(imported(name, path)) for name, path in MODULES.items()}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_imports() -> None:  # the checks below would pass vacuously on an empty graph
    assert len(MODULES) > 50
    assert "ledgerd.domain.money" in GRAPH["ledgerd.domain.validation"]


def test_no_import_cycles() -> None:
    assert cycles() == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("ledgerd.domain", ("ledgerd.projections", "ledgerd.service")),
        ("ledgerd.projections", ("ledgerd.service",)),
    ],
)
def test_data_flows_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    wrong = {
        (name, target)
        for name, targets in GRAPH.items()
        if name == package or name.startswith(package + ".")
        for target in targets
        if target.startswith(forbidden)
    }
    assert wrong == set()


def test_the_domain_does_no_io() -> None:
    io = ("asyncpg", "aiohttp", "structlog", "socket", "os", "subprocess", "logging")
    for name, path in MODULES.items():
        if name.startswith("ledgerd.domain"):
            tree = ast.parse(path.read_text())
            used = {
                alias.name.split(".")[0]
                for node in ast.walk(tree)
                if isinstance(node, ast.Import)
                for alias in node.names
            }
            used |= {
                (node.module or "").split(".")[0]
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
            }
            assert not used & set(io), name


def test_modules_are_small_or_named_as_one_thing() -> None:
    long = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    over = {name: lines for name, lines in long.items() if lines > MAX_LINES and name not in LONG_MODULES}
    assert over == {}
    stale = {name for name in LONG_MODULES if long.get(name, 0) <= MAX_LINES}
    assert stale == set()  # an exception that is no longer needed is taken off the list
