"""The shape of the code, checked by parsing it: public API only, no cycles, no name branches.

These read the source with ``ast`` (not by searching text), so a comment or a
string mentioning a private module is not a violation, and an import inside
a function is.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.registry import FAMILIES, MODES, PROTOCOLS, TUNNELS

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "testbed"


def _python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, absolute module, imported name or None) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(REPO).parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                yield node.lineno, module, alias.name


def _private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


@pytest.mark.parametrize("path", _python_files("conformance", "loadgen"), ids=str)
def test_suite_and_tools_use_only_the_public_api(path: Path) -> None:
    """conformance/ and loadgen/ import testbed only through each subpackage's __all__."""
    problems = []
    for line, module, name in _imports(path):
        if module != "testbed" and not module.startswith("testbed."):
            continue
        where = f"{path.relative_to(REPO)}:{line}"
        if _private(module):
            problems.append(f"{where}: private module {module}")
            continue
        if name is None:
            continue
        if name.startswith("_"):
            problems.append(f"{where}: private name {module}.{name}")
            continue
        exported = getattr(importlib.import_module(module), "__all__", None)
        submodule = f"{module}.{name}"
        if exported is not None and name not in exported and not _is_module(submodule):
            problems.append(f"{where}: {module}.{name} is not in {module}.__all__")
    assert not problems, "\n".join(problems)


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def test_the_public_api_check_would_catch_a_private_import(tmp_path: Path) -> None:
    """The check above parses imports: a private one, even inside a function, is found."""
    sample = REPO / "conformance" / "_sample_for_test.py"
    sample.write_text("def f():\n    from testbed.cluster._cleanup import crash\n")
    try:
        found = [m for _, m, _ in _imports(sample) if _private(m)]
    finally:
        sample.unlink()
    assert found == ["testbed.cluster._cleanup"]


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "testbed" and len(parts) > 1 else None


def _subpackage_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _python_files("testbed"):
        rel = path.relative_to(REPO).parts
        if len(rel) < 3:  # testbed/__init__.py: the facade imports its subpackages
            continue
        here = rel[1]
        graph.setdefault(here, set())
        for _, module, name in _imports(path):
            target = _subpackage(
                module if name is None or module != "testbed" else f"testbed.{name}"
            )
            if target and target != here:
                graph[here].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_subpackages_form_layers_without_cycles() -> None:
    """testbed's subpackages import each other in one direction only (imports inside
    functions count too)."""
    graph = _subpackage_graph()
    assert set(graph) >= {"util", "registry", "topology", "net", "cluster", "observe", "cli"}
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"
    assert not graph["util"] and graph["registry"] <= {"util"}


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


NAMES = {n for reg in (MODES, PROTOCOLS, FAMILIES, TUNNELS) for n in reg}


def _name_branches(path: Path, root: Path = REPO) -> Iterator[str]:
    """Comparisons with a registry entry's name, and dicts keyed by them: branching on a
    mode (protocol, family, tunnel) instead of reading its entry."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for part in (node.left, *node.comparators):
                consts = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
                for c in consts:
                    if isinstance(c, ast.Constant) and c.value in NAMES:
                        yield f"{path.relative_to(root)}:{node.lineno}: compares with {c.value!r}"
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & NAMES) >= 2:
                yield f"{path.relative_to(root)}:{node.lineno}: a dict keyed by {sorted(keys)}"


def test_no_code_branches_on_a_registered_name() -> None:
    """Everything that differs between modes, protocols, families or tunnels is an
    attribute of their entry; code outside the registry never compares names."""
    files = [p for p in _python_files("testbed", "conformance") if "registry" not in p.parts]
    problems = [problem for p in files for problem in _name_branches(p)]
    assert not problems, "\n".join(problems)


def test_the_name_branch_check_would_catch_one(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text('if mode == "nat":\n    pass\nkinds = {"nat": 1, "dr": 2}\n')
    assert len(list(_name_branches(sample, root=tmp_path))) == 2


def test_repo_is_the_checkout_root() -> None:
    """Programs run with the checkout as working directory: loadgen must be found there."""
    from testbed.util import REPO

    assert (REPO / "loadgen" / "server.py").is_file()
    assert (REPO / "topologies").is_dir()
