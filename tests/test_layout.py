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


def test_the_shared_kv_cache_knows_nothing_of_megabytes_token_shift():
    """models/kv_cache.py is the plain cache every architecture uses; the rows MEGABYTE's token shift
    looks back at are models/megabyte's own (its ShiftKVCache)."""
    text = (PACKAGE / "models" / "kv_cache.py").read_text().lower()
    assert "shift" not in text and "previous_row" not in text


def private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """`x._name` where x is not self, cls or super() (or another instance of the class it is written
    in: a class may call its own private methods on any of its instances), and `from m import _name`."""
    found = []

    def visit(node, own: set[str]):
        if isinstance(node, ast.ClassDef):
            own = own | {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            value = node.value
            mine = isinstance(value, ast.Name) and value.id in ("self", "cls")
            parent = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"
            if not (mine or parent or node.attr in own):
                found.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.ImportFrom):
            hidden = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            found.extend((node.lineno, name) for name in hidden)
        for child in ast.iter_child_nodes(node):
            visit(child, own)

    visit(tree, set())
    return found


def test_no_module_reaches_into_another_ones_private_names():
    """What a module or class keeps private (a leading underscore) is used only where it is written:
    what others need gets a public name."""
    uses = []
    for path in PACKAGE.rglob("*.py"):
        if "native" in path.parts:
            continue
        uses += [
            f"{path.relative_to(PACKAGE)}:{line} {text}" for line, text in private_uses(ast.parse(path.read_text()))
        ]
    assert not uses, uses


def test_private_uses_finds_what_it_should():
    source = (
        "from m import _hidden\n"
        "class A:\n"
        "    def _own(self, other):\n"
        "        return self._x, other._own(), super()._base(), kernels._native\n"
    )
    assert private_uses(ast.parse(source)) == [(1, "_hidden"), (4, "kernels._native")]
