"""The package's imports point one way: core -> data / models / viz -> methods -> metrics ->
experiments -> cli. Every import statement (also those inside functions) is read with ``ast``;
an import of a higher layer, of a sibling package of the same layer, or a cycle of top-level
imports fails."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import attrlab

ROOT = Path(attrlab.__file__).parent
RANK = {"core": 0, "data": 1, "models": 1, "viz": 1, "methods": 2, "metrics": 3,
        "experiments": 4, "cli": 5, "__main__": 6}


def module_name(path: Path) -> str:
    parts = ("attrlab",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute attrlab module imported, whether at module top level) for one file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        out += [(t, id(node) in top) for t in targets if t == "attrlab" or t.startswith("attrlab.")]
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_upward_or_sideways_import() -> None:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        me = module_name(path)
        mine = layer(me)
        if mine is None:  # attrlab/__init__.py: lazy attribute access only
            continue
        assert mine in RANK, f"{me}: package {mine!r} has no layer in RANK"
        for target, _ in imports(path):
            theirs = layer(target)
            if target in ("attrlab", "attrlab.__version__") or theirs == mine:
                continue
            if theirs not in RANK or RANK[theirs] >= RANK[mine]:
                bad.append(f"{me} imports {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_cycle_of_top_level_imports() -> None:
    graph: dict[str, set[str]] = {}
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    for me, path in modules.items():
        deps = set()
        for target, top in imports(path):
            if not top:
                continue
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]  # "from .x import name" -> module x
            if target != me and target in modules:
                deps.add(target)
        graph[me] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in graph[node]:
            if state.get(dep) == 1:
                # a package importing its own submodules is not a cycle unless they import back
                cycle = stack[stack.index(dep):] + [dep]
                if not all(b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_import_attrlab_gives_the_library_packages() -> None:
    code = ("import attrlab, sys\n"
            "assert 'attrlab.methods' not in sys.modules\n"
            "for name in ('data', 'methods', 'metrics', 'models', 'viz'):\n"
            "    getattr(attrlab, name)\n"
            "assert callable(attrlab.data.digits) and callable(attrlab.metrics.get)\n"
            "assert 'attrlab.experiments.train' not in sys.modules, 'metrics imported training'\n"
            "assert 'attrlab.cli' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_library_code_raises_no_cli_error() -> None:
    for path in ROOT.rglob("*.py"):
        if layer(module_name(path)) in ("cli", "__main__"):
            continue
        assert "UserError" not in path.read_text(encoding="utf-8"), path
