"""The package's floor plan (docs/design.md): imports only run down the data flow, never in a
circle, and no module or function grows past the size a reader takes in at once."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "drumlayer"
# Lowest first: a module may import its own layer's modules and the layers below it.
LAYERS = (
    ("drumlayer.errors", "drumlayer.workdir", "drumlayer.cli", "drumlayer.lock"),
    ("drumlayer.data",),
    ("drumlayer.features",),
    ("drumlayer.model",),
    ("drumlayer.training",),
    ("drumlayer.recipes",),
    ("drumlayer.evaluation",),
    ("drumlayer.configs", "drumlayer.pipeline"),
    ("drumlayer.kit",),
    ("drumlayer.studio", "drumlayer.loops"),
    ("drumlayer.main",),
)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py")


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: pathlib.Path, modules: dict) -> list[tuple[str, int, bool]]:
    """(imported drumlayer module, line, at module level) of a file; imports under `if
    TYPE_CHECKING` are left out (they never run)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and _is_type_checking(node) for n in ast.walk(node)}
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.module and node.module.startswith("drumlayer"):
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        out += [(n, node.lineno, id(node) in top) for n in names if n.startswith("drumlayer")]
    return out


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {n for n, _, _ in imports(p, modules) if n in modules and n != m}
            for m, p in modules.items()}


def test_every_import_runs_down_the_layers():
    modules = _modules()
    back = [f"{m} ({_layer(m)}) imports {n} ({_layer(n)}) at line {line}"
            for m, p in modules.items() for n, line, _ in imports(p, modules)
            if _layer(n) > _layer(m)]
    assert not back, "\n".join(back)


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(g[m]):
            if n.startswith(m + "."):  # a package imports its own modules
                continue
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join(path + [m, n]))
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])


def test_imports_of_the_project_are_at_the_top_of_each_module():
    modules = _modules()
    inner = [f"{p.relative_to(PACKAGE.parent)}:{line} imports {n}"
             for m, p in modules.items() for n, line, top in imports(p, modules) if not top]
    assert not inner, "\n".join(inner)


def test_no_module_or_function_is_too_long():
    long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        where = path.relative_to(PACKAGE.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{where}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_the_layers_name_real_modules(layer):
    modules = _modules()
    for prefix in LAYERS[layer]:
        assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix
