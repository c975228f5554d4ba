"""Tables that fit the page: classes on the HTML tables of the chapters' outputs that the
book's stylesheet (``book/_static/gla.css``) reads.

A chapter shows pandas tables (``DataFrame`` and ``Styler`` HTML). On a page 800 pixels
wide a long statement squeezed into a narrow column, or a verdict broken over two lines,
is hard to read, and a table wider than the page scrolls its row labels out of view.
:func:`fit_tables` marks, in every table:

- ``gla-fit`` on the table: the stylesheet keeps its data cells on one line;
- ``gla-text`` on the cells of a column of prose (a cell of more than
  :data:`TEXT_CHARS` characters with spaces): they wrap, at a readable width;
- ``gla-name`` on a cell that holds one long identifier or path (no space, with ``_`` or
  ``/``, more than :data:`NAME_CHARS` characters): it may break after each ``_`` and ``/``
  (a ``<wbr>`` there), not inside a word;
- ``gla-key`` on the first cell of each full row (the row label): it stays in view when a
  wide table scrolls sideways in its box.
"""

from __future__ import annotations

import html as html_lib
import re

TEXT_CHARS = 32  # a cell longer than this, with spaces, is prose: its column wraps
NAME_CHARS = 12  # an identifier or path longer than this may break after its _ and /

_TABLE = re.compile(r"<table\b[^>]*>.*?</table>", re.S | re.I)
_ROW = re.compile(r"<tr\b[^>]*>.*?</tr>", re.S | re.I)
_CELL = re.compile(r"<(t[dh])\b([^>]*)>(.*?)</\1\s*>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_SPAN = re.compile(r"""\bcolspan\s*=\s*["']?(\d+)""", re.I)
_CLASS = re.compile(r"""\bclass\s*=\s*(["'])(.*?)\1""", re.S | re.I)


def _text(inner: str) -> str:
    return " ".join(html_lib.unescape(_TAG.sub(" ", inner)).split())


def _is_name(inner: str) -> bool:
    """A cell of one long identifier or path, written as plain text."""
    text = inner.strip()
    return ("<" not in text and "&" not in text and len(text) > NAME_CHARS and not any(c.isspace() for c in text)
            and ("_" in text or "/" in text))


def _with_class(attrs: str, name: str) -> str:
    """Opening-tag attributes with the class ``name`` added."""
    m = _CLASS.search(attrs)
    if m:
        classes = m.group(2).split()
        if name in classes:
            return attrs
        return attrs[:m.start(2)] + " ".join(classes + [name]) + attrs[m.end(2):]
    return f'{attrs} class="{name}"'


def _width(cells: list[tuple[str, str, str]]) -> int:
    return sum(int(m.group(1)) if (m := _SPAN.search(attrs)) else 1 for _, attrs, _ in cells)


def _fit_table(table: str) -> str:
    start = table.index(">") + 1
    opening, body = table[:start], table[start:]
    if "gla-fit" in opening:
        return table  # already fitted
    rows = [(m, _CELL.findall(m.group(0))) for m in _ROW.finditer(body)]
    prose: set[int] = set()
    for _, cells in rows:
        data = [inner for tag, _, inner in cells if tag.lower() == "td"]
        for j, inner in enumerate(data):
            text = _text(inner)
            if len(text) > TEXT_CHARS and " " in text:
                prose.add(j)
    full = max((_width(cells) for _, cells in rows), default=0)

    def fit_row(m: re.Match, cells: list[tuple[str, str, str]]) -> str:
        key = _width(cells) == full  # a row under a spanning label (a MultiIndex) has fewer cells
        seen = {"cell": 0, "td": 0}

        def fit_cell(c: re.Match) -> str:
            tag, attrs, inner = c.group(1), c.group(2), c.group(3)
            if _is_name(inner):
                attrs, inner = _with_class(attrs, "gla-name"), re.sub(r"([_/])", r"\1<wbr>", inner)
            if seen["cell"] == 0 and key:
                attrs = _with_class(attrs, "gla-key")
            if tag.lower() == "td":
                if seen["td"] in prose:
                    attrs = _with_class(attrs, "gla-text")
                seen["td"] += 1
            seen["cell"] += 1
            return f"<{tag}{attrs}>{inner}</{tag}>"

        return _CELL.sub(fit_cell, m.group(0))

    out, last = [], 0
    for m, cells in rows:
        out += [body[last:m.start()], fit_row(m, cells)]
        last = m.end()
    out.append(body[last:])
    return _with_tag_class(opening, "gla-fit") + "".join(out)


def _with_tag_class(opening: str, name: str) -> str:
    return f"<table{_with_class(opening[len('<table'):-1], name)}>"


def fit_tables(html: str) -> str:
    """``html`` with its tables marked for the book's stylesheet (see the module docstring).

    Parameters
    ----------
    html : str
        HTML as pandas writes it (``DataFrame.to_html``, ``Styler.to_html``), possibly with
        other markup around the tables.

    Returns
    -------
    str
        The same HTML with classes added to the tables and their cells; a table marked
        before is left as it is, so applying it twice changes nothing.
    """
    return _TABLE.sub(lambda m: _fit_table(m.group(0)), html)
