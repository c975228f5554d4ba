"""The book's pages that depend on the run: an introduction for a book built for a real
backbone, and the table of published numbers beside the measured ones.

The pages in ``book/`` describe the default book, which runs on the miniature world. When
a parameter file names an open_clip backbone instead, :func:`gla.book.build_book` replaces
the introduction, the "Beyond the paper" opening and the "All results" page with the pages
written here: they name the backbones, pretrained weights and datasets of the run (from the
parameter file), and collect every published number of ``gla/data/published.json`` that
matches a measured one, side by side with its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .book_source import declared_parameters, find_source_dir, notebook_parameters
from .report import published


def book_chapters() -> list[str]:
    """The notebook chapters in the order of the book's table of contents (``book/_toc.yml``)."""
    import yaml

    toc = yaml.safe_load((find_source_dir("book") / "_toc.yml").read_text())
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [f.split("/", 1)[1] for f in files if f.startswith("generated/")]


#: Chapters that run no model: they read other chapters' tables.
READS_TABLES: dict[str, str] = {"07_few_shot_robustness": "the tables of {doc}`generated/06_few_shot`",
                                "14_claims": "the tables of every other chapter"}

#: Published kinds that are a top-1 accuracy of one method (comparable with a measured row).
_TOP1 = "top1"
_COLUMNS = ("chapter", "backbone", "pretrained", "protocol", "dataset", "method", "shots", "published", "measured",
            "seeds", "source")
# Columns of a results row that name a setting (averaging over them would mix procedures).
_SETTINGS = ("protocol", "templates", "alpha", "prior_source", "source_prior", "sampling")


def serves_real_backbone(params: Mapping[str, Any]) -> bool:
    """Whether a parameter file's book is for an open_clip backbone (True) or for a source
    that a registered provider serves, such as the miniature world (False).

    The top-level ``backbone`` decides (``gla-world-tiny`` when absent, the notebooks'
    default); a chapter that overrides it (the world chapter) does not.
    """
    from .backbones import backbone_provider
    from .plugins import ensure_plugins

    ensure_plugins()
    return backbone_provider(str(params.get("backbone", "gla-world-tiny"))) is None


def _weights_name(pretrained: Any) -> str:
    """A pretrained tag, or a checkpoint's file name (never the building machine's path)."""
    text = "" if pretrained is None or (isinstance(pretrained, float) and pd.isna(pretrained)) else str(pretrained)
    return Path(text).name if ("/" in text or "\\" in text) else text


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
                           weights=rows.get("pretrained", pd.Series("", index=rows.index)).map(_weights_name),
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


def _run_of_chapter(params: Mapping[str, Any], stem: str) -> dict[str, Any] | None:
    """The parameters a chapter receives from ``params`` (what ``gla book run`` passes it),
    or None when its notebook is not there."""
    path = find_source_dir("notebooks") / f"{stem}.ipynb"
    if not path.is_file():
        return None
    return notebook_parameters(stem, declared_parameters(path), params)


def _data_of(run: Mapping[str, Any]) -> str:
    names = []
    for key in ("dataset", "datasets"):
        v = run.get(key)
        if v:
            names += [v] if isinstance(v, str) else list(v)
    shifted = run.get("shifted")
    if isinstance(shifted, Mapping):
        shifted = sorted({s for v in shifted.values() for s in v})
    text = ", ".join(f"`{n}`" for n in names) or "the chapter's default"
    if shifted:
        text += "; shifted: " + ", ".join(f"`{s}`" for s in shifted)
    if run.get("counts_file"):
        text += f"; concept counts: `{Path(str(run['counts_file'])).name}`"
    return text


def _markdown_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _model(backbone: Any, pretrained: Any) -> str:
    return f"`{backbone or ''}` (`{_weights_name(pretrained)}`)"


