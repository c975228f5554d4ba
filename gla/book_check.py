"""Check a built book's internal links, offline: ``python -m gla.book_check _build/html``.

Every page of the site is read, and every reference from one page to the site is followed:
links between chapters and to their sections (``{doc}``, ``{ref}``, glossary terms: an
anchor ``page.html#id`` must name an element of that page), figures and images, downloads
(``_downloads/...``), stylesheets, scripts and the redirect of ``index.html``. Addresses of
other sites (``https://``, ``mailto:``) are not followed: the book must read the same
without a network. The book's workflow runs it after ``make book``; the tests run it on the
smoke book.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Attributes that point somewhere, by tag.
_POINTERS = {"a": ("href",), "link": ("href",), "img": ("src",), "script": ("src",), "source": ("src", "srcset"),
             "iframe": ("src",), "object": ("data",), "video": ("src", "poster"), "audio": ("src",)}
# Folders of the site that hold vendored assets, not pages of the book.
SKIPPED = ("_static", "_sources")


@dataclass(frozen=True)
class Reference:
    """One reference from a page of the site: the page, the tag and the address."""

    page: str
    tag: str
    target: str


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        for attr in _POINTERS.get(tag, ()):
            if attr in a:
                values = [v.strip().split()[0] for v in a[attr].split(",") if v.strip()] if attr == "srcset" \
                    else [a[attr]]
                self.refs += [(tag, v) for v in values]
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            m = re.search(r"url\s*=\s*['\"]?([^'\"\s;]+)", a.get("content", ""), flags=re.I)
            if m:
                self.refs.append(("meta", m.group(1)))


def _is_external(target: str) -> bool:
    parts = urlsplit(target)
    return bool(parts.scheme or parts.netloc)


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html")
                  if not set(p.relative_to(site).parts[:-1]) & set(SKIPPED))


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(errors="replace"))
    parser.close()
    return parser


def broken_links(site: str | os.PathLike) -> list[str]:
    """Every internal reference of a built site that does not resolve.

    Parameters
    ----------
    site : path
        The built HTML folder (``_build/html``).

    Returns
    -------
    list of str
        ``"<page>: <tag> <address>: <why>"`` for each reference to a file the site lacks,
        to a place outside the site, or to an anchor its page does not have; empty when
        every link resolves.

    Raises
    ------
    FileNotFoundError
        When ``site`` holds no HTML page.
    """
    root = Path(site).resolve()
    pages = _pages(root)
    if not pages:
        raise FileNotFoundError(f"site: no HTML page in {root}")
    parsed = {p.relative_to(root).as_posix(): _parse(p) for p in pages}
    ids: dict[str, set[str]] = {name: parser.ids for name, parser in parsed.items()}
    problems = []
    for name, parser in parsed.items():
        for ref in (Reference(name, tag, target) for tag, target in parser.refs):
            why = _why_broken(root, ref, ids)
            if why:
                problems.append(f"{ref.page}: {ref.tag} {ref.target}: {why}")
    return problems


def _why_broken(root: Path, ref: Reference, ids: dict[str, set[str]]) -> str | None:
    target = ref.target.strip()
    if not target or target == "#" or _is_external(target):  # javascript: and data: have a scheme too
        return None
    parts = urlsplit(target)
    path, fragment = unquote(parts.path), unquote(parts.fragment)
    if path:
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(ref.page), path))
        if joined == ".." or joined.startswith("../") or joined.startswith("/"):
            return "points outside the site"
        resolved = root / joined
        if resolved.is_dir():
            resolved, joined = resolved / "index.html", posixpath.join(joined, "index.html")
        if not resolved.is_file():
            return "no such file in the site"
    else:
        joined = ref.page
    if fragment and joined.endswith(".html"):
        known = ids.get(joined)
        if known is None:  # a page the walk skipped (under _static): read it now
            known = ids.setdefault(joined, _parse(root / joined).ids)
        if fragment not in known:
            return f"no anchor '#{fragment}' in {joined}"
    return None


def main(argv: Iterable[str] | None = None) -> int:
    """Check the site named on the command line; print each broken link; 1 when any."""
    parser = argparse.ArgumentParser(prog="python -m gla.book_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("site", help="the built HTML folder (_build/html)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        problems = broken_links(args.site)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    pages = len(_pages(Path(args.site).resolve()))
    print(f"{len(problems)} broken link(s) in {pages} page(s) of {args.site}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
