"""Rerunning a chapter from its page: the notebooks' install cell and the book's launch links.

Every chapter page of the book has launch buttons (Jupyter Book's ``launch_buttons``: Colab
and Binder) that open the chapter's notebook from the repository named in ``_config.yml``
(``repository: url``). Two things make that work:

- the book shows executed copies of the notebooks (``book/generated/<stem>.ipynb``, which
  the repository does not hold), so :func:`setup`, a Sphinx extension listed in
  ``_config.yml``, points each button at the source notebook instead
  (``notebooks/<stem>.ipynb``, by the ``gla_launch_paths`` setting);
- Colab has no ``gla`` package, so every notebook's first cell
  (:func:`install_cell_source`, tagged ``remove-cell``: the book does not show it) installs
  it from the repository when it is missing, and does nothing where it is installed.
  ``GLA_INSTALL_FROM`` names another pip requirement to install instead (a wheel, a local
  checkout, a fork).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

INSTALL_TAGS = ("remove-cell",)
INSTALL_VARIABLE = "GLA_INSTALL_FROM"


def repository_url(config: str | os.PathLike) -> str:
    """The repository URL that a Jupyter Book ``_config.yml`` declares (``repository: url``).

    Raises
    ------
    ValueError
        When the file declares none.
    """
    import yaml

    url = ((yaml.safe_load(Path(config).read_text()) or {}).get("repository") or {}).get("url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"{config}: no repository url (expected 'repository: url: https://...')")
    return url.rstrip("/")


def install_requirement(url: str) -> str:
    """The pip requirement that installs the package with its book extra from ``url``."""
    return f"gla[book] @ git+{url.rstrip('/')}"


def install_cell_source(url: str) -> str:
    """The source of every notebook's first cell: install ``gla`` from ``url`` (the
    repository) when it is missing, or the requirement in ``$GLA_INSTALL_FROM``."""
    return (
        "# Where gla is missing (Colab, a fresh Jupyter), install it from the repository; where it is\n"
        f"# installed this cell does nothing. {INSTALL_VARIABLE} names another pip requirement (a wheel, a fork).\n"
        "import importlib.util\n"
        "import os\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if importlib.util.find_spec("gla") is None:\n'
        f'    requirement = os.environ.get("{INSTALL_VARIABLE}", "{install_requirement(url)}")\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement], check=True)\n'
        "    importlib.invalidate_caches()"
    )


def is_install_cell(cell: Any, url: str) -> bool:
    """Whether a notebook cell is the install cell for ``url``, tagged so that the book
    leaves it out."""
    tags = cell.get("metadata", {}).get("tags", [])
    return (cell.get("cell_type") == "code" and cell.get("source") == install_cell_source(url)
            and all(t in tags for t in INSTALL_TAGS))


def write_install_cells(notebooks_dir: str | os.PathLike, url: str) -> list[Path]:
    """Make the install cell for ``url`` the first cell of every notebook in ``notebooks_dir``
    (replacing an earlier install cell); returns the notebooks changed. For maintainers,
    after the repository moves."""
    import nbformat

    changed = []
    for path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        if nb.cells and is_install_cell(nb.cells[0], url):
            continue
        if nb.cells and nb.cells[0].cell_type == "code" and INSTALL_VARIABLE in nb.cells[0].source:
            nb.cells = nb.cells[1:]  # an install cell for another repository
        cell = nbformat.v4.new_code_cell(install_cell_source(url))
        cell.metadata["tags"] = list(INSTALL_TAGS)
        nb.cells.insert(0, cell)
        nbformat.write(nb, str(path))
        changed.append(path)
    return changed


# --------------------------------------------------------------------------- Sphinx extension

def _source_notebook(docname: str, path_to_docs: str, paths: dict[str, str]) -> tuple[str, str] | None:
    """(the page's path in the repository as the theme writes it, the source notebook's path)."""
    base = f"{path_to_docs.strip('/')}/" if path_to_docs.strip("/") else ""
    page = f"{base}{docname}.ipynb"
    for prefix, replacement in paths.items():
        if page.startswith(prefix):
            return page, replacement + page[len(prefix):]
    return None


def relink_launch_buttons(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """``html-page-context`` handler, after the theme's: the launch buttons of a page whose
    repository path starts with a key of ``gla_launch_paths`` open the notebook at the
    value's path instead (``book/generated/03_x.ipynb`` -> ``notebooks/03_x.ipynb``)."""
    options = app.config.html_theme_options or {}
    found = _source_notebook(pagename, options.get("path_to_docs", ""), app.config.gla_launch_paths or {})
    if found is None:
        return
    page, source = found
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if "url" in button:
                button["url"] = button["url"].replace(page, source)


def setup(app: Any) -> dict[str, Any]:
    """The Sphinx extension (``sphinx: extra_extensions: [gla.book_launch]`` in ``_config.yml``)."""
    app.add_config_value("gla_launch_paths", {}, "html")
    app.connect("html-page-context", relink_launch_buttons, priority=600)  # the theme adds its buttons at 501
    return {"parallel_read_safe": True, "parallel_write_safe": True}
