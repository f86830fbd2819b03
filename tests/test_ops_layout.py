"""The import structure of vjm, read from the source with `ast` (nothing is imported):

- no import cycle among the modules of the vjm package, and none in vjm/ops even through the
  imports it makes inside functions;
- the helpers that vjm/ops shares between its files are leaves (they import no vjm module), and
  no private (underscore) name crosses from one file of vjm/ops to another;
- every Triton op of vjm/ops has its torch reference beside it.

The graph has one edge per module-level import between vjm modules. `from pkg import name` is an
edge to pkg.name when that is a module, and to pkg itself otherwise (the name is read from pkg's
namespace, so pkg must have run). Importing a.b.c also runs the packages a and a.b, which are
edges too, except for the packages that contain the importer: Python has started those already,
and a child that only imports its siblings does not wait on its parent. A child that reads names
from its parent package does, and that edge counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPS_LEAVES = ("vjm.ops.backends", "vjm.ops.grid", "vjm.ops.layout", "vjm.ops.channel_major")


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Absolute module name -> source file for every .py under root/package (a package is its __init__)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(body: list[ast.stmt]):
    """The import statements that run when the module is imported: at top level and inside
    top-level if / try / with / loops and class bodies. Imports inside functions are left out:
    they run when the function is called, after every module-level import has finished, which is
    how a module reaches an optional dependency (triton, mamba_ssm) lazily; `if TYPE_CHECKING:`
    blocks never run."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not is_type_checking(node.test):
                yield from module_level_imports(node.body)
            yield from module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from module_level_imports(block)
        elif isinstance(node, (ast.With, ast.For, ast.While)):
            yield from module_level_imports(node.body)
            yield from module_level_imports(getattr(node, "orelse", []))
        elif isinstance(node, ast.ClassDef):
            yield from module_level_imports(node.body)


def all_imports(tree: ast.Module):
    """Every import statement, functions included."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def from_base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of the module that `from X import ...` reads, relative levels resolved."""
    if not node.level:
        return node.module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_targets(module: str, path: Path, node, modules: dict[str, Path]) -> set[str]:
    """The vjm modules that one import statement of `module` makes run before it goes on."""
    runs, reads = set(), set()  # modules executed; modules whose namespace a name is read from
    if isinstance(node, ast.Import):
        for alias in node.names:
            runs.update([alias.name, *ancestors(alias.name)])
    else:
        base = from_base(module, path, node)
        runs.update([base, *ancestors(base)])
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in modules:
                runs.add(submodule)
            else:  # a name defined in base (or `*`)
                reads.add(base)
    containing = {a for a in ancestors(module)} | ({module} if path.name == "__init__.py" else set())
    targets = {t for t in runs if t not in containing} | reads
    return {t for t in targets if t in modules and t != module}


def import_graph(root: Path, package: str, module_level_only: bool = True) -> dict[str, set[str]]:
    modules = module_files(root, package)
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        nodes = module_level_imports(tree.body) if module_level_only else all_imports(tree)
        graph[module] = set().union(*(import_targets(module, path, node, modules) for node in nodes))
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
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
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle inside a strongly connected component: a shortest path from its first module back to it."""
    start, members = component[0], set(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for succ in sorted(graph[path[-1]] & members):
            if succ == start:
                return path + [start]
            if succ not in seen:
                seen.add(succ)
                paths.append(path + [succ])
    raise AssertionError(f"{component} is not strongly connected")


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    return [cycle_through(c, graph) for c in strongly_connected(graph)
            if len(c) > 1 or c[0] in graph[c[0]]]


# --- The checker itself, on small packages written for it -------------------------------------


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_cycles_and_only_cycles(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "from . import b\ndef f():\n    from .c import g  # at call time: no edge\n",
        "pkg/b.py": "import pkg.c\n",
        "pkg/c.py": "from pkg.a import f\n",
        "pkg/sub/__init__.py": "from .leaf import x\n",
        "pkg/sub/leaf.py": "from . import sibling\nx = 1\n",  # a sibling module: no edge to pkg.sub
        "pkg/sub/sibling.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import x\n",
        "pkg/sub/child.py": "from . import x\n",  # names from its parent, which does not import it
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.sub.leaf"] == {"pkg.sub.sibling"} and graph["pkg.sub.child"] == {"pkg.sub"}
    assert graph["pkg.sub.sibling"] == set()
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_the_checker_counts_a_child_that_reads_names_of_a_parent_that_imports_it(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "from .child import y\nx = 1\n",
        "pkg/child.py": "from . import x\ny = x\n",
    })
    assert import_cycles(import_graph(tmp_path, "pkg")) == [["pkg", "pkg.child", "pkg"]]


# --- vjm ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vjm_graph():
    return import_graph(ROOT, "vjm")


def test_the_graph_sees_vjm_imports(vjm_graph):
    assert {"vjm.ops.scan_triton", "vjm.ops.scan_torch", "vjm.ops.backends"} <= vjm_graph["vjm.ops.scan"]
    assert "vjm.ops" in vjm_graph["vjm.models.mamba"]  # `from vjm.ops import scan_direction`


def test_no_import_cycle_in_vjm(vjm_graph):
    cycles = import_cycles(vjm_graph)
    assert not cycles, "import cycles in vjm:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycle_in_ops_even_through_imports_inside_functions():
    """vjm/ops imports triton and mamba_ssm inside functions; those lazy imports must not close a
    circle either (the kernels once imported the launcher that imports them when called)."""
    graph = import_graph(ROOT, "vjm", module_level_only=False)
    ops = {m: {t for t in targets if t.startswith("vjm.ops")} for m, targets in graph.items() if m.startswith("vjm.ops")}
    cycles = import_cycles(ops)
    assert not cycles, "import cycles in vjm/ops:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_shared_helpers_of_ops_are_leaves():
    graph = import_graph(ROOT, "vjm", module_level_only=False)  # not even inside a function
    for leaf in OPS_LEAVES:
        assert graph[leaf] == set(), f"{leaf} imports {sorted(graph[leaf])}"


def test_no_private_name_crosses_files_in_ops():
    modules = module_files(ROOT, "vjm")
    crossings = []
    for module, path in modules.items():
        if not module.startswith("vjm.ops"):
            continue
        tree = ast.parse(path.read_text())
        module_aliases = set()  # local names bound to vjm modules
        for node in all_imports(tree):
            if isinstance(node, ast.Import):
                module_aliases.update(a.asname for a in node.names if a.asname and a.name in modules)
                continue
            base = from_base(module, path, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    module_aliases.add(alias.asname or alias.name)
                elif base in modules and alias.name.startswith("_") and not alias.name.startswith("__"):
                    crossings.append(f"{module}: from {base} import {alias.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossings.append(f"{module}: {node.value.id}.{node.attr}")
    assert not crossings, crossings


def test_every_triton_op_has_its_torch_reference_beside_it():
    ops = ROOT / "vjm" / "ops"
    for launcher in ops.glob("*_triton.py"):
        op = launcher.stem.removesuffix("_triton")
        assert (ops / f"{op}_torch.py").exists(), f"{launcher.name} has no {op}_torch.py beside it"
        assert (ops / f"{op}.py").exists(), f"{launcher.name} has no dispatcher {op}.py"
    for kernels in ops.glob("*_triton_kernels.py"):
        assert (ops / kernels.name.replace("_kernels", "")).exists(), f"{kernels.name} has no launcher"
