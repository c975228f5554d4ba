"""What the book's chapters declare about themselves, and where the table of contents puts
them.

The book's order and parts are its table of contents (``book/_toc.yml``): a chapter is an
entry ``generated/<stem>`` there, and a page that opens a part (``beyond``) introduces the
chapters that follow it in that part. What a chapter feeds is declared in its own notebook,
under the notebook metadata key ``gla``, so no module of the package names a chapter:

``claims``
    ``shows``: ids of the paper's claims (:data:`gla.claims.CLAIMS`) this chapter is the
    link target of; ``measures``: ``{table file: {claim id: preference}}``, the tables of
    this chapter that measure a claim (preference 1 is read first when several chapters'
    tables measure it); ``checks``: true for the chapter that checks every claim.
``reads``
    The stems of the chapters whose tables this chapter reads instead of running a model
    (``"*"``: every other chapter).

For example chapter 03 declares ``{"claims": {"shows": ["many_shot_vs_fine_tuned"],
"measures": {"many_shot.csv": {"many_shot_vs_fine_tuned": 1}}}}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .book_source import find_source_dir

GENERATED = "generated/"
METADATA_KEY = "gla"
EVERY_CHAPTER = "*"


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book: its place in the table of contents and what it declares.

    Attributes
    ----------
    stem : str
        The notebook's stem (``03_many_shot``).
    part : str
        The caption of the part it is in (empty for a book without parts).
    opened_by : str or None
        The page that opens its part (``beyond``), when the part starts with a page.
    shows : tuple of str
        Claim ids this chapter is the link target of.
    measures : mapping
        Table file -> {claim id: preference} (see the module docstring).
    checks_claims : bool
        Whether this chapter checks every claim.
    reads : tuple of str
        Stems of the chapters whose tables it reads (``("*",)``: every other chapter).
    """

    stem: str
    part: str = ""
    opened_by: str | None = None
    shows: tuple[str, ...] = ()
    measures: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    checks_claims: bool = False
    reads: tuple[str, ...] = ()


def toc_parts(book_dir: str | os.PathLike | None = None) -> list[tuple[str, list[str]]]:
    """The book's table of contents as (part caption, [file, ...]) in order (one part with
    an empty caption for a book without parts)."""
    book = Path(book_dir) if book_dir is not None else find_source_dir("book")
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    parts = toc.get("parts") or [{"caption": "", "chapters": toc.get("chapters", [])}]
    return [(p.get("caption", ""), [c["file"] for c in p.get("chapters", []) if "file" in c]) for p in parts]


def chapter_stems(book_dir: str | os.PathLike | None = None) -> list[str]:
    """The notebook chapters in the order of the book's table of contents."""
    return [f.removeprefix(GENERATED) for _, files in toc_parts(book_dir) for f in files if f.startswith(GENERATED)]


def declarations(notebook: str | os.PathLike) -> dict[str, Any]:
    """What a notebook declares under its metadata key ``gla`` (empty when nothing)."""
    meta = json.loads(Path(notebook).read_text()).get("metadata", {})
    found = meta.get(METADATA_KEY, {})
    if not isinstance(found, Mapping):
        raise ValueError(f"{notebook}: metadata '{METADATA_KEY}' must be a mapping, got {type(found).__name__}")
    return dict(found)


def _chapter(stem: str, part: str, opened_by: str | None, declared: Mapping[str, Any]) -> Chapter:
    claims = declared.get("claims", {}) or {}
    reads = declared.get("reads", ())
    return Chapter(stem, part, opened_by, shows=tuple(claims.get("shows", ())),
                   measures={t: dict(c) for t, c in (claims.get("measures") or {}).items()},
                   checks_claims=bool(claims.get("checks", False)),
                   reads=(reads,) if isinstance(reads, str) else tuple(reads))


def book_chapters(book_dir: str | os.PathLike | None = None, notebooks_dir: str | os.PathLike | None = None
                  ) -> list[Chapter]:
    """Every chapter of the table of contents, in order, with what its source notebook
    declares (a chapter whose notebook is absent declares nothing).

    Parameters
    ----------
    book_dir, notebooks_dir : path, optional
        The book's pages (with ``_toc.yml``) and the source notebooks (default: the
        checkout's or the installed copy, :func:`gla.book_source.find_source_dir`).
    """
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else find_source_dir("notebooks")
    out = []
    for caption, files in toc_parts(book_dir):
        opened_by = files[0] if files and not files[0].startswith(GENERATED) else None
        for f in files:
            if f.startswith(GENERATED):
                stem = f.removeprefix(GENERATED)
                src = nb_dir / f"{stem}.ipynb"
                out.append(_chapter(stem, caption, opened_by, declarations(src) if src.is_file() else {}))
    return out


def opened_by(page: str, chapters: Iterable[Chapter]) -> list[str]:
    """The stems of the chapters that the page ``page`` opens (those of its part), in order."""
    return [c.stem for c in chapters if c.opened_by == page]


@dataclass(frozen=True)
class ClaimSource:
    """Where a claim is shown and measured: the chapter it links to, and the results
    files (relative to the results folder) in the order they are read."""

    chapter: str
    evidence: tuple[str, ...]


def claim_sources(chapters: Iterable[Chapter]) -> dict[str, ClaimSource]:
    """Claim id -> :class:`ClaimSource`, from the chapters' declarations: the chapter that
    shows it (else the first that measures it), and every table that measures it, by
    preference and then in the book's order."""
    chapters = list(chapters)
    measured: dict[str, list[tuple[int, int, str]]] = {}
    for i, c in enumerate(chapters):
        for table, claims in c.measures.items():
            for claim, preference in claims.items():
                measured.setdefault(claim, []).append((int(preference), i, f"{c.stem}/{table}"))
    shown = {claim: c.stem for c in chapters for claim in c.shows}
    out = {}
    for claim in dict.fromkeys([*shown, *measured]):
        files = tuple(path for _, _, path in sorted(measured.get(claim, [])))
        chapter = shown.get(claim) or files[0].split("/", 1)[0]
        out[claim] = ClaimSource(chapter, files)
    return out
