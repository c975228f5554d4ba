"""Typed results of the protocols: method identifiers, the tidy results table, and the
per-sample outputs that the book's analyses read.

A results table has one row per method x dataset x evaluation set x split x shots x seed
and fixed columns (:data:`COLUMNS`); the WiSE-FT mixing weight, the temperatures and
whether their search converged are columns, never parts of a method's name. Method
identifiers are the members of :class:`Method`, which also carry each method's display
name, colour and place in tables; :func:`score` builds every row and :func:`save_results`
writes every table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import metrics
from ..cache import atomic_write_text
from ..temperature import TemperatureFit


class Method(str, Enum):
    """The models the paper compares: the identifiers of the ``method`` column.

    A member *is* its identifier (``Method.GLA == "gla"``; it formats and writes as
    ``"gla"``) and carries how the book shows it: :attr:`label` (the display name),
    :attr:`colour` (Okabe-Ito colours, distinguishable with colour-blindness; GLA is always
    the dark red), :attr:`order` (its place in tables and legends: baselines, then
    fine-tuned models, then ensembles and GLA, the order of the members below) and
    :attr:`style` (colour, marker, label and drawing order for matplotlib). The identifiers
    never change, so results files of different versions stay comparable.
    """

    def __new__(cls, value: str, label: str, colour: str) -> Method:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        member.colour = colour
        return member

    __str__ = str.__str__
    __format__ = str.__format__

    ZERO_SHOT = ("zero_shot", "zero-shot", "#0072B2")
    DEBIASED = ("debiased_zero_shot", "debiased zero-shot (- log q)", "#56B4E9")  # f_zs - log q
    LINEAR_PROBE = ("linear_probe", "linear probe", "#999999")
    COOP = ("coop", "CoOp", "#CC79A7")
    PROMPT_TUNING = ("prompt_tuning", "prompt tuning", "#E69F00")
    FINE_TUNED = ("fine_tuned", "fine-tuned", "#E69F00")
    FINE_TUNED_CE = ("fine_tuned_ce", "fine-tuned (CE)", "#E69F00")
    FINE_TUNED_CE_ADJUSTED = ("fine_tuned_ce_adjusted", "fine-tuned (CE) - log p_s", "#F0E442")  # post-hoc LA
    FINE_TUNED_LA_LOSS = ("fine_tuned_la_loss", "fine-tuned (LA loss)", "#8C564B")
    WISE_FT = ("wise_ft", "WiSE-FT", "#009E73")  # weight-space ensemble; ``alpha`` column
    WISE_FT_VAL = ("wise_ft_val", "WiSE-FT (alpha on val)", "#006D4F")  # at the alpha chosen on val
    WISE_FT_SWEEP = ("wise_ft_sweep", "WiSE-FT sweep", "#009E73")  # every alpha, on val and test
    ENSEMBLE = ("ensemble", "ensemble", "#7F7F7F")  # output ensemble of zero-shot and fine-tuned logits
    GLA = ("gla", "GLA", "#B2182B")

    @property
    def order(self) -> int:
        """The method's place in tables and legends (0 first)."""
        return list(type(self)).index(self)

    @property
    def style(self) -> dict[str, Any]:
        """Matplotlib keywords: ``color``, ``marker``, ``label`` and ``zorder`` (GLA on top)."""
        return {"color": self.colour, "marker": MARKERS[self.order % len(MARKERS)], "label": self.label,
                "zorder": 3 if self is Method.GLA else 2}

    @classmethod
    def find(cls, name: str) -> Method | None:
        """The member named ``name`` by its identifier or its display name (None if none is)."""
        for m in cls:
            if name == m.value or name == m.label:
                return m
        return None


MARKERS = "osD^v<>ph*XP8d"  # one per method, by its order
UNKNOWN_STYLE = {"color": "#333333", "marker": MARKERS[len(Method) % len(MARKERS)], "zorder": 2}


# The columns of every results table, in order (a protocol leaves the ones it has no
# value for empty).
COLUMNS: tuple[str, ...] = (
    "backbone", "pretrained", "dataset", "eval_set", "split", "shots", "seed", "method", "alpha",
    "top1", "top5", "head", "medium", "tail", "many", "few", "mean_per_class", "ece",
    "protocol", "templates", "prior_source", "source_prior", "sampling",
    "t_zs", "t_zs_converged", "t_ft", "t_ft_converged",
    "prior_objective", "prior_grad_norm", "prior_sum", "prompt_epoch", "recipe", "gla_version",
)


def method_label(method: str) -> str:
    """The display name of a method identifier (the identifier itself when unknown)."""
    m = Method.find(method)
    return m.label if m is not None else method


