"""A book of the chapters a tree holds.

A tree of executed notebooks may hold some chapters only (``gla book run --only``). The
book built from it has those chapters: its table of contents leaves the others out, and a
cross-reference to a document the book does not have becomes plain text, so that Jupyter
Book builds with warnings as errors. :func:`restrict_book` does both on an assembled book
folder; :func:`unlink_absent` is the rule for one text.

The rules: a ``{doc}`` reference to an absent document becomes its title (the title the
reference gives, else the document's own); a list item that quotes a value glued in an
absent notebook (``{glue:text}`nb.ipynb::key```) is left out, and such a reference
elsewhere reads "(not run)"; a page all of whose cross-references name absent documents
(the opening of a part none of whose chapters ran) is left out with them; a part left
without a document is dropped. Notebooks keep their original text in their cell metadata
(``gla_linked_source``), so the next build of a fuller tree links them again.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

DOC_ROLE = re.compile(r"\{doc\}`(?P<text>[^`<]*?)\s*(?:<(?P<target>[^>`]+)>)?`")
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(?P<nb>[^`:]+?\.ipynb)::[^`]*`")
LINKED = "gla_linked_source"
NOT_RUN = "(not run)"


def resolve(current: str, target: str) -> str:
    """The document a reference in document ``current`` names (names relative to the book
    root, without suffix; a target starting with ``/`` is relative to the root)."""
    target = target.strip()
    if target.startswith("/"):
        return posixpath.normpath(target[1:])
    return posixpath.normpath(posixpath.join(posixpath.dirname(current), target))


def _doc_target(m: re.Match) -> str:
    return (m.group("target") or m.group("text")).strip()


def references(text: str, current: str) -> list[str]:
    """The documents that ``{doc}`` references in ``text`` (of document ``current``) name."""
    return [resolve(current, _doc_target(m)) for m in DOC_ROLE.finditer(text)]


def _glue_document(current: str, notebook: str) -> str:
    return resolve(current, notebook.removesuffix(".ipynb"))


def _list_items(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of the top-level list items of a markdown text."""
    items, start = [], None
    for i, line in enumerate(lines):
        if re.match(r"[-*] ", line):
            if start is not None:
                items.append((start, i))
            start = i
        elif start is not None and not (line.startswith((" ", "\t")) and line.strip()):
            items.append((start, i))
            start = None
    if start is not None:
        items.append((start, len(lines)))
    return items


def unlink_absent(text: str, current: str, documents: Iterable[str], title: Callable[[str], str]) -> str:
    """``text`` (MyST markdown of document ``current``) without links to absent documents.

    Parameters
    ----------
    text : str
    current : str
        The document the text belongs to (``intro``, ``generated/14_claims``).
    documents : iterable of str
        The documents the book has.
    title : callable
        ``title(document) -> str``: what an absent document is called.

    Returns
    -------
    str
        The text with the rules of the module docstring applied (unchanged when every
        reference resolves).
    """
    documents = set(documents)
    lines = text.split("\n")
    drop = set()
    for start, end in _list_items(lines):
        item = "\n".join(lines[start:end])
        if any(_glue_document(current, m.group("nb")) not in documents for m in GLUE_ROLE.finditer(item)):
            drop.update(range(start, end))
    text = "\n".join(line for i, line in enumerate(lines) if i not in drop)

    def doc(m: re.Match) -> str:
        target = resolve(current, _doc_target(m))
        if target in documents:
            return m.group(0)
        return m.group("text").strip() if m.group("target") else title(target)

    def glue(m: re.Match) -> str:
        return m.group(0) if _glue_document(current, m.group("nb")) in documents else NOT_RUN

    return GLUE_ROLE.sub(glue, DOC_ROLE.sub(doc, text))


def restrict_toc(toc: Mapping[str, Any], documents: Iterable[str]) -> dict[str, Any]:
    """A ``jb-book`` table of contents without the files not in ``documents``; a part (or
    a chapter's sections) left empty is dropped. The root is kept."""
    documents = set(documents)

    def entries(items):
        out = []
        for e in items or []:
            if "file" in e and e["file"] not in documents:
                continue
            e = dict(e)
            if "sections" in e:
                e["sections"] = entries(e["sections"])
                if not e["sections"]:
                    del e["sections"]
            out.append(e)
        return out

    out = dict(toc)
    if "parts" in toc:
        parts = []
        for part in toc["parts"]:
            chapters = entries(part.get("chapters"))
            if chapters:
                parts.append({**part, "chapters": chapters})
        out["parts"] = parts
    if "chapters" in toc:
        out["chapters"] = entries(toc["chapters"])
    return out


