"""Run the book's notebooks with papermill.

``make book`` calls :func:`run_notebooks` (through ``gla book run``): every source notebook
in ``notebooks/`` is executed with the parameters of a YAML file into an output folder
inside ``book/``, where Jupyter Book picks it up with execution off.

The parameter file holds the parameters shared by every notebook at the top level and
per-notebook overrides under ``notebooks: {<stem>: {...}}``. Only parameters that a
notebook declares in its ``parameters`` cell are passed to it; an unknown name in the
file is an error (papermill would only warn).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def load_params(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a parameter YAML file (``None`` gives no parameters)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"params: no parameter file at {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"params: expected a mapping at the top of {p}, got {type(data).__name__}")
    return data


def declared_parameters(notebook: str | os.PathLike) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse(cell.source)
            names = []
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign) else [])
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    raise ValueError(f"{notebook}: no code cell tagged 'parameters'")


def notebook_parameters(stem: str, declared: Iterable[str], params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters one notebook receives: shared ones it declares, then its overrides."""
    declared = set(declared)
    overrides = dict((params.get("notebooks") or {}).get(stem) or {})
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise ValueError(f"params for notebook '{stem}': unknown parameter(s) {unknown}; "
                         f"the notebook declares {sorted(declared)}")
    shared = {k: v for k, v in params.items() if k != "notebooks" and k in declared}
    shared.update(overrides)
    return shared


def list_notebooks(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """Source notebooks in book order (file names sort in chapter order)."""
    return sorted(Path(notebooks_dir).glob("*.ipynb"))


def run_notebooks(params: Mapping[str, Any] | str | os.PathLike | None, out_dir: str | os.PathLike, *,
                  notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, only: Iterable[str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> list[Path]:
    """Execute the notebooks with papermill into ``out_dir``; returns the executed paths.

    Parameters
    ----------
    params : mapping, path or None
        Parameters (see the module docstring), or a YAML file holding them.
    out_dir : path
        Where executed notebooks go (e.g. ``book/generated``).
    only : iterable of str, optional
        Notebook stems to run (default: all).
    overrides : mapping, optional
        Parameters that win over the file's shared ones (e.g. ``{"smoke": True}``).
    """
    import papermill as pm

    if not isinstance(params, Mapping):
        params = load_params(params)
    params = dict(params)
    if overrides:
        params.update(overrides)
    all_declared: set[str] = set()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = list_notebooks(notebooks_dir)
    if only is not None:
        wanted = set(only)
        missing = wanted - {s.stem for s in sources}
        if missing:
            raise ValueError(f"only: no notebook named {sorted(missing)} in {notebooks_dir}")
        sources = [s for s in sources if s.stem in wanted]
    plan = []
    for src in sources:
        declared = declared_parameters(src)
        all_declared |= set(declared)
        plan.append((src, notebook_parameters(src.stem, declared, params)))
    unknown = sorted(k for k in params if k != "notebooks" and k not in all_declared and sources)
    if unknown and only is None:
        raise ValueError(f"params: {unknown} are declared by no notebook")
    done = []
    for src, nb_params in plan:
        target = out / src.name
        nb_params = {**nb_params}
        declared_here = declared_parameters(src)
        if "output_dir" in declared_here and "output_dir" not in nb_params:
            nb_params["output_dir"] = str((out / "results" / src.stem).resolve())
        if "cache_dir" in declared_here and not nb_params.get("cache_dir"):
            default_cache = os.environ.get("GLA_CACHE_DIR", NOTEBOOKS_DIR.parent / ".gla_cache")
            nb_params["cache_dir"] = str(Path(default_cache).resolve())
        print(f"[gla book] {src.name} -> {target}", flush=True)
        pm.execute_notebook(str(src), str(target), parameters=nb_params, kernel_name="python3",
                            cwd=str(out), progress_bar=True)
        done.append(target)
    return done
