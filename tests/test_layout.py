"""The package's layout keeps its promises (docs/layout.md): the runtime reaches architectures only
through the registry and models/base.py, no two modules import each other (directly or round a loop),
and functions stay short enough to read in one sitting."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mlx_megabyte"
LONGEST = 80  # lines of one function
# The story plots are each one Beats(...) literal of templates: data, not logic.
EXEMPT = PACKAGE / "stories" / "plots"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if "native" in parts:  # the extension's build step: not part of the importable package
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports at its top level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import stories` reads the submodule, not the package's __init__: an edge to the
            # package only for names that are not submodules.
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known]
            candidates = submodules + ([target] if len(submodules) < len(node.names) else [])
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_no_module_outside_models_imports_an_architecture():
    architectures = {
        name
        for name in modules()
        if name.count(".") >= 2
        and name.startswith("mlx_megabyte.models.")
        and name.split(".")[2] not in ("base", "layers", "kv_cache")
    }
    for name, targets in graph().items():
        if name.startswith("mlx_megabyte.models"):
            continue
        assert not targets & architectures, (name, sorted(targets & architectures))


def test_no_two_modules_import_each_other():
    edges = graph()
    state: dict[str, int] = {}

    def visit(name, path):
        state[name] = 1
        for target in edges[name]:
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [name, target]))
            if not state.get(target):
                visit(target, path + [name])
        state[name] = 2

    for name in edges:
        if not state.get(name):
            visit(name, [])


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(EXEMPT) or "native" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