def toc_files(toc: Mapping[str, Any]) -> list[str]:
    """Every file a ``jb-book`` table of contents names, the root first."""
    files = [toc["root"]] if toc.get("root") else []

    def walk(items):
        for e in items or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def _page(book: Path, doc: str) -> Path | None:
    for suffix in (".md", ".ipynb"):
        if (book / f"{doc}{suffix}").is_file():
            return book / f"{doc}{suffix}"
    return None


def _markdown_title(text: str) -> str | None:
    m = re.search(r"^# (.+)$", text, flags=re.M)
    return m.group(1).strip() if m else None


def _notebook_title(path: Path) -> str | None:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    return next((t for c in nb.cells if c.cell_type == "markdown" for t in [_markdown_title(c.source)] if t), None)


def unlink_notebook(path: str | Path, current: str, documents: Iterable[str], title: Callable[[str], str]) -> bool:
    """Apply :func:`unlink_absent` to a notebook's markdown cells, keeping each changed
    cell's original text in its metadata (and restoring it first, so a fuller tree links
    again); the file is rewritten only when a cell changes. Returns whether it was."""
    import nbformat

    from .cache import atomic_write_text

    nb = nbformat.read(str(path), as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        original = cell.metadata.get(LINKED, cell.source)
        text = unlink_absent(original, current, documents, title)
        if text != cell.source or (text == original and LINKED in cell.metadata):
            changed = True
            cell.source = text
            if text == original:
                cell.metadata.pop(LINKED, None)
            else:
                cell.metadata[LINKED] = original
    if changed:
        atomic_write_text(path, nbformat.writes(nb))
    return changed


def restrict_book(book: str | Path, chapters: Iterable[str], sources: Path | None = None,
                  leave_out: Iterable[str] = ()) -> list[str]:
    """Make an assembled book folder a book of ``chapters`` only.

    Parameters
    ----------
    book : path
        The book folder (``_toc.yml``, pages, ``generated/<stem>.ipynb``).
    chapters : iterable of str
        Stems of the executed notebooks the book has.
    sources : path, optional
        The source notebooks, whose first heading names a chapter the book lacks.
    leave_out : iterable of str
        Pages to leave out as well (a run's page that has no chapter in the tree).

    Returns
    -------
    list of str
        The documents of the book, in the order of its table of contents.
    """
    import yaml

    from .cache import atomic_write_text

    book = Path(book)
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    chapters = set(chapters)
    files = toc_files(toc)
    documents = {f for f in files if (f.split("/", 1)[1] in chapters if f.startswith("generated/")
                                      else _page(book, f) is not None)} - set(leave_out)
    root = toc.get("root")
    while True:  # pages whose every reference is absent go with what they introduce
        orphans = {f for f in documents - {root} if not f.startswith("generated/")
                   for refs in [references(_page(book, f).read_text(), f)] if refs and not set(refs) & documents}
        if not orphans:
            break
        documents -= orphans

    def title(doc: str) -> str:
        page = _page(book, doc)
        found = _markdown_title(page.read_text()) if page is not None and page.suffix == ".md" else None
        if found is None and doc.startswith("generated/") and sources is not None:
            src = sources / f"{doc.split('/', 1)[1]}.ipynb"
            found = _notebook_title(src) if src.is_file() else None
        return f"*{found or doc.rsplit('/', 1)[-1]}* (not in this book)"

    for doc in documents:
        page = _page(book, doc)
        if page.suffix == ".md":
            text = page.read_text()
            new = unlink_absent(text, doc, documents, title)
            if new != text:
                page.write_text(new)
        else:
            unlink_notebook(page, doc, documents, title)
    restricted = restrict_toc(toc, documents)
    if restricted != toc:
        atomic_write_text(book / "_toc.yml", yaml.safe_dump(restricted, sort_keys=False))
    return [f for f in toc_files(restricted)]
