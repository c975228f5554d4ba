"""The book's source: where its notebooks and pages are, and which parameters each
notebook declares and receives.

:mod:`gla.book` (running and building the book) and :mod:`gla.pages` (the pages written for
a run) both read it.
"""

from __future__ import annotations

import ast
import importlib.resources
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError

CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
RESERVED = ("notebooks", "lanes", "after_lanes")  # keys of a parameter file that are not notebook parameters
TABLE_SUFFIXES = (".csv", ".json", ".tsv")  # what a chapter's results folder holds as tables


def packaged_folder(folder: str) -> Path | None:
    """``gla/<folder>`` shipped as package data (an installed wheel), if present."""
    try:
        p = Path(str(importlib.resources.files("gla").joinpath(folder)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - namespace oddities
        return None
    return p if p.is_dir() else None


def find_source_dir(name: str, checkout_root: str | os.PathLike | None = None) -> Path:
    """Where the book's ``notebooks`` (or ``book`` pages) are: the checkout's folder when
    it exists, else the copy installed as package data (``gla/_book/<name>``).

    Raises :class:`gla.errors.UsageError` when neither exists.
    """
    root = Path(checkout_root) if checkout_root is not None else CHECKOUT_ROOT
    for cand in (root / name, packaged_folder(f"_book/{name}")):
        if cand is not None and cand.is_dir():
            return cand
    raise UsageError(f"no '{name}' folder: looked in the checkout ({root / name}) and in the installed package "
                     f"(gla/_book/{name}); run from a checkout of the project or install it with its book files")


def declared_parameters(notebook: str | os.PathLike) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import nbformat  # the book's extra (gla[book] / gla[test]); the rest of the package runs without it

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


def parameter_defaults(notebook: str | os.PathLike) -> dict[str, Any]:
    """The values the notebook's ``parameters`` cell assigns (those written as literals)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    out: dict[str, Any] = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            for node in ast.parse(cell.source).body:
                target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
                    node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None)
                if isinstance(target, ast.Name):
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        continue
            break
    return out


# Parameters that describe the shared weights: a chapter that names its own backbone or
# weights does not inherit them (the world's chapter, a few-shot chapter on RN50).
WEIGHTS_PARAMETERS = ("quick_gelu",)


def notebook_parameters(stem: str, declared: Iterable[str], params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters one notebook receives: shared ones it declares, then its overrides.

    ``quick_gelu`` says how the shared ``pretrained`` weights were trained: a chapter whose
    overrides name another ``backbone`` or ``pretrained`` does not receive the shared value
    (its own override, if any, applies).
    """
    declared = set(declared)
    overrides = dict((params.get("notebooks") or {}).get(stem) or {})
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise ValueError(f"params for notebook '{stem}': unknown parameter(s) {unknown}; "
                         f"the notebook declares {sorted(declared)}")
    shared = {k: v for k, v in params.items() if k not in RESERVED and k in declared}
    if {"backbone", "pretrained"} & set(overrides):
        for k in WEIGHTS_PARAMETERS:
            shared.pop(k, None)
    shared.update(overrides)
    return shared