def chapters_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """Which model (backbone and weights) and datasets each chapter of a parameter file runs."""
    from .backbones import backbone_provider
    from .plugins import ensure_plugins

    ensure_plugins()
    rows = []
    for stem in book_chapters():
        run = _run_of_chapter(params, stem)
        if run is None or backbone_provider(str(run.get("backbone", ""))) is not None:
            continue  # a chapter on a registered provider's model (the world's chapter) is not this run's
        if stem in READS_TABLES:
            rows.append({"chapter": f"{{doc}}`generated/{stem}`", "model": "", "data": READS_TABLES[stem]})
            continue
        rows.append({"chapter": f"{{doc}}`generated/{stem}`",
                     "model": _model(run.get("backbone"), run.get("pretrained")), "data": _data_of(run)})
        extra = run.get("extra_backbones") or []
        for backbone, weights in extra:
            rows.append({"chapter": "", "model": _model(backbone, weights),
                         "data": "(a second backbone of the same table)"})
    return pd.DataFrame(rows)


def intro_page(params: Mapping[str, Any], results_dir: str | Path, params_name: str = "the parameter file") -> str:
    """The introduction of a book built for a real backbone (MyST markdown).

    Names the backbone, weights and data of every chapter, and shows the published numbers
    beside the measured ones (:func:`published_beside_measured`).
    """
    backbone = params.get("backbone", "")
    weights = _weights_name(params.get("pretrained"))
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
    return f"""# Generalized Logit Adjustment with {backbone} ({weights})

This book reruns the experiments of the NeurIPS 2023 paper *Generalized Logit Adjustment:
Calibrating Fine-tuned Models by Removing Label Bias in Foundation Models*
{{cite}}`zhu2023gla` with the open_clip backbone `{backbone}` (weights `{weights}`)
{{cite}}`ilharco2021openclip`, by the paper's procedure as the `gla` package implements it
(see {{doc}}`method` and {{doc}}`reproduce`). It was built from {params_name} with
`gla book run` and `gla book build`; every number and figure comes from that run.

## What each chapter ran

{_markdown_table(chapters_table(params))}

## Published numbers beside the measured ones

{published_text}

## Reading it

{{doc}}`method` explains the method. Every chapter ends with links to its tables and
figures; {{doc}}`results` has all of them in one archive, and
{{doc}}`generated/14_claims` checks each claim of the paper against the numbers of this run.
"""


def beyond_page(params: Mapping[str, Any]) -> str:
    """The opening of "Beyond the paper" for a book built for a real backbone."""
    backbone = params.get("backbone", "")
    return f"""# Beyond the paper

The chapters of this part ask what the paper could not: how the estimated prior relates to
pretraining frequency, how the estimators compare, how many labelled images the estimate
needs, and whether GLA is calibrated. Here they run with `{backbone}` on the data named in
{{doc}}`intro`; each chapter says what its numbers show for this backbone. Where a
chapter needs a pretraining prior that is known, it says which source it uses.

- {{doc}}`generated/10_prior_vs_truth`
- {{doc}}`generated/11_estimators`
- {{doc}}`generated/12_calibration`
- {{doc}}`generated/13_real_frequencies`
"""


def results_page(params: Mapping[str, Any]) -> str:
    """The "All results" page for a book built for a real backbone."""
    backbone = params.get("backbone", "")
    return f"""# All results

Every table the chapters computed, as CSV and JSON, is in one archive:
{{download}}`results.zip <generated/results.zip>`. Its folders are named after the chapters
(`03_many_shot/many_shot.csv` holds the many-shot table of {{doc}}`generated/03_many_shot`),
and each chapter links its own files and figures at its end, under **Downloads**.

The tables are tidy: one row per measurement, with the backbone, dataset, method, split,
number of shots and seed that produced it, so they can be read back with
`pandas.read_csv` and compared with another run. These are the numbers of this build, with
`{backbone}` and the data named in {{doc}}`intro`.
"""


def real_pages(params: Mapping[str, Any], results_dir: str | Path, params_name: str = "the parameter file"
               ) -> dict[str, str]:
    """The pages that replace ``book/``'s for a real backbone: file name -> MyST text."""
    return {"intro.md": intro_page(params, results_dir, params_name), "beyond.md": beyond_page(params),
            "results.md": results_page(params)}
