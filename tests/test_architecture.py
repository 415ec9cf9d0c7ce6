"""Import boundaries (DESIGN.md §2): the layers stay separable.

- ``asynccluster/http/`` is sans-IO: nothing from asyncio, socket, selectors or the rest of
  the package (``asynccluster.config`` is allowed: it has no I/O).
- ``asynccluster/master/`` never imports ``asynccluster.http`` or ``asynccluster.worker.protocol``:
  the master never touches client traffic.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asynccluster"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package_parts = ["asynccluster", *path.relative_to(PACKAGE).parent.parts]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def sources(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).glob("**/*.py"))


def test_resolves_relative_imports() -> None:
    names = imported_modules(PACKAGE / "http" / "parser.py")
    assert "asynccluster.http.errors" in names and "httptools" in names


@pytest.mark.parametrize("path", sources("http"), ids=lambda p: p.name)
def test_http_is_sans_io(path: Path) -> None:
    forbidden = {"asyncio", "socket", "selectors", "ssl", "uvloop", "threading", "multiprocessing"}
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in forbidden, f"{path.name} imports {name}"
        if name.startswith("asynccluster") and name != "asynccluster":
            assert name.startswith(("asynccluster.http", "asynccluster.config")), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sources("master"), ids=lambda p: p.name)
def test_master_does_not_import_the_http_stack(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("asynccluster.http"), f"{path.name} imports {name}"
        assert not name.startswith("asynccluster.worker.protocol"), f"{path.name} imports {name}"


def test_master_supervisor_import_leaves_http_unloaded() -> None:
    if not (PACKAGE / "master" / "supervisor.py").exists():
        pytest.skip("asynccluster/master/supervisor.py not written yet")
    code = (
        "import sys, asynccluster.master.supervisor\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('asynccluster.http', 'asynccluster.worker.protocol')))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing the supervisor loads {result.stdout.strip()}"


# --- Issue 10: the whole package's import graph -------------------------------------------------
# Every ``import`` statement counts, wherever it is: at the top, inside a function (lazy) or under
# ``if TYPE_CHECKING:``. A lazy import hides a cycle from Python but not from the reader; a
# TYPE_CHECKING one hides it from both until a type needs it at run time.

STDLIB = frozenset(sys.stdlib_module_names)
OWN_IMPORT_FUNCTIONS = frozenset({"import_module", "find_spec", "__import__"})


def module_name(path: Path) -> str:
    """``asynccluster/worker/main.py`` -> ``asynccluster.worker.main`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The module's AST, parsed once per test session (several tests walk every module)."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def own_targets(path: Path) -> set[str]:
    """The package's modules that ``path`` imports explicitly.

    ``from P import x`` is an edge to ``P.x`` when that is a module, else to ``P`` (``x`` is an
    attribute of ``P``'s ``__init__``). Implicit imports of parent packages are not edges: every
    Python import runs them, so they cannot be avoided and do not express a dependency.
    """
    tree = parsed(path)
    this = module_name(path)
    package = this.split(".") if path.name == "__init__.py" else this.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [node.module])])
            base = base if node.level else node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in MODULES:
                    targets.add(candidate)
                elif base in MODULES:
                    targets.add(base)
    targets.discard(this)
    return targets


@functools.cache
def _import_graph() -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((name, frozenset(own_targets(path))) for name, path in MODULES.items())


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (a fresh copy of the cached graph)."""
    return {name: set(targets) for name, targets in _import_graph()}


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit): components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_scc_finds_a_cycle_hidden_by_lazy_and_type_checking_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected_components(graph) == [["a", "b", "c"]]
    assert strongly_connected_components({"a": {"b"}, "b": set()}) == []


def _hidden_imports(kind: str) -> list[tuple[str, ast.ImportFrom]]:
    """Our own ``from ... import`` statements inside functions (``kind="lazy"``) or under
    ``if TYPE_CHECKING:`` (``kind="typing"``): the edges Python itself does not follow at import."""
    found = []
    for name, path in MODULES.items():
        for block in ast.walk(parsed(path)):
            if kind == "lazy" and isinstance(block, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body: list[ast.AST] = [block]
            elif kind == "typing" and isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
                body = list(block.body)
            else:
                continue
            found += [
                (name, node)
                for stmt in body
                for node in ast.walk(stmt)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asynccluster")
            ]
    return found


@pytest.mark.parametrize("kind", ["lazy", "typing"])
def test_graph_sees_lazy_and_type_checking_imports(kind: str) -> None:
    # The package has both kinds today (e.g. cli/run.py imports master.runner inside run();
    # worker/cycle.py imports interfaces under TYPE_CHECKING): each must be an edge of the graph.
    hidden = _hidden_imports(kind)
    assert hidden, f"no {kind} import found: the check would pass without looking"
    graph = import_graph()
    for name, node in hidden:
        assert any(t.startswith(node.module or "") for t in graph[name]), (name, node.module)


def test_no_import_cycle_anywhere() -> None:
    cycles = strongly_connected_components(import_graph())
    assert cycles == [], "import cycles (lazy and TYPE_CHECKING imports included):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def contracts_sources() -> list[Path]:
    return sorted((PACKAGE / "contracts").glob("**/*.py"))


def test_contracts_package_exists() -> None:
    assert contracts_sources(), "asynccluster/contracts/ (the typed seams between processes) is missing"


@pytest.mark.parametrize("path", contracts_sources(), ids=lambda p: p.name)
def test_contracts_import_only_the_stdlib_and_themselves(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top == "asynccluster":
            assert name.startswith("asynccluster.contracts"), f"{path.name} imports {name}"
        else:
            assert top in STDLIB or top == "__future__", f"{path.name} imports {name} (not stdlib)"


@pytest.mark.parametrize("path", sources("worker"), ids=lambda p: p.name)
def test_worker_never_imports_master(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("asynccluster.master"), f"{path.name} imports {name}"


def cli_sources() -> list[Path]:
    package = PACKAGE / "cli"
    return sorted(package.glob("**/*.py")) if package.is_dir() else [PACKAGE / "cli.py"]


@pytest.mark.parametrize("path", cli_sources(), ids=lambda p: p.name)
def test_cli_uses_the_control_client_not_the_server(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("asynccluster.master.control"), f"{path.name} imports {name}"


def dynamic_own_imports(path: Path) -> list[str]:
    """Calls of import_module/find_spec/__import__ that could load one of our own modules.

    A literal naming a third-party module (``find_spec("h2")``: an optional extra) is fine; a
    literal naming ours, or a computed name, hides an edge from this test. The one place that must
    import by name is the user's app (``asynccluster/importer.py``).
    """
    found = []
    for node in ast.walk(parsed(path)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if called not in OWN_IMPORT_FUNCTIONS or not node.args:
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("asynccluster"):
            continue
        found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {called}({ast.unparse(arg)})")
    return found


def test_no_dynamic_imports_of_own_modules() -> None:
    found = [
        hit for name, path in MODULES.items() if name != "asynccluster.importer" for hit in dynamic_own_imports(path)
    ]
    assert found == [], "imports by name hide edges from the import graph:\n" + "\n".join(found)


def layer_of(module: str) -> str:
    """``asynccluster.worker.cycle`` -> ``worker/``; a top-level module is its own layer."""
    parts = module.split(".")
    if len(parts) == 1:
        return "asynccluster (root)"
    return f"{parts[1]}/" if (PACKAGE / parts[1]).is_dir() else parts[1]


def layer_graph() -> dict[str, dict[str, int]]:
    """Edges between layers (subpackages and top-level modules), with how many module edges each."""
    edges: dict[str, dict[str, int]] = {}
    for source, targets in import_graph().items():
        for target in targets:
            a, b = layer_of(source), layer_of(target)
            if a != b:
                edges.setdefault(a, {}).setdefault(b, 0)
                edges[a][b] += 1
    return edges


if __name__ == "__main__":
    # `python tests/test_architecture.py`: the import graph the tests check, layer by layer
    # (the README's architecture section is drawn from it).
    graph = import_graph()
    cycles = strongly_connected_components(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} import edges, cycles: {cycles}")
    for source, targets in sorted(layer_graph().items()):
        print(f"{source:22} -> " + ", ".join(f"{t} ({n})" for t, n in sorted(targets.items())))
