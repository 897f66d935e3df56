"""The library's folders are its layers: the import graph of ``mhvae_perception/`` (read with ``ast``, imports
inside functions included) has no circle and no import from a lower layer to a higher one."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "mhvae_perception"
PACKAGE = "mhvae_perception"
#: rank of each top-level part; a module may import only parts of a lower rank (and its own part)
LAYERS = {"version": 0, "hashing": 0, "folderlock": 0, "progress": 0, "models": 1, "data": 2, "evaluation": 3, "hub": 3, "wrappers": 4,
          "experiment": 4, "_deprecated": 4, "__init__": 5}
MAX_LINES = 400


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE_DIR) -> set[str]:
    """Every module of the package that ``path`` imports (absolute names), wherever the import statement is."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import x` names a submodule
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """module -> the package's modules it imports (a package's ``__init__`` counts as the package)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        edges = set()
        for target in imports_of(path, root):
            while target and target not in files:  # `from .x import Name`: Name is not a module
                target = target.rpartition(".")[0]
            # importing a.b.c runs a.b's __init__ first: an edge to every enclosing package that is not ours
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                enclosing = ".".join(parts[:i])
                if enclosing in files and enclosing != name and not name.startswith(enclosing + "."):
                    edges.add(enclosing)
        graph[name] = edges
    return graph


def part_of(module: str) -> str:
    rest = module[len(PACKAGE) + 1:] if module != PACKAGE else "__init__"
    return rest.split(".")[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        here = part_of(module)
        for target in targets:
            there = part_of(target)
            if there != here and LAYERS[there] >= LAYERS[here]:
                bad.append(f"{module} ({here}, layer {LAYERS[here]}) imports {target} ({there}, layer {LAYERS[there]})")
    return sorted(bad)


def test_every_part_has_a_layer():
    graph = import_graph()
    assert {part_of(m) for m in graph} <= set(LAYERS), "a new top-level module or package needs a layer in LAYERS"


def test_no_import_circle():
    assert find_cycle(import_graph()) is None


def test_no_import_from_a_lower_layer_to_a_higher_one():
    assert upward_imports(import_graph()) == []


def test_no_module_over_400_lines_without_a_stated_reason():
    long = [f"{p.relative_to(PACKAGE_DIR)}: {n} lines" for p in PACKAGE_DIR.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES
            and "over 400 lines because" not in (ast.get_docstring(ast.parse(p.read_text())) or "")]
    assert long == []


@pytest.fixture
def toy_package(tmp_path: Path) -> Path:
    """A package with a circle (a -> b -> a) and an upward import (models -> wrappers)."""
    root = tmp_path / PACKAGE
    (root / "models").mkdir(parents=True)
    (root / "wrappers").mkdir()
    (root / "__init__.py").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "wrappers" / "__init__.py").write_text("")
    (root / "models" / "a.py").write_text("from .b import thing\n")
    (root / "models" / "b.py").write_text("def f():\n    from . import a\n    from ..wrappers import w\n")
    (root / "wrappers" / "w.py").write_text("from ..models.a import thing\n")
    return root


def test_the_checks_see_a_circle_and_an_upward_import(toy_package: Path):
    graph = import_graph(toy_package)
    assert graph[f"{PACKAGE}.models.b"] == {f"{PACKAGE}.models.a", f"{PACKAGE}.wrappers", f"{PACKAGE}.wrappers.w"}
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) >= {f"{PACKAGE}.models.a", f"{PACKAGE}.models.b"}
    assert any("models.b (models, layer 1) imports mhvae_perception.wrappers" in line for line in upward_imports(graph))


def test_old_import_paths_are_the_new_modules_with_a_deprecation_warning():
    import importlib
    import sys

    import mhvae_perception.data.collect as new

    sys.modules.pop(f"{PACKAGE}.collect", None)
    with pytest.warns(DeprecationWarning, match=r"mhvae_perception\.collect is deprecated.*mhvae_perception\.data\.collect"):
        old = importlib.import_module(f"{PACKAGE}.collect")
    assert old is new
