"""The package's shape: the world is a plug-in that no core module imports, and the
modules import each other without cycles."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gla"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, nodes=None) -> set[str]:
    """Modules of the package that ``path`` imports (absolute names): anywhere in the file,
    or in ``nodes`` when given."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in (nodes if nodes is not None else ast.walk(ast.parse(path.read_text()))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("gla")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("gla"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def test_no_core_module_imports_the_world():
    offenders = {m: sorted(d for d in deps if d == "gla.world" or d.startswith("gla.world."))
                 for m, deps in _graph().items() if not (m == "gla.world" or m.startswith("gla.world."))}
    assert not {m: d for m, d in offenders.items() if d}, offenders


def test_module_level_imports_have_no_cycles():
    # Imports inside functions are deferred on purpose; cycles are about module-level imports.
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        top = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        deps = _imports(path, top)
        # a package's __init__ importing its own submodules is not a cycle
        graph[name] = {m for m in deps if m in files and m != name and not m.startswith(name + ".")}
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for d in sorted(graph[n]):
            visit(d)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert not cycles, cycles[:3]
