"""The layers of the project import downwards only, and no module imports itself back through others.

data_pipeline (data in) <- mrdib_tf (the library) <- mrdib_tf.experiments (run tooling) <- trainers (commands).
Read from the source with `ast`, so a violation fails here without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_pipeline", "mrdib_tf", "trainers")
#: layer -> the layers it must never import.
FORBIDDEN = {
    "data_pipeline": ("mrdib_tf", "trainers"),
    "mrdib_tf": ("mrdib_tf.experiments", "trainers"),
    "mrdib_tf.experiments": ("trainers",),
    "trainers": (),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The project modules `name` imports (anywhere in its body), as module names."""
    is_package = MODULES[name].name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def _layer(name: str) -> str:
    return "mrdib_tf.experiments" if name.startswith("mrdib_tf.experiments") else name.split(".")[0]


def test_the_module_scan_sees_every_layer():
    assert {_layer(m) for m in MODULES} == set(FORBIDDEN)
    assert "mrdib_tf.regularizer" in _imports("mrdib_tf.recommender")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_no_layer_above_its_own(name):
    above = FORBIDDEN[_layer(name)]
    offending = sorted(m for m in _imports(name) if any(m == a or m.startswith(a + ".") for a in above))
    assert not offending, f"{name} imports {offending}, a layer above it"


def test_no_import_cycles():
    graph = {name: _imports(name) for name in MODULES}
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                cycle = path[path.index(successor):] + [successor]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if successor not in state:
                visit(successor)
        path.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
