"""The import graph keeps DESIGN.md's layering: no import from a lower layer to a higher one,
`train` and `finetune` meet only through the release contract, and `data_pipeline` (the Ray
job) is imported by nothing in the library except the CLI face and the demo runner on top.

Every ``import``/``from ... import`` counts, including those inside functions (lazy imports
are still dependencies). An AST walk, no import of the modules themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layer of each top-level part, from the bottom (DESIGN.md). Equal layers may import each other
#: unless FORBIDDEN says otherwise.
LAYERS = {
    "fmpretrain.neighbors": 0,
    "fmpretrain.config": 0,
    "fmpretrain.download": 0,
    "fmpretrain.files": 0,
    "fmpretrain.threads": 0,
    "fmpretrain.pipeline": 0,  # the stage shape and runner; knows no stage
    "fmpretrain.machine": 0,
    "fmpretrain.extras": 0,
    "fmpretrain.release_format": 0,
    "fmpretrain.structures": 1,
    "fmpretrain.io": 2,
    "fmpretrain.generate": 2,
    "fmpretrain.prototypes": 1,  # the generator's tables
    "fmpretrain.corpora": 2,
    "fmpretrain.descriptors": 3,
    "fmpretrain.data": 4,
    "fmpretrain.models": 5,
    "fmpretrain.train": 6,
    "fmpretrain.hub": 6,
    "fmpretrain.finetune": 7,
    "fmpretrain.api": 7,
    "fmpretrain.calculator": 7,
    "fmpretrain.configs": 7,  # package data only
    "data_pipeline": 8,
    "fmpretrain.demo": 9,
    "fmpretrain.cli": 9,
    "fmpretrain": 9,  # the package's lazy top-level API
}
FORBIDDEN = {
    ("fmpretrain.train", "fmpretrain.finetune"),
    ("fmpretrain.finetune", "fmpretrain.train"),
}
#: Entry-point shims (``python -m ...``) that only hand over to the CLI.
ENTRY_POINTS = {"fmpretrain.train.__main__", "data_pipeline.__main__"}


def part(module: str) -> str:
    """The LAYERS key a dotted module name falls under (longest prefix)."""
    candidates = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    if not candidates:
        raise KeyError(f"{module} has no layer in tests/test_layering.py: add it to LAYERS")
    return max(candidates, key=len)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every project import in the file. ``from pkg import name``
    counts as importing ``pkg.name`` when that is a module; the package's ``__version__`` is
    read by every layer and does not count."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    )
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            for alias in node.names:
                sub = ROOT.joinpath(*name.split("."), alias.name)
                if sub.with_suffix(".py").is_file() or sub.is_dir():
                    found.append((node.lineno, f"{name}.{alias.name}"))
                elif alias.name != "__version__":
                    found.append((node.lineno, name))
    project = ("fmpretrain", "data_pipeline")
    return [(line, name) for line, name in found if name.split(".")[0] in project]


def project_modules() -> list[tuple[Path, str]]:
    """``(file, part)`` of every module of the project, entry-point shims left out."""
    files = sorted((ROOT / "fmpretrain").rglob("*.py")) + sorted(
        (ROOT / "data_pipeline").rglob("*.py")
    )
    return [(p, part(module_name(p))) for p in files if module_name(p) not in ENTRY_POINTS]


def violations(sources: dict[Path, str] | None = None) -> list[str]:
    """Every upward or forbidden import; ``sources`` replaces some files' text (for tests)."""
    sources = sources or {}
    problems = []
    for path, here in project_modules():
        for line, target in imports(path, sources.get(path)):
            there = part(target)
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if LAYERS[there] > LAYERS[here]:
                problems.append(f"{where} (layer {LAYERS[there]} above {LAYERS[here]})")
            elif (here, there) in FORBIDDEN:
                problems.append(f"{where} ({here} and {there} meet only through releases)")
    return problems


def part_graph() -> dict[str, set[str]]:
    """Which parts (LAYERS keys) import which other parts."""
    graph: dict[str, set[str]] = {}
    for path, here in project_modules():
        for _, target in imports(path):
            there = part(target)
            if there != here:
                graph.setdefault(here, set()).add(there)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of more than one part (empty: acyclic)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_goes_up_a_layer():
    assert violations() == []


def test_no_package_level_cycle():
    assert cycles(part_graph()) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_check_catches_upward_and_forbidden_imports():
    neighbors = ROOT / "fmpretrain" / "neighbors.py"
    trainer = ROOT / "fmpretrain" / "finetune" / "trainer.py"
    found = violations(
        {
            neighbors: neighbors.read_text() + "\nfrom fmpretrain.finetune import tasks\n",
            trainer: trainer.read_text() + "\ndef f():\n    from ..train import logging\n",
        }
    )
    assert any("neighbors.py" in v and "fmpretrain.finetune.tasks" in v for v in found)
    assert any("finetune/trainer.py" in v and "meet only through releases" in v for v in found)


@pytest.mark.parametrize("name", ["fmpretrain.io.json_records", "data_pipeline.driver"])
def test_every_module_has_a_layer(name):
    assert part(name) in LAYERS
