"""The book's pages that depend on the run: an introduction for a book built for a real
backbone, the "All results" page, and the table of published numbers beside the measured
ones.

The pages in ``book/`` describe the default book, which runs on the miniature world. When
the executed notebooks of a tree ran an open_clip backbone instead, :func:`gla.book.build_book`
replaces the introduction, the "Beyond the paper" opening and the "All results" page with
the pages written here. They say what each chapter ran as its executed notebook recorded
it (:func:`gla.book.executed_chapters`): the backbones, weights and data of its results
rows, or, for a chapter whose tables have no such rows, the parameters it ran with; and
they collect every published number of ``gla/data/published.json`` that matches a
measured one, side by side with its source. Only the chapters of the tree are named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .backbones import backbone_provider
from .book_source import TABLE_SUFFIXES
from .chapters import EVERY_CHAPTER, Chapter, book_chapters
from .report import RANDOM_WEIGHTS, published, weights_label

#: Published kinds that are a top-1 accuracy of one method (comparable with a measured row).
_TOP1 = "top1"
_COLUMNS = ("chapter", "backbone", "pretrained", "protocol", "dataset", "method", "shots", "published", "measured",
            "seeds", "source")
# Columns of a results row that name a setting (averaging over them would mix procedures).
_SETTINGS = ("protocol", "templates", "alpha", "prior_source", "source_prior", "sampling")


def described_by_shipped_pages(backbone: Any) -> bool:
    """Whether the book's shipped pages (``book/``) describe a chapter run on ``backbone``:
    its provider declares so (:attr:`gla.backbones.BackboneProvider.shipped_pages`, the
    world's does). A chapter that names no backbone runs none and is described either way."""
    if not isinstance(backbone, str) or not backbone:
        return True
    provider = backbone_provider(backbone)
    return provider is not None and provider.shipped_pages


def needs_run_pages(records: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a tree of executed chapters needs pages written for its run (:func:`real_pages`)
    instead of the shipped ones: True when a chapter ran a model the shipped pages do not
    describe (an open_clip model, or a plug-in's whose provider does not declare
    ``shipped_pages``).

    ``records`` maps chapter stems to the parameters each ran with
    (:func:`gla.book.executed_chapters`); one such chapter makes the book its run's (the
    world's chapter of a book for ViT-B-16 does not make it the world's).
    """
    return not all(described_by_shipped_pages(r.get("backbone")) for r in records.values())


def _read_rows(results_dir: Path) -> pd.DataFrame:
    frames = []
    for csv in sorted(results_dir.glob("*/*.csv")):
        try:
            df = pd.read_csv(csv, dtype={"shots": str})
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        if not {"backbone", "dataset", "method", "top1"} <= set(df.columns):
            continue
        df = df.assign(chapter=csv.parent.name)
        if "eval_set" in df.columns:  # a shifted set is measured under its own name
            df["dataset"] = df["eval_set"].fillna(df["dataset"])
        if "split" in df.columns:
            df = df[df["split"].astype(str).str.split(":").str[0].isin(["test", "nan"])]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["chapter", "backbone", "pretrained", "dataset", "method", "shots", "top1"])
    return pd.concat(frames, ignore_index=True)


def published_beside_measured(results_dir: str | Path) -> pd.DataFrame:
    """Every published top-1 number that a run measured too, with both values.

    Parameters
    ----------
    results_dir : path
        A ``results`` folder of ``gla book run`` (one sub-folder of tidy CSVs per chapter).

    Returns
    -------
    pandas.DataFrame
        One row per published record and chapter that measured it: ``chapter``,
        ``backbone``, ``pretrained`` (tag or checkpoint file name), ``dataset``, ``method``,
        ``shots``, ``published`` and ``measured`` (top-1 in percent; the measured value is
        the mean over the seeds the chapter ran, one row per setting: protocol, templates,
        alpha, prior and sampling), ``protocol``, ``seeds`` (how many), and ``source``.
        Backbones match with or without ``-quickgelu``; ``shots="all"`` matches the
        many-shot rows. Empty when no published number matches (e.g. the world's).
    """
    rows = _read_rows(Path(results_dir))
    out = []
    if len(rows):
        rows = rows.assign(backbone_key=rows["backbone"].astype(str).str.removesuffix("-quickgelu"),
                           weights=rows.get("pretrained", pd.Series("", index=rows.index)).map(weights_label),
                           shots=rows.get("shots", pd.Series("all", index=rows.index)).fillna("all").astype(str))
        for rec in published(kind=_TOP1).to_dict("records"):
            m = rows[(rows["backbone_key"] == str(rec["backbone"])) & (rows["dataset"] == rec["dataset"])
                     & (rows["method"] == rec["method"]) & (rows["shots"] == str(rec["shots"]))]
            if isinstance(rec.get("pretrained"), str):
                m = m[m["weights"] == rec["pretrained"]]
            # one measured value per setting: rows that differ in more than the seed stay apart
            keys = ["chapter", "backbone", "weights"] + [c for c in _SETTINGS if c in m.columns]
            for key, g in m.groupby(keys, sort=True, dropna=False):
                setting = dict(zip(keys, key))
                out.append({"chapter": setting["chapter"], "backbone": setting["backbone"],
                            "pretrained": setting["weights"], "protocol": setting.get("protocol", ""),
                            "dataset": rec["dataset"], "method": rec["method"], "shots": str(rec["shots"]),
                            "published": float(rec["value"]), "measured": 100 * float(g["top1"].mean()),
                            "seeds": int(g["seed"].nunique()) if "seed" in g else 1, "source": rec["source"]})
    return pd.DataFrame(out, columns=list(_COLUMNS))


def _data_of(run: Mapping[str, Any]) -> str:
    """The data a chapter ran on, from its recorded parameters."""
    names = []
    for key in ("dataset", "datasets"):
        v = run.get(key)
        if v:
            names += [v] if isinstance(v, str) else list(v)
    shifted = run.get("shifted")
    if isinstance(shifted, Mapping):
        shifted = sorted({s for v in shifted.values() for s in v})
    return _data_text(names, shifted or [], run.get("counts_file"))


def _data_text(names: list[str], shifted: list[str], counts_file: Any = None) -> str:
    text = ", ".join(f"`{n}`" for n in names) or "the chapter's default"
    if shifted:
        text += "; shifted: " + ", ".join(f"`{s}`" for s in shifted)
    if counts_file:
        text += f"; concept counts: `{Path(str(counts_file)).name}`"
    return text


def _unique(values) -> list:
    return list(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _rows_of(folder: Path) -> pd.DataFrame | None:
    """A chapter's tidy results rows (tables with backbone, pretrained, dataset and method
    columns), or None when it wrote none."""
    frames = []
    for csv in sorted(folder.glob("*.csv")):
        try:
            df = pd.read_csv(csv, dtype=str)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        if {"backbone", "pretrained", "dataset", "method"} <= set(df.columns) and len(df):
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else None


def _reads_text(reads: tuple[str, ...]) -> str:
    """What a chapter that reads other chapters' tables says in the model column's stead."""
    if not reads:
        return ""
    if EVERY_CHAPTER in reads:
        return "the tables of every other chapter"
    return "the tables of " + ", ".join(_doc(stem) for stem in reads)


def chapter_runs(records: Mapping[str, Mapping[str, Any]], results_dir: str | Path,
                 chapters: Sequence[Chapter] | None = None) -> pd.DataFrame:
    """What each executed chapter ran, in the book's order.

    Parameters
    ----------
    records : mapping
        Chapter stem -> the parameters its executed notebook ran with
        (:func:`gla.book.executed_chapters`).
    results_dir : path
        The ``results`` folder of the tree (one sub-folder of tables per chapter).
    chapters : sequence of Chapter, optional
        The book's chapters and their declarations (default: :func:`gla.chapters.book_chapters`).

    Returns
    -------
    pandas.DataFrame
        One row per chapter: ``chapter`` (stem), ``models`` (list of (backbone, weights
        file name or tag)), ``data`` (markdown), ``tables`` (file names of its tables),
        ``settings`` (markdown), ``from_rows`` (True when models and data come from its
        results rows, which say what ran also where smoke mode trimmed the parameters), and
        ``shipped`` (True for a chapter on a model the shipped pages describe, the world's:
        :func:`described_by_shipped_pages`), and what the chapter declares: ``reads``
        (markdown, empty for a chapter that runs a model), ``checks_claims`` and
        ``opened_by`` (the page that opens its part, e.g. ``beyond``).
    """
    declared = {c.stem: c for c in (book_chapters() if chapters is None else chapters)}
    stems = [c for c in declared if c in records] + sorted(c for c in records if c not in declared)
    out = []
    for stem in stems:
        rec = records[stem]
        chapter = declared.get(stem, Chapter(stem))
        folder = Path(results_dir) / stem
        rows = _rows_of(folder) if folder.is_dir() else None
        if rows is not None:
            weights = rows["pretrained"].fillna("").map(weights_label)
            models = list(dict.fromkeys(zip(rows["backbone"].fillna(""), weights)))
            datasets = _unique(rows["dataset"])
            shifted = [e for e in _unique(rows.get("eval_set", pd.Series(dtype=str))) if e not in datasets]
            data = _data_text(datasets, shifted, rec.get("counts_file"))
        else:
            models = [(str(rec.get("backbone", "")), weights_label(rec.get("pretrained")))]
            models += [(str(b[0]), weights_label(b[1])) for b in rec.get("extra_backbones") or []]
            data = _data_of(rec)
        tables = sorted(p.name for p in folder.iterdir()
                        if p.suffix in TABLE_SUFFIXES and not p.name.startswith(".")) if folder.is_dir() else []
        out.append({"chapter": stem, "models": models, "data": data, "tables": tables, "settings": _settings_of(rec),
                    "from_rows": rows is not None,
                    "shipped": described_by_shipped_pages(rec.get("backbone")), "reads": _reads_text(chapter.reads),
                    "checks_claims": chapter.checks_claims, "opened_by": chapter.opened_by})
    return pd.DataFrame(out, columns=["chapter", "models", "data", "tables", "settings", "from_rows", "shipped",
                                      "reads", "checks_claims", "opened_by"])


def _settings_of(rec: Mapping[str, Any]) -> str:
    parts = [f"{k.replace('_', ' ')} `{rec[k]}`" for k in ("protocol", "templates", "source_prior")
             if rec.get(k) is not None]
    if rec.get("quick_gelu") is not None:
        parts.append("QuickGELU weights" if rec["quick_gelu"] else "GELU weights")
    if rec.get("prior_file"):
        parts.append(f"prior file `{weights_label(rec['prior_file'])}`")
    if rec.get("smoke"):
        parts.append("smoke run (scaled down)")
    return ", ".join(parts)


def _markdown_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _model(backbone: Any, pretrained: Any) -> str:
    return f"`{backbone or ''}` (`{weights_label(pretrained) or RANDOM_WEIGHTS}`)"


def _doc(stem: str) -> str:
    return f"{{doc}}`generated/{stem}`"


def chapters_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The introduction's table: which model (backbone and weights) and data each chapter of
    :func:`chapter_runs` ran; a chapter on a model the shipped pages describe (the world's)
    is not this run's and is left out."""
    rows = []
    for r in runs.itertuples(index=False):
        if r.shipped:
            continue
        if r.reads:
            rows.append({"chapter": _doc(r.chapter), "model": "", "data": r.reads})
            continue
        for i, (backbone, weights) in enumerate(r.models or [("", "")]):
            rows.append({"chapter": _doc(r.chapter) if i == 0 else "", "model": _model(backbone, weights),
                         "data": r.data if i == 0 else "(another backbone of the same table)"})
    return pd.DataFrame(rows, columns=["chapter", "model", "data"])


def _main_model(runs: pd.DataFrame) -> tuple[str, str]:
    """The backbone and weights most chapters ran (the first chapter's on a tie)."""
    firsts = [r.models[0] for r in runs.itertuples(index=False)
              if not r.shipped and not r.reads and r.models]
    if not firsts:
        return "", ""
    counts = {m: firsts.count(m) for m in firsts}
    return max(counts, key=lambda m: (counts[m], -firsts.index(m)))


def intro_page(runs: pd.DataFrame, results_dir: str | Path) -> str:
    """The introduction of a book built for a real backbone (MyST markdown).

    Names the backbone, weights and data of every chapter as :func:`chapter_runs` found
    them, and shows the published numbers beside the measured ones
    (:func:`published_beside_measured`).
    """
    backbone, weights = _main_model(runs)
    pub = published_beside_measured(results_dir)
    if len(pub):
        shown = pub.assign(
            chapter=[f"{{doc}}`{c} <generated/{c}>`" for c in pub["chapter"]],
            published=pub["published"].map(lambda v: f"{v:.1f}"), measured=pub["measured"].map(lambda v: f"{v:.1f}"),
            difference=(pub["measured"] - pub["published"]).map(lambda v: f"{v:+.1f}"))
        shown = shown[["chapter", "backbone", "pretrained", "protocol", "dataset", "method", "shots", "published",
                       "measured", "difference", "seeds", "source"]]
        published_text = (
            "Top-1 accuracy in percent, the measured value averaged over the seeds the chapter ran. "
            "Each published number is quoted with its source; a difference of more than a point or so "
            "usually means a different procedure or data, which the chapter's notes help find.\n\n"
            + _markdown_table(shown))
    else:
        sources = "; ".join(dict.fromkeys(published()["source"]))
        published_text = (f"None of the published numbers this project may quote ({sources}) is for the "
                          "backbones and data of this run, so none is shown.")
    checking = [r.chapter for r in runs.itertuples(index=False) if r.checks_claims]
    claims = (f" and {_doc(checking[0])} checks each claim of the paper against the numbers of this run"
              if checking else "")
    return f"""# Generalized Logit Adjustment with {backbone} ({weights})

This book reruns the experiments of the NeurIPS 2023 paper *Generalized Logit Adjustment:
Calibrating Fine-tuned Models by Removing Label Bias in Foundation Models*
{{cite}}`zhu2023gla` with the open_clip backbone `{backbone}` (weights `{weights}`)
{{cite}}`ilharco2021openclip`, by the paper's procedure as the `gla` package implements it
(see {{doc}}`method` and {{doc}}`reproduce`). It was run with `gla book run` and built with
`gla book build`; every number and figure comes from the executed notebooks of this build.

## What each chapter ran

As each chapter's executed notebook recorded it: the backbones, weights and data of its
results rows, or, where its tables have none, the parameters it ran with.

{_markdown_table(chapters_table(runs))}

## Published numbers beside the measured ones

{published_text}

## Reading it

{{doc}}`method` explains the method. Every chapter ends with links to its tables and
figures; {{doc}}`results` has all of them in one archive{claims}.
"""


#: The page that opens "Beyond the paper": it lists the chapters of its part (``book/_toc.yml``).
BEYOND_PAGE = "beyond"


def beyond_page(runs: pd.DataFrame) -> str | None:
    """The opening of "Beyond the paper" for a book built for a real backbone: the
    chapters of its part in the table of contents (None when the tree holds none)."""
    backbone, _ = _main_model(runs)
    present = [r.chapter for r in runs.itertuples(index=False) if r.opened_by == BEYOND_PAGE]
    if not present:
        return None
    items = "\n".join(f"- {_doc(c)}" for c in present)
    return f"""# Beyond the paper

The chapters of this part ask what the paper could not: how the estimated prior relates to
pretraining frequency, how the estimators compare, how many labelled images the estimate
needs, and whether GLA is calibrated. Here they run with `{backbone}` on the data named in
{{doc}}`intro`; each chapter says what its numbers show for this backbone. Where a
chapter needs a pretraining prior that is known, it says which source it uses.

{items}
"""


def results_page(runs: pd.DataFrame) -> str:
    """The "All results" page for a book built for a real backbone: the archive, and each
    chapter's tables and settings as its executed notebook recorded them."""
    table = pd.DataFrame([{"chapter": _doc(r.chapter), "tables": ", ".join(f"`{t}`" for t in r.tables),
                           "settings": r.settings} for r in runs.itertuples(index=False)],
                         columns=["chapter", "tables", "settings"])
    example = next((r for r in runs.itertuples(index=False) if r.tables and not r.shipped), None)
    folders = f" (`{example.chapter}/{example.tables[0]}` is a table of {_doc(example.chapter)})" if example else ""
    backbone, _ = _main_model(runs)
    return f"""# All results

Every table the chapters computed, as CSV and JSON, is in one archive:
{{download}}`results.zip <generated/results.zip>`. Its folders are named after the chapters{folders},
and each chapter links its own files and figures at its end, under **Downloads**.

| chapter | tables | settings |
|---|---|---|
""" + "\n".join(f"| {r.chapter} | {r.tables} | {r.settings} |" for r in table.itertuples(index=False)) + f"""

The tables are tidy: one row per measurement, with the backbone, dataset, method, split,
number of shots and seed that produced it, so they can be read back with
`pandas.read_csv` and compared with another run. These are the numbers of this build, with
`{backbone}` and the data named in {{doc}}`intro`.
"""


def real_pages(runs: pd.DataFrame, results_dir: str | Path) -> dict[str, str | None]:
    """The pages that replace ``book/``'s for a real backbone: file name -> MyST text (None:
    the page has no chapter in this tree and is left out)."""
    return {"intro.md": intro_page(runs, results_dir), f"{BEYOND_PAGE}.md": beyond_page(runs),
            "results.md": results_page(runs)}
