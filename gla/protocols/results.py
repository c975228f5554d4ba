"""Typed results of the protocols: method identifiers, the tidy results table, and the
per-sample outputs that the book's analyses read.

A results table has one row per method x dataset x evaluation set x split x shots x seed
and fixed columns (:data:`COLUMNS`); the WiSE-FT mixing weight, the temperatures and
whether their search converged are columns, never parts of a method's name. Method
identifiers are the constants of :class:`Method`; :data:`METHOD_LABELS` gives the names a
table or figure shows.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import metrics
from ..cache import atomic_write_text


class Method:
    """Identifiers of the models the paper compares (the ``method`` column)."""

    ZERO_SHOT = "zero_shot"
    DEBIASED = "debiased_zero_shot"  # f_zs - log q
    FINE_TUNED = "fine_tuned"
    WISE_FT = "wise_ft"  # weight-space ensemble; ``alpha`` column
    WISE_FT_VAL = "wise_ft_val"  # WiSE-FT at the alpha chosen on val
    WISE_FT_SWEEP = "wise_ft_sweep"  # every alpha, on val and test
    ENSEMBLE = "ensemble"  # output ensemble of zero-shot and fine-tuned logits
    GLA = "gla"
    LINEAR_PROBE = "linear_probe"
    COOP = "coop"
    PROMPT_TUNING = "prompt_tuning"
    FINE_TUNED_CE = "fine_tuned_ce"
    FINE_TUNED_CE_ADJUSTED = "fine_tuned_ce_adjusted"  # CE - log p_s (post-hoc logit adjustment)
    FINE_TUNED_LA_LOSS = "fine_tuned_la_loss"


METHOD_LABELS: dict[str, str] = {
    Method.ZERO_SHOT: "zero-shot",
    Method.DEBIASED: "debiased zero-shot (- log q)",
    Method.FINE_TUNED: "fine-tuned",
    Method.WISE_FT: "WiSE-FT",
    Method.WISE_FT_VAL: "WiSE-FT (alpha on val)",
    Method.WISE_FT_SWEEP: "WiSE-FT sweep",
    Method.ENSEMBLE: "ensemble",
    Method.GLA: "GLA",
    Method.LINEAR_PROBE: "linear probe",
    Method.COOP: "CoOp",
    Method.PROMPT_TUNING: "prompt tuning",
    Method.FINE_TUNED_CE: "fine-tuned (CE)",
    Method.FINE_TUNED_CE_ADJUSTED: "fine-tuned (CE) - log p_s",
    Method.FINE_TUNED_LA_LOSS: "fine-tuned (LA loss)",
}

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
    return METHOD_LABELS.get(method, method)


def score(context: Mapping[str, Any], method: str, split: str, logits: torch.Tensor, labels: torch.Tensor, *,
          group_prior: torch.Tensor | None = None, train_counts: torch.Tensor | None = None,
          **extra: Any) -> dict[str, Any]:
    """One results row: ``context`` columns, the method, and its metrics on ``logits``.

    Head / medium / tail (thirds of the classes by ``group_prior``, descending) when a
    prior is given and there are at least three classes; many / medium / few and the mean
    of per-class accuracies when ``train_counts`` is given.
    """
    logits = logits.float()
    row = {**context, "method": method, "split": split, **extra,
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


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    return v


def save_results(df: pd.DataFrame, out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write a results table as ``<name>.csv`` and ``<name>.json`` (records), atomically.

    Values keep full precision in both files (a prior's gradient norm of 1e-13 stays 1e-13).
    """
    out = Path(out_dir)
    csv = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False, float_format="%.17g"))
    records = [{k: _json_value(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    js = atomic_write_text(out / f"{name}.json", json.dumps(records, indent=1, default=str))
    return csv, js


@dataclass
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