def method_style(method: str) -> dict[str, Any]:
    """Colour, marker, label and drawing order of a method (identifier or display name);
    an unknown name gets a dark grey style under its own name."""
    m = Method.find(method)
    return m.style if m is not None else {**UNKNOWN_STYLE, "label": method}


def order_methods(methods: Sequence[str]) -> list[str]:
    """Method identifiers in the book's order (:attr:`Method.order`), unknown ones last in
    their given order."""
    wanted = set(methods)
    known = [m.value for m in Method if m.value in wanted]
    return known + [m for m in dict.fromkeys(methods) if m not in known]


def score(context: Mapping[str, Any], method: str, split: str, logits: torch.Tensor, labels: torch.Tensor, *,
          group_prior: torch.Tensor | None = None, train_counts: torch.Tensor | None = None,
          dtype: torch.dtype = torch.float32, **extra: Any) -> dict[str, Any]:
    """One results row: ``context`` columns, the method, and its metrics on ``logits``.

    The one row builder of every results table (the protocols and ``gla apply``).

    Parameters
    ----------
    context : mapping
        Columns the row shares with its run (backbone, dataset, settings, ...).
    method : Method or str
        The ``method`` column (written as its identifier).
    split : str
        ``test``, ``val`` or ``test:<shifted set>``.
    logits : (N, K) tensor
        The method's logits; scored in ``dtype`` (float32, as the protocols score; ``gla
        apply`` scores its float64 inputs in float64).
    labels : (N,) tensor
    group_prior : (K,) tensor, optional
        Head / medium / tail: thirds of the classes by this prior, descending (when there
        are at least three classes).
    train_counts : (K,) tensor, optional
        Many / medium / few by training images, and the mean of per-class accuracies.
    **extra
        More columns (``alpha``, temperatures, ...).

    Returns
    -------
    dict
        The row: ``context``, ``method``, ``split``, ``extra``, ``top1``, ``top5``, the
        groups and ``ece`` (fractions in [0, 1]).
    """
    logits = logits.to(dtype)
    row = {**context, "method": str(method), "split": split, **extra,
           "top1": metrics.topk_accuracy(logits, labels),
           "top5": metrics.topk_accuracy(logits, labels, k=min(5, logits.shape[1]))}
    if group_prior is not None and len(group_prior) >= 3:
        groups = metrics.accuracy_by_prior_group(logits, labels, group_prior)
        row.update({k: v for k, v in groups.items() if k != "all"})
    if train_counts is not None:
        g = metrics.accuracy_by_count_group(logits, labels, train_counts)
        row.update({"many": g["many"], "medium": g["medium"], "few": g["few"], "mean_per_class": g["all"]})
    row["ece"] = metrics.expected_calibration_error(logits, labels)[0]
    return row


