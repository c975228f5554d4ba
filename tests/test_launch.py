"""Rerunning a chapter from its page (gla.book_launch): the repository the book names, the
notebooks' install cell, and where the launch buttons point. The built pages are checked in
tests/test_pages.py (a small book) and tests/test_book.py (the smoke book); a notebook run
in a fresh virtual environment in tests/test_fresh_install.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gla.book_launch import (
    INSTALL_TAGS,
    install_cell_source,
    is_install_cell,
    relink_launch_buttons,
    repository_url,
    write_install_cells,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "_config.yml"


def test_the_repository_is_named_once_everywhere():
    """_config.yml's repository (launch buttons), pyproject's [project.urls] and CITATION.cff
    name the same address."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    url = repository_url(CONFIG)
    assert url.startswith("https://github.com/") and len(url.split("/")) == 5, url
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"] == url
    assert yaml.safe_load((ROOT / "CITATION.cff").read_text())["repository-code"] == url
    config = yaml.safe_load(CONFIG.read_text())
    assert config["repository"]["path_to_book"] == "book" and config["repository"]["branch"] == "main"
    launch = config["launch_buttons"]
    assert launch["colab_url"] == "https://colab.research.google.com" and launch["binderhub_url"]
    assert "gla.book_launch" in config["sphinx"]["extra_extensions"]
    assert config["sphinx"]["config"]["gla_launch_paths"] == {"book/generated/": "notebooks/"}


def test_every_notebook_starts_with_the_install_cell_the_book_hides():
    url = repository_url(CONFIG)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        first = json.loads(path.read_text())["cells"][0]
        first = {**first, "source": "".join(first["source"])}
        assert is_install_cell(first, url), f"{path.name}: the first cell is not the install cell for {url}"
        assert set(INSTALL_TAGS) <= set(first["metadata"]["tags"])


def test_the_install_cell_installs_only_where_gla_is_missing(tmp_path, monkeypatch):
    """Run the cell's code: with gla importable it calls nothing; without, pip installs the
    repository's package (or $GLA_INSTALL_FROM) into the kernel's own interpreter."""
    import importlib.util
    import subprocess
    import sys

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    source = install_cell_source("https://github.com/o/r")
    exec(compile(source, "install-cell", "exec"), {})
    assert calls == []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("GLA_INSTALL_FROM", raising=False)
    exec(compile(source, "install-cell", "exec"), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", "gla[book] @ git+https://github.com/o/r"]]
    monkeypatch.setenv("GLA_INSTALL_FROM", str(tmp_path / "gla-0.2.0-py3-none-any.whl"))
    exec(compile(source, "install-cell", "exec"), {})
    assert calls[-1][-1].endswith("gla-0.2.0-py3-none-any.whl")


def test_write_install_cells_adds_or_replaces_the_first_cell(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter")]
    nbformat.write(nb, str(tmp_path / "01_a.ipynb"))
    assert write_install_cells(tmp_path, "https://github.com/o/old") == [tmp_path / "01_a.ipynb"]
    assert write_install_cells(tmp_path, "https://github.com/o/old") == []  # already there
    assert write_install_cells(tmp_path, "https://github.com/o/new") == [tmp_path / "01_a.ipynb"]
    cells = nbformat.read(str(tmp_path / "01_a.ipynb"), as_version=4).cells
    assert len(cells) == 2 and is_install_cell(cells[0], "https://github.com/o/new") and cells[1].source == "# A chapter"


class _App:
    class config:
        html_theme_options = {"path_to_docs": "book"}
        gla_launch_paths = {"book/generated/": "notebooks/"}


def _buttons(page):
    return [{"label": "launch-buttons", "buttons": [
        {"text": "Binder", "url": f"https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/book/{page}.ipynb"},
        {"text": "Colab", "url": f"https://colab.research.google.com/github/o/r/blob/main/book/{page}.ipynb"}]},
        {"label": "download-buttons", "buttons": [{"url": f"_sources/{page}.ipynb"}]}]


@pytest.mark.parametrize("page, expected", [("generated/03_many_shot", "notebooks/03_many_shot.ipynb"),
                                            ("method", "book/method.ipynb")])
def test_launch_buttons_open_the_source_notebook(page, expected):
    context = {"header_buttons": _buttons(page)}
    relink_launch_buttons(_App, page, "page.html", context, None)
    launch, download = context["header_buttons"]
    assert all(b["url"].endswith(expected) for b in launch["buttons"]), launch
    assert download["buttons"][0]["url"] == f"_sources/{page}.ipynb"  # other buttons are left alone
