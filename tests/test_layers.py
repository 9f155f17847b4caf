"""The package's structure: layer folders import only downward, no module cycles, and
importing intvit changes nothing (the TVM thread count is set where a runtime starts)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import intvit

ROOT = Path(intvit.__file__).parent
#: Lowest first. A module may import its own layer and those before it, never one after.
LAYERS = (
    "topi",
    "schedules",
    "quant",
    "models",
    "relax_ops",
    "deploy",
    "analysis",
    "bench",
    "tune",
    "nas",
    "api",
)
TOP = "cli"  # intvit/cli.py may import anything


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = ("intvit", *path.relative_to(ROOT).with_suffix("").parts)
        mods[".".join(parts).removesuffix(".__init__")] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, mods: dict[str, Path]) -> list[tuple[int, str]]:
    """Every intvit module ``path`` imports, at module level or inside functions (imports
    under ``if TYPE_CHECKING:`` are annotations only and are skipped)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("intvit"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found.extend((node.lineno, n) for n in names if n in mods)
            if node.module in mods:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name in mods)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_layers_import_only_downward():
    mods = _modules()
    upward = []
    for module, path in mods.items():
        src = _layer(module)
        if src not in LAYERS:
            assert src in (TOP, "paths", None) or module == "intvit", module
            continue
        for line, target in _imports(path, mods):
            dst = _layer(target)
            if dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} {src} -> {target}")
            if dst == TOP:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports the CLI")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    mods = _modules()
    graph = {m: {t for _, t in _imports(p, mods)} - {m} for m, p in mods.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    assert not cycles, cycles


def test_the_walk_sees_function_level_imports(tmp_path):
    """The checker itself: an import inside a function counts, one under TYPE_CHECKING not."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from intvit.api import bench\n"
        "def f():\n    from intvit.cli import main\n"
    )
    found = [t for _, t in _imports(src, {"intvit.cli.main": src, "intvit.api.bench": src})]
    assert found == ["intvit.cli.main"]


def test_importing_intvit_has_no_side_effects():
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    code = (
        "import os, intvit, intvit.cli, intvit.api.demo, intvit.deploy.compile\n"
        "print(os.environ.get('TVM_NUM_THREADS'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_api_holds_one_module_per_subcommand():
    """``intvit/api/`` is one module per CLI subcommand (``relu-distill`` as
    ``relu_distill``), and nothing else: a new subcommand gets its module, and a library of
    other code goes to its own layer."""
    from intvit.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    commands = {name.replace("-", "_") for name in subparsers.choices}
    modules = {p.stem for p in (ROOT / "api").glob("*.py") if p.stem != "__init__"}
    assert modules == commands
