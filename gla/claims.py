"""The paper's claims, checked against the book's own results.

*Generalized Logit Adjustment* (Zhu et al., NeurIPS 2023) makes a handful of claims that
the book's chapters measure: zero-shot models carry a label bias towards the classes that
were frequent in pretraining (Sec. 1 and 3), removing the estimated prior helps the
zero-shot model (Sec. 3.2), and GLA beats fine-tuning and the ensembles on many-shot,
few-shot and long-tailed benchmarks (Sec. 4; the abstract gives one headline gain per
benchmark). Each :class:`Claim` says where the paper makes it and how a results table
turns into one number. Which chapter shows a claim and which of the chapters' tables
measure it, the chapters declare themselves (:mod:`gla.chapters`); :func:`check_claims`
reads a folder of chapter results (``<generated>/results/<notebook>/``) and gives one row
per claim with the measured number, the published one where ``gla/data/published.json``
has it, and a verdict computed from the measured number alone.

:func:`environment` lists the software and machine the results were computed on.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .chapters import ClaimSource, book_chapters, claim_sources
from .errors import UsageError
from .protocols.results import Method
from .report import published
from .version import __version__

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_MEASURED = "not measured"
VERDICTS = (HOLDS, DOES_NOT_HOLD, NOT_MEASURED)
TIE = 1e-9  # points: differences this small are rounding (an exact tie computed two ways), not a gain

COLUMNS = ("id", "claim", "chapter", "source", "published", "published_source", "measured", "unit", "verdict",
           "needs", "missing", "detail", "evidence")


class NotMeasured(Exception):
    """A results file is present but lacks the rows a claim needs (e.g. a method not run)."""


@dataclass(frozen=True)
class Measurement:
    """What a claim's measure returns: the number the verdict reads, and how it was found."""

    value: float
    detail: str = ""


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how the book checks it.

    Attributes
    ----------
    id : str
        Short identifier (a row of :func:`check_claims`).
    statement : str
        The claim, in one sentence, as the book checks it.
    source : str
        Where the paper makes the claim.
    measure : callable
        ``measure(table) -> Measurement``: the number (in ``unit``) the verdict reads.
        Raises :class:`NotMeasured` when the table lacks what it needs.
    unit : str
        Unit of the measured number.
    strict : bool
        The claim holds when the number is ``> 0`` (strict) or ``>= 0`` (not strict).
    published : dict or None
        Filters of :func:`gla.report.published` that select the paper's number for this
        claim (None: the paper gives no number the book may quote).
    needs : tuple of str
        The properties of real CLIP's regime that the claim's argument rests on, by id
        (P1-P6, each defined from published measurements of CLIP; a provider that
        generates its own CLIP says which its model has:
        :attr:`gla.backbones.ProviderInfo.properties`). A
        model that lacks one (a generated world's CLIP) does not test the claim fairly,
        and :func:`check_claims` says which is missing beside the verdict. P1: a useful
        zero-shot model; P2: fine-tuning gains what CLIP's does; P3: zero-shot is more
        robust to shifts than fine-tuned; P4: the two are complementary (WiSE-FT gains);
        P5: a label prior visible in the zero-shot logits and absent from fine-tuned's;
        P6: pretraining frequency predicts zero-shot accuracy.
    """

    id: str
    statement: str
    source: str
    measure: Callable[[pd.DataFrame], Measurement]
    unit: str = "points"
    strict: bool = True
    published: dict | None = None
    needs: tuple[str, ...] = ()

    def verdict(self, value: float) -> str:
        """``holds`` / ``does not hold`` for a measured number; ``not measured`` for NaN.

        Numbers within :data:`TIE` of zero count as a tie (no gain, but not a negative one).
        """
        if value is None or not np.isfinite(value):
            return NOT_MEASURED
        return HOLDS if (value > TIE if self.strict else value >= -TIE) else DOES_NOT_HOLD


# -- reading the chapters' tables ------------------------------------------------------

def _require(table: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UsageError(f"{what}: expected columns {list(columns)}, missing {missing} "
                         f"(found {list(table.columns)})")


def _main_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The test rows of the table's first backbone, pretrained tag and dataset (a chapter's
    main run is written first), without the WiSE-FT sweep."""
    _require(table, ("method", "split", "top1"), "many-shot table")
    rows = table[(table.split == "test") & (table.method != Method.WISE_FT_SWEEP)]
    if not len(rows):
        raise NotMeasured("no test rows")
    for col in ("backbone", "pretrained", "dataset"):
        if col in rows.columns:  # an empty value (``gla apply`` without a backbone) is a value too
            key = rows[col].astype(object).fillna("").astype(str)
            rows = rows[key == key.iloc[0]]
    return rows


def _value(rows: pd.DataFrame, method: str, column: str, *, best: bool = False) -> float:
    """``column`` of ``method`` in points (the best row when several, e.g. WiSE-FT alphas)."""
    vals = rows.loc[rows.method == method, column].dropna()
    if not len(vals):
        raise NotMeasured(f"no '{method}' row with a {column} value")
    if len(vals) > 1 and not best:
        vals = vals.iloc[:1]
    return float(vals.max()) * 100


def _gain(method: str, baseline: str, column: str = "top1", *, best_baseline: bool = False
          ) -> Callable[[pd.DataFrame], Measurement]:
    def measure(table: pd.DataFrame) -> Measurement:
        rows = _main_rows(table)
        a = _value(rows, method, column)
        b = _value(rows, baseline, column, best=best_baseline)
        return Measurement(a - b, f"{method} {a:.2f} vs {baseline} {b:.2f} ({column}, %)")
    return measure


def _head_minus_tail(table: pd.DataFrame) -> Measurement:
    _require(table, ("head", "tail"), "label-bias table")
    rows = _main_rows(table)
    head, tail = _value(rows, Method.ZERO_SHOT, "head"), _value(rows, Method.ZERO_SHOT, "tail")
    return Measurement(head - tail, f"zero-shot head {head:.2f} vs tail {tail:.2f} (%, thirds by the estimated prior)")


def _few_shot_gain(table: pd.DataFrame) -> Measurement:
    """GLA minus the best other model, averaged over datasets and seeds, at each shot
    count; the smallest of these gains (the claim: a gain at every shot count)."""
    _require(table, ("dataset", "method", "split", "shots", "seed", "top1"), "few-shot table")
    test = table[table.split == "test"].dropna(subset=["shots", "seed"])  # rows that say their draw
    if Method.GLA not in set(test.method):
        raise NotMeasured(f"no '{Method.GLA}' test rows with shots and seed")
    avg = (test.groupby(["method", "shots", "seed"]).top1.mean()  # over datasets
           .groupby(["method", "shots"]).mean().unstack("shots") * 100)  # over seeds
    others = avg.drop(index=Method.GLA)
    if not len(others):
        raise NotMeasured("no model to compare GLA with")
    gains = avg.loc[Method.GLA] - others.max()
    best = others.idxmax()
    parts = ", ".join(f"{k} shots {g:+.2f} vs {best[k]}" for k, g in gains.items())
    return Measurement(float(gains.min()), f"GLA minus the best other model, mean over datasets: {parts}")


def _no_negative_gain(table: pd.DataFrame) -> Measurement:
    """The smallest per-task gain of GLA over the ensemble (chapter 07's table, points)."""
    _require(table, ("dataset",), "gain table")
    gains = table.drop(columns="dataset").select_dtypes("number")
    if gains.shape[1] != 1 or not len(gains):
        raise NotMeasured("expected one numeric gain column with one row per task")
    g = gains.iloc[:, 0].dropna()
    if not len(g):
        raise NotMeasured("no gain values")
    return Measurement(float(g.min()), f"{int((g < 0).sum())} of {len(g)} tasks below the ensemble; "
                                       f"gains {g.min():+.2f} to {g.max():+.2f}")


def _long_tail_gain(baseline: str) -> Callable[[pd.DataFrame], Measurement]:
    def measure(table: pd.DataFrame) -> Measurement:
        _require(table, ("dataset", "method", "mean_per_class"), "long-tail table")
        t = table.pivot_table(index="dataset", columns="method", values="mean_per_class", aggfunc="mean") * 100
        for m in (Method.GLA, baseline):
            if m not in t.columns:
                raise NotMeasured(f"no '{m}' rows")
        g = (t[Method.GLA] - t[baseline]).dropna()
        if not len(g):
            raise NotMeasured("no dataset with both models")
        parts = ", ".join(f"{d} {v:+.2f}" for d, v in g.items())
        return Measurement(float(g.mean()), f"mean per-class accuracy, GLA minus {baseline}: {parts}")
    return measure


# -- the claims --------------------------------------------------------------------------

_ABSTRACT_MANY = {"kind": "gain_pp", "dataset": "imagenet", "method": "gla", "backbone": "CLIP"}
_ABSTRACT_LT = {"kind": "gain_pp", "dataset": "long-tail", "method": "gla", "backbone": "CLIP"}

CLAIMS: tuple[Claim, ...] = (
    Claim("label_bias", "Zero-shot models are biased towards the classes frequent in pretraining: the zero-shot "
          "model is more accurate on the head third of classes (by the estimated prior) than on the tail third.",
          "Zhu et al. 2023, Sec. 1 and Sec. 3", _head_minus_tail, needs=("P5", "P6")),
    Claim("debiasing_helps", "Removing the estimated label prior (f_zs - log q) improves the zero-shot model's "
          "top-1 accuracy.", "Zhu et al. 2023, Sec. 3.2", _gain(Method.DEBIASED, Method.ZERO_SHOT),
          needs=("P5",)),
    Claim("many_shot_vs_fine_tuned", "Many-shot: GLA beats the end-to-end fine-tuned model (top-1).",
          "Zhu et al. 2023, Sec. 4 and abstract", _gain(Method.GLA, Method.FINE_TUNED), published=_ABSTRACT_MANY,
          needs=("P2", "P3", "P4")),
    Claim("many_shot_vs_ensemble", "Many-shot: GLA beats the output ensemble of the zero-shot and fine-tuned "
          "models (top-1).", "Zhu et al. 2023, Sec. 4 and abstract", _gain(Method.GLA, Method.ENSEMBLE),
          published=_ABSTRACT_MANY, needs=("P3", "P5")),
    Claim("many_shot_vs_wise_ft", "Many-shot: GLA beats the weight-space ensemble WiSE-FT (top-1).",
          "Zhu et al. 2023, Sec. 4 and abstract", _gain(Method.GLA, Method.WISE_FT, best_baseline=True),
          published=_ABSTRACT_MANY, needs=("P4", "P5")),
    Claim("few_shot_gain", "Few-shot: GLA improves on the best other model at every number of shots (mean over "
          "datasets).", "Zhu et al. 2023, Sec. 4 and abstract", _few_shot_gain,
          published={"kind": "gain_pp_range", "dataset": "few-shot average", "method": "gla"}, needs=("P1", "P5")),
    Claim("few_shot_no_negative_gain", "Few-shot: GLA is never below the plain ensemble of the same two models "
          "(no negative gain on any task, most shots).", "Zhu et al. 2023, Sec. 4", _no_negative_gain, strict=False,
          needs=("P5",)),
    Claim("long_tail_vs_ce", "Long tail: GLA beats the model fine-tuned with cross-entropy (mean per-class "
          "accuracy, mean over datasets).", "Zhu et al. 2023, Sec. 4 and abstract",
          _long_tail_gain(Method.FINE_TUNED_CE), published=_ABSTRACT_LT, needs=("P1", "P5")),
    Claim("long_tail_vs_logit_adjusted", "Long tail: GLA beats the cross-entropy model with post-hoc logit "
          "adjustment (f_ft - log p_s; mean per-class accuracy, mean over datasets).",
          "Zhu et al. 2023, Sec. 4 and abstract", _long_tail_gain(Method.FINE_TUNED_CE_ADJUSTED),
          published=_ABSTRACT_LT, needs=("P5",)),
)


def list_claims() -> list[str]:
    """Identifiers of the claims :func:`check_claims` checks, in order."""
    return [c.id for c in CLAIMS]


def _published(filters: dict | None) -> tuple[str, str]:
    if not filters:
        return "", ""
    pub = published(**filters)
    if not len(pub):
        return "", ""
    rec = pub.iloc[0]
    v = rec["value"]
    text = f"{v[0]:+g} to {v[1]:+g}" if isinstance(v, (list, tuple)) else f"{float(v):+g}"
    note = " (one headline gain for the benchmark; the baseline is not named there)" \
        if str(rec.get("kind", "")).startswith("gain") else ""
    return text, f"{rec['source']}{note}"


def check_claims(results_dir: str | os.PathLike, claims: tuple[Claim, ...] | None = None,
                 sources: Mapping[str, ClaimSource] | None = None,
                 properties: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """Check the paper's claims against a folder of chapter results.

    Parameters
    ----------
    results_dir : path
        The folder that holds one sub-folder per chapter (``<generated>/results``), each
        with the tables the chapter wrote (e.g. ``03_many_shot/many_shot.csv``).
    claims : tuple of Claim, optional
        The claims to check (default: :data:`CLAIMS`, every claim of the paper the book
        measures).
    sources : mapping, optional
        Claim id -> :class:`gla.chapters.ClaimSource` (the chapter that shows it and the
        results files that measure it, in the order they are read). Default: what the
        book's chapters declare (:func:`gla.chapters.claim_sources`).
    properties : mapping, optional
        Property id -> whether the model the results come from has it (the world's P1-P6:
        :attr:`gla.notebook.Context.properties`); None for a model not measured, such as
        real CLIP, which has them by definition.

    Returns
    -------
    pandas.DataFrame
        One row per claim, columns :data:`COLUMNS`: ``id``, ``claim`` (the statement),
        ``chapter`` (notebook stem, a link target), ``source`` (where the paper makes it),
        ``published`` and ``published_source`` (the paper's number where
        ``gla/data/published.json`` has one, else empty), ``measured`` (in ``unit``; NaN
        when not measured), ``verdict`` (``holds``, ``does not hold`` or ``not measured``
        when no chapter's file is present or it lacks the rows needed), ``detail`` (the
        numbers behind the measured value) and ``evidence`` (the file read, relative to
        ``results_dir``).

    Raises
    ------
    gla.errors.UsageError
        When ``results_dir`` is not a folder, or a chapter's file lacks the columns that
        chapter writes.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise UsageError(f"results_dir: expected a folder of chapter results (<generated>/results), "
                         f"{root} is not a folder")
    sources = claim_sources(book_chapters()) if sources is None else sources
    if properties is not None:
        unknown = sorted({p for c in (CLAIMS if claims is None else claims) for p in c.needs} - set(properties))
        if unknown:
            raise UsageError(f"properties: expected whether the model has {', '.join(unknown)} (the regime "
                             f"properties the claims need), got only {sorted(properties)}")
    rows = []
    for claim in CLAIMS if claims is None else claims:
        published, published_source = _published(claim.published)
        where = sources.get(claim.id, ClaimSource("", ()))
        row = {"id": claim.id, "claim": claim.statement, "chapter": where.chapter, "source": claim.source,
               "published": published, "published_source": published_source, "measured": float("nan"),
               "unit": claim.unit, "verdict": NOT_MEASURED, "needs": ", ".join(claim.needs),
               "missing": ", ".join(p for p in claim.needs if properties is not None and not properties.get(p, False)),
               "detail": "", "evidence": ""}
        path = next((root / f for f in where.evidence if (root / f).is_file()), None)
        if path is None:
            row["detail"] = ("absent: " + ", ".join(where.evidence) if where.evidence
                             else "no chapter declares a table that measures it")
        else:
            row["evidence"] = str(path.relative_to(root))
            try:
                table = pd.read_csv(path)
                m = claim.measure(table)
            except NotMeasured as exc:
                row["detail"] = f"{row['evidence']}: {exc}"
            except pd.errors.EmptyDataError:
                row["detail"] = f"{row['evidence']}: empty file"
            except UsageError as exc:
                raise UsageError(f"{path}: {exc}") from None
            else:
                row.update(measured=m.value, verdict=claim.verdict(m.value), detail=m.detail)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


# -- the environment -------------------------------------------------------------------

def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment(root: str | os.PathLike | None = None, device: str | None = None) -> pd.DataFrame:
    """The software and machine the book's numbers were computed with.

    Parameters
    ----------
    root : path, optional
        The project checkout, where ``requirements/lock.txt`` is looked for (default: the
        folder above the ``gla`` package).
    device : str, optional
        The device the notebooks ran on (``cpu``, ``cuda``); for CUDA the GPU's name is added.

    Returns
    -------
    pandas.DataFrame
        Columns ``item`` and ``value`` (all strings): Python, gla, torch, torchvision,
        open_clip, numpy and pandas versions, the platform, the CPU model, the CPU count,
        torch's thread count, the device, and whether the lock file is present.
    """
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    lock = root / "requirements" / "lock.txt"
    items = [("python", platform.python_version()), ("gla", __version__), ("torch", _version("torch")),
             ("torchvision", _version("torchvision")), ("open_clip", _version("open_clip_torch")),
             ("numpy", _version("numpy")), ("pandas", _version("pandas")),
             ("platform", platform.platform()), ("cpu", _cpu_model()), ("cpu_count", str(os.cpu_count())),
             ("torch_threads", str(torch.get_num_threads())), ("device", str(device or "cpu"))]
    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        items.append(("gpu", torch.cuda.get_device_name(torch.device(device))))
    items.append(("lock_file", f"present ({lock.name})" if lock.is_file() else "absent"))
    return pd.DataFrame(items, columns=["item", "value"])
