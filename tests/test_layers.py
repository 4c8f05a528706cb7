"""The layer contract (docs/design.md, "Layers"), read from the import graph of the source: every import counts,
also one inside a function; only ``if TYPE_CHECKING:`` imports (never run) are left out.

The layers are the ones pyproject.toml declares for import-linter (``lint-imports``, run by ``make test``), so the
two checks cannot drift apart. The checker itself is tested on planted violations.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pytest depends on tomli there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nbdiag"

Graph = dict[str, set[str]]
Layers = list[tuple[list[str], bool]]  # high to low: (members, independent)


def layers_contract(pyproject: Path = ROOT / "pyproject.toml") -> dict:
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")


def declared_layers() -> Layers:
    """The layers contract of pyproject.toml as (members, independent) from the highest layer to the lowest."""
    layers = []
    for raw in layers_contract()["layers"]:
        independent = ":" not in raw
        members = [m.strip().strip("()") for m in raw.replace(":", "|").split("|")]
        layers.append((members, independent))
    return layers


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(root: Path, package: str = PACKAGE) -> Graph:
    """module -> the package's modules it imports (anywhere in its body, resolved to the deepest existing module)."""
    paths = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: Graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_imports(tree):
            for target in _targets(node, here, paths):
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _runtime_imports(tree: ast.AST):
    """Import statements anywhere (functions, classes, try blocks), skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        stack.extend(children)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, here: str, modules) -> list[str]:
    """What one statement imports: ``from pkg import sub`` imports the module ``pkg.sub``, ``from pkg import name``
    the module ``pkg`` (``import a.b`` and relative imports resolved likewise)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = here.split(".")
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def layer_index(module: str, layers: Layers, package: str = PACKAGE) -> int | None:
    """0 for the highest layer, where the package's ``__init__`` (the composition root) sits with the entry points."""
    if module == package:
        return 0
    child = module.split(".")[1]
    for index, (members, _) in enumerate(layers):
        if child in members:
            return index
    return None


def violations(graph: Graph, layers: Layers, package: str = PACKAGE) -> list[str]:
    """Every import that points up the layers, or across independent members of one layer."""
    found = []
    for importer, targets in sorted(graph.items()):
        low = layer_index(importer, layers, package)
        for target in sorted(targets):
            high = layer_index(target, layers, package)
            if low is None or high is None or importer.split(".")[:2] == target.split(".")[:2]:
                continue  # unplaced modules are reported by test_every_module_has_a_layer; same member: internal
            if high < low:
                found.append(f"{importer} imports {target}: layer {high} is above layer {low}")
            elif high == low and layers[low][1]:
                found.append(f"{importer} imports {target}: independent members of layer {low}")
    return found


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def ignored_imports() -> set[tuple[str, str]]:
    """The contract's listed exceptions (``importer -> imported``), each with its reason in pyproject.toml."""
    return {tuple(part.strip() for part in rule.split("->")) for rule in layers_contract().get("ignore_imports", [])}


def without(graph: Graph, edges: set[tuple[str, str]]) -> Graph:
    return {m: {t for t in targets if (m, t) not in edges} for m, targets in graph.items()}


GRAPH = without(module_imports(ROOT), ignored_imports())
LAYERS = declared_layers()


def test_every_module_has_a_layer():
    unplaced = sorted({m.split(".")[1] for m in GRAPH if m != PACKAGE and layer_index(m, LAYERS) is None})
    assert unplaced == [], f"place {unplaced} in a layer of [tool.importlinter] in pyproject.toml (docs/design.md)"


def test_layers_point_one_way():
    assert violations(GRAPH, LAYERS) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_only_entry_points_import_the_package_root():
    """``from nbdiag import x`` in a core module would reach every layer through ``__init__``."""
    graph = {"nbdiag.record": {"nbdiag"}, "nbdiag.demo": {"nbdiag"}}
    assert violations(graph, LAYERS) == [
        f"nbdiag.record imports nbdiag: layer 0 is above layer {layer_index('nbdiag.record', LAYERS)}"
    ]


# -- the checker finds what it must ---------------------------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Graph:
    for name, source in files.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return module_imports(tmp_path)


def test_planted_function_level_import_up_the_layers_is_a_violation_and_a_cycle(tmp_path):
    graph = _package(
        tmp_path,
        {
            "__init__.py": "",
            "stats.py": "def draw():\n    from nbdiag.views.dashboard import Dashboard\n    return Dashboard\n",
            "views/__init__.py": "",
            "views/dashboard.py": "from nbdiag import stats\n\n\nclass Dashboard: ...\n",
        },
    )
    assert graph["nbdiag.stats"] == {"nbdiag.views.dashboard"}
    views, stats = layer_index("nbdiag.views", LAYERS), layer_index("nbdiag.stats", LAYERS)
    assert violations(graph, LAYERS) == [
        f"nbdiag.stats imports nbdiag.views.dashboard: layer {views} is above layer {stats}"
    ]
    assert cycles(graph) == [["nbdiag.stats", "nbdiag.views.dashboard"]]


def test_relative_imports_resolve_and_type_checking_imports_do_not_count(tmp_path):
    graph = _package(
        tmp_path,
        {
            "__init__.py": "",
            "record.py": "import typing\nif typing.TYPE_CHECKING:\n    from nbdiag.monitor import Monitor\n",
            "monitor.py": "",
            "runs/__init__.py": "",
            "runs/writer.py": "try:\n    from ..record import x\nexcept ImportError:\n    from . import files\n",
            "runs/files.py": "",
        },
    )
    assert graph["nbdiag.record"] == set()
    assert graph["nbdiag.runs.writer"] == {"nbdiag.record", "nbdiag.runs.files"}
    assert violations(graph, LAYERS) == []


def test_independent_members_of_one_layer_may_not_import_each_other():
    graph = {"nbdiag.monitor": {"nbdiag.checks.report"}, "nbdiag.checks.report": set()}
    assert len(violations(graph, LAYERS)) == 1 and "independent" in violations(graph, LAYERS)[0]
    assert violations({"nbdiag.views.grid": {"nbdiag.views.panels"}}, LAYERS) == []  # inside one member: free
