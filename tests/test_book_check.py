"""The link check of a built book (gla.book_check) on small sites written here: it finds what
is broken and passes what resolves. tests/test_book.py runs it on the smoke book."""

from __future__ import annotations

import pytest

from gla.book_check import broken_links, main

PAGE = "<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def site(tmp_path, pages: dict[str, str]):
    for name, body in pages.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body if body.startswith("<!doctype") or not name.endswith(".html")
                        else PAGE.format(head='<link rel="stylesheet" href="{}_static/book.css">'.format(
                            "../" * name.count("/")), body=body))
    (tmp_path / "_static").mkdir(exist_ok=True)
    (tmp_path / "_static" / "book.css").write_text("body {}")
    return tmp_path


def test_a_book_whose_links_resolve_passes(tmp_path):
    root = site(tmp_path, {
        "index.html": '<!doctype html><meta http-equiv="Refresh" content="0; url=intro.html" />',
        "intro.html": '<h1 id="intro">Intro</h1><a href="generated/03_x.html#reading">the reading</a>'
                      '<a href="#intro">top</a><a href="#">menu</a><a href="https://example.org/x.html#nowhere">web</a>'
                      '<a href="method.html#term-label-prior">label prior</a><a href="mailto:a@b.c">mail</a>',
        "method.html": '<dl><dt id="term-label-prior">label prior</dt></dl><a href="intro.html">back</a>',
        "generated/03_x.html": '<section id="reading"><img src="../_images/fig.svg">'
                               '<a class="reference download internal" href="../_downloads/ab12/t.csv">t.csv</a>'
                               '<a href="../intro.html#intro">intro</a><a href="03_x.html?highlight=x#reading">me</a>'
                               '</section>',
        "_images/fig.svg": "<svg/>", "_downloads/ab12/t.csv": "a,b\n1,2\n"})
    assert broken_links(root) == []
    assert main([str(root)]) == 0


def test_every_kind_of_broken_link_is_reported(tmp_path, capsys):
    root = site(tmp_path, {
        "intro.html": '<a href="generated/03_x.html">gone chapter</a><a href="method.html#no-such-term">term</a>'
                      '<a href="#nowhere">anchor</a><a href="../../etc/passwd">outside</a>',
        "method.html": '<img src="_images/missing.svg"><a class="reference download internal" '
                       'href="_downloads/cd/t.csv">t.csv</a><script src="_static/missing.js"></script>'})
    problems = broken_links(root)
    assert sorted(problems) == sorted([
        "intro.html: a generated/03_x.html: no such file in the site",
        "intro.html: a method.html#no-such-term: no anchor '#no-such-term' in method.html",
        "intro.html: a #nowhere: no anchor '#nowhere' in intro.html",
        "intro.html: a ../../etc/passwd: points outside the site",
        "method.html: img _images/missing.svg: no such file in the site",
        "method.html: a _downloads/cd/t.csv: no such file in the site",
        "method.html: script _static/missing.js: no such file in the site"])
    assert main([str(root)]) == 1
    out = capsys.readouterr()
    assert "generated/03_x.html" in out.out and "7 broken link(s) in 2 page(s)" in out.err


def test_an_empty_folder_is_not_a_site(tmp_path):
    with pytest.raises(FileNotFoundError, match="no HTML page"):
        broken_links(tmp_path)
    assert main([str(tmp_path)]) == 2