def results_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a table with the fixed :data:`COLUMNS` first (extra columns after them)."""
    df = pd.DataFrame(list(rows))
    extra = [c for c in df.columns if c not in COLUMNS]
    return df.reindex(columns=list(COLUMNS) + extra)


def json_value(v: Any) -> Any:
    """A table cell as plain JSON: NumPy and 0-d torch scalars as Python numbers, NaN and
    infinities as ``None`` (JSON has no NaN)."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes, list, dict)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def save_results(df: pd.DataFrame, out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write a results table as ``<name>.csv`` and ``<name>.json`` (records), atomically.

    The one writer of results tables: the notebooks, ``gla run`` and ``gla apply``. Values
    keep full precision in both files (floats as ``%.17g`` in the CSV; a prior's gradient
    norm of 1e-13 stays 1e-13). A missing value (NaN) is an empty CSV field and ``null`` in
    the JSON, as is an infinity in the JSON; other objects are written as their ``str``.

    Returns
    -------
    (Path, Path)
        The CSV and JSON files.
    """
    out = Path(out_dir)
    csv = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False, float_format="%.17g"))
    records = [{str(k): json_value(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    js = atomic_write_text(out / f"{name}.json", json.dumps(records, indent=1, default=str, allow_nan=False))
    return csv, js


@dataclass(eq=False)  # holds a tensor: compared by identity (tables that carry it in attrs concatenate)
class PriorFit:
    """The prior a protocol removes, and how it was obtained.

    Attributes
    ----------
    log_prior : (K,) tensor
        Normalised ``log q`` over the model's classes.
    source : str
        The estimator id (``official``, ``exact``) or ``file:<name>`` for a given prior.
    split : str
        The data it was estimated on (``val``, ``train+val``), or ``""`` for a file.
    temperature : float
        The temperature the zero-shot logits were divided by before estimating.
    temperature_converged : bool or None
        Whether the temperature search met its threshold (None: no search).
    diagnostics : dict
        The estimator's diagnostics (objective, gradient norm, the unnormalised sum of the
        official solver's q or of a prior file).
    """

    log_prior: torch.Tensor
    source: str
    split: str = ""
    temperature: float = 1.0
    temperature_converged: bool | None = None
    diagnostics: dict[str, float] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        d = self.diagnostics
        return {"prior_objective": d.get("objective", float("nan")),
                "prior_grad_norm": d.get("grad_norm", float("nan")),
                "prior_sum": d.get("raw_sum", float("nan"))}


@dataclass
class EvalOutputs:
    """Per-sample outputs of every method on one evaluation set.

    Attributes
    ----------
    name : str
        The evaluation set (the dataset itself, or a shifted set).
    split : str
        ``test`` or ``test:<shifted set>``.
    labels : (N,) tensor
        Labels in the evaluation set's class space.
    logits : dict
        Method identifier -> ``(N, K_eval)`` logits, projected onto the evaluation set's
        classes (ImageNet-R/-A subsets, ObjectNet's groups).
    log_prior : (K_eval,) tensor
        The prior restricted to the evaluation set's classes (what groups are cut by).
    """

    name: str
    split: str
    labels: torch.Tensor
    logits: dict[str, torch.Tensor]
    log_prior: torch.Tensor


@dataclass
class ManyShotOutputs:
    """What :func:`gla.protocols.run_many_shot` computed, per sample.

    Attributes
    ----------
    dataset : str
    classnames : list of str
        The model's classes.
    train_counts : (K,) tensor
        Training images per class.
    prior : PriorFit
        The zero-shot prior (estimated on val, or given).
    log_source_prior : (K,) tensor
        ``log p_s`` removed from the fine-tuned model in GLA (zeros for a uniform one).
    val_labels : (N_val,) tensor
    val_logits : dict
        ``Method.ZERO_SHOT`` and ``Method.FINE_TUNED`` logits on val.
    eval_sets : dict
        Evaluation set name -> :class:`EvalOutputs`; the dataset's own test split first.
    alpha : float
        The WiSE-FT mixing weight chosen on val.
    """

    dataset: str
    classnames: list[str]
    train_counts: torch.Tensor
    prior: PriorFit
    log_source_prior: torch.Tensor
    val_labels: torch.Tensor
    val_logits: dict[str, torch.Tensor]
    eval_sets: dict[str, EvalOutputs]
    alpha: float

    @property
    def log_prior(self) -> torch.Tensor:
        return self.prior.log_prior

    @property
    def test(self) -> EvalOutputs:
        """The dataset's own test split."""
        return self.eval_sets[self.dataset]


@dataclass
class ManyShotResult:
    """A results table and the per-sample outputs behind it."""

    table: pd.DataFrame
    outputs: ManyShotOutputs


@dataclass(eq=False)
class FewShotFit:
    """What one few-shot draw (dataset, shots, seed) fitted before scoring its models.

    Attributes
    ----------
    prior : PriorFit
        The zero-shot prior (estimated on train + val below 20 shots, on val otherwise).
    t_zs, t_ft : gla.temperature.TemperatureFit
        The zero-shot and prompt-tuned temperatures and whether their searches converged.
    prompt_epoch : int or None
        The prompt-tuning epoch kept (by GLA's accuracy on val, the official rule).
    """

    prior: PriorFit
    t_zs: TemperatureFit
    t_ft: TemperatureFit
    prompt_epoch: int | None

    def columns(self) -> dict[str, Any]:
        """The temperatures, whether their searches converged and the prompt epoch, as the
        columns of the ensemble's and GLA's rows."""
        return {"t_zs": self.t_zs.temperature, "t_zs_converged": self.t_zs.converged,
                "t_ft": self.t_ft.temperature, "t_ft_converged": self.t_ft.converged,
                "prompt_epoch": self.prompt_epoch}


@dataclass
class FewShotResult:
    """A few-shot results table and, per ``(dataset, shots, seed)``, the fits behind it."""

    table: pd.DataFrame
    fits: dict[tuple[str, int, int], FewShotFit]


@dataclass
class LongTailResult:
    """A long-tail results table and what its models remove.

    Attributes
    ----------
    table : pandas.DataFrame
        The tidy rows.
    prior : PriorFit
        The zero-shot prior (estimated on val, or given).
    log_source_prior : (K,) tensor
        ``log p_s`` of the training counts.
    train_counts : (K,) tensor
        Training images per class (what many / medium / few are cut by).
    """

    table: pd.DataFrame
    prior: PriorFit
    log_source_prior: torch.Tensor
    train_counts: torch.Tensor


@dataclass
class ZeroShotOutputs:
    """The zero-shot model on one split (for the book's analyses).

    Attributes: ``head`` (D, K), ``features`` (N, D), ``logits`` (N, K), ``labels`` (N,)
    (a test split's labels are for scoring only), ``classnames``.
    """

    head: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    classnames: list[str]
