"""Run the book's notebooks with papermill.

``make book`` calls :func:`run_notebooks` (through ``gla book run``): every source notebook
in ``notebooks/`` is executed with the parameters of a YAML file into an output folder
inside ``book/``, where Jupyter Book picks it up with execution off.

The parameter file holds the parameters shared by every notebook at the top level and
per-notebook overrides under ``notebooks: {<stem>: {...}}``. Only parameters that a
notebook declares in its ``parameters`` cell are passed to it; an unknown name in the
file is an error (papermill would only warn).

``lanes: [[<stem>, ...], [<stem>, ...]]`` (optional) lets ``jobs=2`` run two kernels side
by side, one thread each: notebooks in no lane run first, one after another (the world's
pretraining), then each lane runs its notebooks in order. On two CPU cores two
single-threaded kernels get through about 1.5 times as much work as one two-threaded
kernel. Notebooks share results only through the content-keyed cache, so any order gives
the same results; lanes only avoid computing a shared result twice.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
RESERVED = ("notebooks", "lanes")  # keys of a parameter file that are not notebook parameters


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
    shared = {k: v for k, v in params.items() if k not in RESERVED and k in declared}
    shared.update(overrides)
    return shared


def list_notebooks(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """Source notebooks in book order (file names sort in chapter order)."""
    return sorted(Path(notebooks_dir).glob("*.ipynb"))


def plan_lanes(stems: Sequence[str], lanes: Sequence[Sequence[str]] | None, jobs: int
               ) -> tuple[list[str], list[list[str]]]:
    """Split notebook stems into those run first, one after another, and parallel lanes.

    With ``jobs <= 1`` or no ``lanes`` everything runs first, in order. Otherwise stems
    in no lane run first, then the lanes (restricted to ``stems``, each in its order).
    """
    if jobs <= 1 or not lanes:
        return list(stems), []
    named = [s for lane in lanes for s in lane]
    repeated = sorted({s for s in named if named.count(s) > 1})
    if repeated:
        raise ValueError(f"lanes: {repeated} appear in more than one lane")
    wanted = set(stems)
    lanes_here = [[s for s in lane if s in wanted] for lane in lanes]
    return [s for s in stems if s not in set(named)], [lane for lane in lanes_here if lane]


def run_notebooks(params: Mapping[str, Any] | str | os.PathLike | None, out_dir: str | os.PathLike, *,
                  notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, only: Iterable[str] | None = None,
                  overrides: Mapping[str, Any] | None = None, jobs: int = 1) -> list[Path]:
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
    jobs : int
        Kernels run at once, following the file's ``lanes`` (see the module docstring).
    """
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
    unknown = sorted(k for k in params if k not in RESERVED and k not in all_declared and sources)
    if unknown and only is None:
        raise ValueError(f"params: {unknown} are declared by no notebook")
    known = {p.stem for p in list_notebooks(notebooks_dir)}
    strangers = sorted({s for lane in params.get("lanes") or [] for s in lane} - known)
    if strangers:
        raise ValueError(f"lanes: no notebook named {strangers} in {notebooks_dir}")
    by_stem = {src.stem: (src, nb_params) for src, nb_params in plan}
    first, lanes = plan_lanes(list(by_stem), params.get("lanes"), jobs)
    done = [_execute(*by_stem[stem], out, progress_bar=True) for stem in first]
    if lanes:
        done += _run_lanes([[by_stem[s] for s in lane] for lane in lanes], out, jobs)
    return done


def _execute(src: Path, nb_params: dict[str, Any], out: Path, *, progress_bar: bool) -> Path:
    import papermill as pm

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
                        cwd=str(out), progress_bar=progress_bar)
    return target


def _run_lanes(lanes: list[list[tuple[Path, dict[str, Any]]]], out: Path, jobs: int) -> list[Path]:
    """Run lanes side by side, each kernel on one thread; re-raise the first failure
    after every lane has stopped (the other lanes' notebooks are kept)."""
    from concurrent.futures import ThreadPoolExecutor

    def run_lane(lane):
        return [_execute(src, nb_params, out, progress_bar=False) for src, nb_params in lane]

    thread_vars = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in thread_vars}
    os.environ.update({k: "1" for k in thread_vars})  # inherited by the kernels started below
    try:
        with ThreadPoolExecutor(max_workers=min(jobs, len(lanes))) as pool:
            futures = [pool.submit(run_lane, lane) for lane in lanes]
            errors = [f.exception() for f in futures]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    failed = [e for e in errors if e is not None]
    if failed:
        raise failed[0]
    return [p for f in futures for p in f.result()]
