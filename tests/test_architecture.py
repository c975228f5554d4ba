"""The package's shape: the world is a plug-in that no core module imports (the package's
own plug-ins, gla.plugins.BUILTIN_PLUGINS, may), the modules
import each other without cycles (every import counts, at the top of a file or inside a
function), and no module reaches into another's private names."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gla"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


FILES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _import_nodes(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a file: at the top, inside functions, classes or ``if``s."""
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <module> import ...`` in ``path``."""
    if not node.level:
        return node.module or ""
    name = _module_name(path)
    base = (name if path.name == "__init__.py" else name.rsplit(".", 1)[0]).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(path: Path) -> set[str]:
    """The package's modules that importing ``path`` runs, by its own imports.

    ``from P import x`` runs ``P.x`` when it is a module, else ``P`` (a name defined or
    re-exported by ``P``'s ``__init__``: it must have run that far, even when the importer
    sits inside ``P``). Importing a module also runs the ``__init__`` of each package above
    it, except those the importer already sits in (Python initialised them before the
    importer started).
    """
    me = _module_name(path)
    named = set()
    for node in _import_nodes(path):
        if isinstance(node, ast.Import):
            named |= {a.name for a in node.names}
            continue
        mod = _absolute(path, node)
        for a in node.names:
            sub = f"{mod}.{a.name}"
            named.add(sub if sub in FILES else mod)
    out = {mod for mod in named if mod in FILES}
    for mod in named:
        if mod not in FILES:
            continue
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            above = ".".join(parts[:i])
            if above in FILES and not (me == above or me.startswith(above + ".")):
                out.add(above)
    out.discard(me)
    return out


def _graph() -> dict[str, set[str]]:
    return {name: _targets(path) for name, path in FILES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
    return cycles


def _plugin_modules() -> set[str]:
    """The package's own plug-ins (gla.plugins.BUILTIN_PLUGINS): not core, they may import the world."""
    from gla.plugins import BUILTIN_PLUGINS

    return {v.split(":")[0] for v in BUILTIN_PLUGINS.values()}


def test_no_core_module_imports_the_world():
    plugins = _plugin_modules()
    offenders = {m: sorted(d for d in deps if d == "gla.world" or d.startswith("gla.world."))
                 for m, deps in _graph().items()
                 if not (m == "gla.world" or m.startswith("gla.world.") or m in plugins)}
    assert not {m: d for m, d in offenders.items() if d}, offenders
    importers = {m for m, deps in _graph().items() for d in deps if d in plugins - {m}}
    assert not importers, f"a plug-in is imported by {sorted(importers)}; plug-ins are loaded by gla.plugins only"


def test_imports_have_no_cycles_counting_imports_inside_functions():
    cycles = _cycles(_graph())
    assert not cycles, [" -> ".join(c) for c in cycles[:5]]


def test_the_cycle_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    """A cycle hidden by an import inside a function is still a cycle (the check's own test)."""
    pkg = tmp_path / "gla"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import g\n")
    (pkg / "sub" / "c.py").write_text("def g():\n    from .. import a\n")
    (pkg / "b.py").write_text("def f():\n    from .sub.c import g\n")
    import sys

    here = sys.modules[__name__]
    monkeypatch.setattr(here, "PACKAGE", pkg)
    monkeypatch.setattr(here, "FILES", {_module_name(p): p for p in pkg.rglob("*.py")})
    cycles = _cycles(_graph())
    # a -> b -> gla.sub (its __init__ runs first) -> gla.sub.c -> a
    assert any(c[0] == "gla.a" and "gla.sub" in c and "gla.sub.c" in c for c in cycles), cycles


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name, path in FILES.items():
        for node in _import_nodes(path):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    offenders.append(f"{name}: from {_absolute(path, node)} import {', '.join(private)}")
    assert not offenders, offenders
