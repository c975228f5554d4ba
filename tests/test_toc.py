"""A book of the chapters a tree holds (gla.toc): references to absent documents become
text, pages and parts with nothing left go, and notebooks link again in a fuller tree."""

import nbformat
import yaml

from gla.toc import restrict_book, restrict_toc, unlink_absent, unlink_notebook

TOC = {"format": "jb-book", "root": "intro",
       "parts": [{"caption": "Method", "chapters": [{"file": "method"}, {"file": "generated/00_w"}]},
                 {"caption": "Paper", "chapters": [{"file": "generated/01_a"}, {"file": "generated/03_c"}]},
                 {"caption": "Beyond", "chapters": [{"file": "beyond"}, {"file": "generated/10_x"}]},
                 {"caption": "Using it", "chapters": [{"file": "results"}]}]}


def title(doc):
    return f"*{doc}* (not in this book)"


def test_references_to_absent_documents_become_text():
    docs = {"intro", "method", "generated/01_a", "results"}
    text = ("See {doc}`method` and {doc}`generated/03_c`, or {doc}`the many-shot table <generated/03_c>`.\n"
            "- **Kept** ({doc}`generated/01_a`) {glue:text}`generated/01_a.ipynb::x:.1f`\n"
            "- **Gone** ({doc}`generated/10_x`) rho {glue:text}`generated/10_x.ipynb::rho:.2f`\n"
            "  at exponent {glue:text}`generated/10_x.ipynb::e:.1f`.\n"
            "- **Also kept**\n\nA value {glue:text}`generated/10_x.ipynb::n` outside a list.")
    out = unlink_absent(text, "intro", docs, title)
    assert out == ("See {doc}`method` and *generated/03_c* (not in this book), or the many-shot table.\n"
                   "- **Kept** ({doc}`generated/01_a`) {glue:text}`generated/01_a.ipynb::x:.1f`\n"
                   "- **Also kept**\n\nA value (not run) outside a list.")
    # relative references from a chapter, and nothing to do when every document is there
    assert unlink_absent("{doc}`Many-shot <03_c>`", "generated/14_z", docs, title) == "Many-shot"
    assert unlink_absent("{doc}`Label bias <01_a>`", "generated/14_z", docs, title) == "{doc}`Label bias <01_a>`"
    assert unlink_absent(text, "intro", docs | {"generated/03_c", "generated/10_x"}, title) == text


def test_the_table_of_contents_keeps_the_parts_that_have_documents():
    docs = {"intro", "method", "generated/01_a", "results"}
    assert restrict_toc(TOC, docs)["parts"] == [
        {"caption": "Method", "chapters": [{"file": "method"}]},
        {"caption": "Paper", "chapters": [{"file": "generated/01_a"}]},
        {"caption": "Using it", "chapters": [{"file": "results"}]}]
    assert restrict_toc(TOC, docs)["root"] == "intro"


def _notebook(path, *markdown):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(m) for m in markdown]
    nbformat.write(nb, str(path))


def test_a_notebook_links_again_in_a_fuller_tree(tmp_path):
    path = tmp_path / "14_z.ipynb"
    _notebook(path, "# Claims", "{doc}`Many-shot <03_c>` and {doc}`Label bias <01_a>`")
    assert unlink_notebook(path, "generated/14_z", {"generated/01_a", "generated/14_z"}, title)
    cell = nbformat.read(str(path), as_version=4).cells[1]
    assert cell.source == "Many-shot and {doc}`Label bias <01_a>`" and "gla_linked_source" in cell.metadata
    assert not unlink_notebook(path, "generated/14_z", {"generated/01_a", "generated/14_z"}, title)  # no change
    assert unlink_notebook(path, "generated/14_z", {"generated/01_a", "generated/03_c", "generated/14_z"}, title)
    cell = nbformat.read(str(path), as_version=4).cells[1]
    assert cell.source == "{doc}`Many-shot <03_c>` and {doc}`Label bias <01_a>`"
    assert "gla_linked_source" not in cell.metadata


def test_restrict_book_leaves_out_pages_that_only_introduce_absent_chapters(tmp_path):
    book = tmp_path / "book"
    (book / "generated").mkdir(parents=True)
    (book / "_toc.yml").write_text(yaml.safe_dump(TOC))
    (book / "intro.md").write_text("# Intro\n\nSee {doc}`generated/01_a` and {doc}`generated/03_c`.\n")
    (book / "method.md").write_text("# Method\n")
    (book / "beyond.md").write_text("# Beyond\n\n- {doc}`generated/10_x`\n")
    (book / "results.md").write_text("# All results\n\nMany-shot: {doc}`generated/03_c`; see {doc}`intro`.\n")
    _notebook(book / "generated" / "01_a.ipynb", "# Label bias")
    src = tmp_path / "src"
    src.mkdir()
    _notebook(src / "03_c.ipynb", "# The many-shot table")
    docs = restrict_book(book, ["01_a"], sources=src)
    assert docs == ["intro", "method", "generated/01_a", "results"]
    assert yaml.safe_load((book / "_toc.yml").read_text()) == restrict_toc(TOC, set(docs))
    assert (book / "intro.md").read_text() == ("# Intro\n\nSee {doc}`generated/01_a` and *The many-shot table* "
                                                "(not in this book).\n")
    assert "{doc}`intro`" in (book / "results.md").read_text()
    assert restrict_book(book, ["01_a"], sources=src, leave_out=["results"]) == ["intro", "method",
                                                                                   "generated/01_a"]
