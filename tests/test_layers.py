"""The layering of ``hwnas/``: every import obeys the table in ``docs/ARCHITECTURE.md``, no cycles.

Imports are read with :mod:`ast` (nothing is imported): top-level, function-level and
``TYPE_CHECKING`` imports all count. A module belongs to the table row whose module prefix is the
longest match; it may import modules of its own row, of the rows that row lists, and of
``foundation``. Separately, the module import graph must have no cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hwnas"
TABLE_START, TABLE_END = "<!-- layers -->", "<!-- /layers -->"
FOUNDATION = "foundation"
EXTERNAL = ("device_agents",)  # a layer name that stands for the top-level package


def read_layers(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(module prefix -> layer, layer -> layers it may import) from the markdown table."""
    body = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    owner: dict[str, str] = {}
    allowed: dict[str, set[str]] = {}
    for line in body.strip().splitlines()[2:]:  # skip the header and the |---| line
        name, modules, imports = (cell.strip() for cell in line.strip().strip("|").split("|"))
        for module in re.findall(r"`([\w.]+)`", modules):
            assert module not in owner, f"{module} is in two rows of the layer table"
            owner[module] = name
        targets = {t.strip().strip("`") for t in imports.split(",") if t.strip() not in ("", "—")}
        allowed[name] = targets
    return owner, allowed


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of ``hwnas``/``device_agents`` in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # ``from hwnas.spaces import fbnet_geometry`` is a module
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else module))
    return sorted({(line, m) for line, m in found if m.split(".")[0] in ("hwnas", *EXTERNAL)})


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_of(module: str, owner: dict[str, str]) -> str | None:
    if module.split(".")[0] in EXTERNAL:
        return module.split(".")[0]
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in owner:
            return owner[".".join(parts[:n])]
    return None


def violations(owner: dict[str, str], allowed: dict[str, set[str]]) -> list[str]:
    """One line per forbidden import: ``file:line: module (layer) imports other (layer)``."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        mine = layer_of(name, owner)
        where = path.relative_to(ROOT)
        if mine is None:
            problems.append(f"{where}: module {name} is in no row of the layer table")
            continue
        ok = {mine, FOUNDATION, *allowed[mine]}
        for line, target in imports_of(path):
            theirs = layer_of(target, owner)
            if theirs not in ok:
                problems.append(
                    f"{where}:{line}: {name} ({mine}) imports {target} ({theirs}); "
                    f"{mine} may import: {', '.join(sorted(ok))}"
                )
    return problems


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph (Tarjan)."""
    graph = {
        module_name(p): sorted({m for _, m in imports_of(p) if m.startswith("hwnas")})
        for p in PACKAGE.rglob("*.py")
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, []):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


@pytest.fixture(scope="module")
def table() -> tuple[dict[str, str], dict[str, set[str]]]:
    return read_layers((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"))


def test_the_table_names_known_layers_and_is_acyclic(table) -> None:
    owner, allowed = table
    layers = set(allowed)
    for name, targets in allowed.items():
        unknown = targets - layers - set(EXTERNAL)
        assert not unknown, f"layer {name!r} lists unknown layers {sorted(unknown)}"
    done: set[str] = set()

    def walk(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"the layer table has a cycle: {' -> '.join((*path, name))}"
        if name in done or name in EXTERNAL:
            return
        for target in allowed[name]:
            walk(target, (*path, name))
        done.add(name)

    for name in allowed:
        walk(name, ())
    for module in owner:
        assert is_module(module), f"the layer table names {module}, which does not exist"


def test_every_import_obeys_the_layer_table(table) -> None:
    problems = violations(*table)
    assert not problems, "imports that break docs/ARCHITECTURE.md's layers:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_table_forbids_what_the_design_forbids(table) -> None:
    owner, allowed = table
    assert layer_of("hwnas.search.pipeline", owner) == "search"
    assert layer_of("hwnas.devices.connect", owner) == "agent link"
    assert "agent link" not in allowed["search"] and "agent link" not in allowed["quant"]
    assert "quant" not in allowed["export"] and "quant" not in allowed["lut"]
    assert "agent link" not in allowed["cli"]


def test_the_light_modules_import_no_torch() -> None:
    """The graph's torch-free modules, the writers' dispatcher, the LUT build and the registries
    load without torch (lowering, calibration and the networks import it when used)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import hwnas.graph.blocks, hwnas.graph.qparams, hwnas.export.api, hwnas.lut.build\n"
        "import hwnas.runs, hwnas.progress, hwnas.spaces.base, hwnas.search.api\n"
        "print('RESULT', 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "RESULT False" in out.stdout, out.stderr
