"""GLA on logits computed elsewhere (``gla apply``).

For users of another evaluation harness: bring the zero-shot and fine-tuned logits of the
same test images (and their labels) as ``.pt`` or ``.npy`` files, a prior (a file, or a
class-balanced validation split to estimate it on) and, for the long-tail experiment, the
training counts per class; get the experiment's rows as a tidy table.

- many-shot (the paper's Sec. 4.1 ImageNet table): zero-shot, zero-shot ``- log q``,
  fine-tuned, the output ensemble and GLA ``f_zs + f_ft - log q`` (``- log p_s`` when
  training counts are given; the official many-shot code treats ImageNet as balanced),
  with head / medium / tail classes by the prior, split K//3, K//3 and the rest.
- few-shot (Sec. 4.2): temperatures ``T_zs`` and ``T_ft`` searched so that confidence
  matches accuracy (the official few-shot code), the ensemble
  ``f_ft / T_ft + f_zs / T_zs`` and GLA ``f_ft / T_ft + f_zs / T_zs - log q``, with the
  prior estimated at ``T_zs``.
- long-tail (Sec. 4.3): the fine-tuned logits are taken as the cross-entropy model of the
  long-tail protocol (``fine_tuned_ce``), with its post-hoc adjustment ``- log p_s``
  (``fine_tuned_ce_adjusted``); groups many (> 100 training images) / medium (20 to 100) /
  few (< 20), each the mean of per-class accuracies.

The rows are those of a protocol's results table (:data:`gla.protocols.COLUMNS` first,
methods named by :class:`gla.protocols.Method`, built by :func:`gla.protocols.score`), so
:func:`gla.claims.check_claims` and the book's tables read them as they read a protocol's;
:func:`gla.protocols.save_results` writes them.

The prior, when not given, and the few-shot temperatures are fitted on the validation
split under the chosen procedure, as :mod:`gla.protocols` fits them (``--protocol``):
``paper`` (default) follows the official GLA code, its 1000-step Lagrangian prior solver and
regula-falsi temperature search (``trainers/util.py``, ``pp_solver`` and ``search_T``;
thresholds 0.1 percentage points for the zero-shot model, 1.0 for the fine-tuned one,
``trainers/gla.py``); ``exact`` uses the exact prior and a converged bisection. Every row
records the procedure (``protocol``) and the experiment (``experiment``).

A prior file is a torch file holding a dict with key ``"q"`` (the official ``q.pt``:
1000 values that sum to about 0.804) or a plain tensor, a ``.npy`` vector, or the JSON
that ``gla estimate`` writes (``log_prior``). It is normalised on load and its original
sum is reported in every row (``prior_file_sum``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .adjust import debias, ensemble_logits, gla_logits, log_prior_from_counts, logit_adjust
from .errors import UsageError
from .prior_file import PriorFile, load_prior_file
from .protocols.common import THRESHOLD_FINE_TUNED, THRESHOLD_ZERO_SHOT, Outputs, fit_prior, fit_temperature
from .protocols.config import PROTOCOLS as PROCEDURES
from .protocols.config import ProtocolSettings
from .protocols.results import Method, PriorFit, results_frame, score
from .version import __version__

__all__ = ["EXPERIMENTS", "Experiment", "PriorFile", "apply_protocol", "load_prior_file", "load_tensor",
           "protocol_settings"]

#: What the table says in ``dataset`` when the caller does not name the data (``columns``).
EXTERNAL = "external"
_KEYS = {"logits": ("logits", "zs_logits", "ft_logits", "scores"), "labels": ("labels", "targets", "y"),
         "counts": ("counts", "train_counts", "class_counts")}


def load_tensor(path: str | os.PathLike, what: str = "logits") -> torch.Tensor:
    """Read one tensor from a ``.npy``/``.npz`` or torch file.

    A torch file may hold the tensor itself or a dict; from a dict the entry named like
    ``what`` (``"logits"``, ``"labels"`` or ``"counts"``, or a usual alias) is taken, or
    its only tensor. Raises :class:`gla.errors.UsageError` naming the file otherwise.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what}: no file at {p}")
    try:
        if p.suffix in (".npy", ".npz"):
            arr = np.load(p, allow_pickle=False)
            if p.suffix == ".npz":
                arr = _pick(dict(arr), what, p)
            return torch.as_tensor(arr)
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{what}: could not read {p} as a .npy or torch file ({exc})") from exc
    if isinstance(obj, Mapping):
        obj = _pick(obj, what, p)
    if not isinstance(obj, torch.Tensor):
        try:
            obj = torch.as_tensor(obj)
        except Exception as exc:
            raise UsageError(f"{what}: expected a tensor in {p}, got {type(obj).__name__}") from exc
    return obj


def _pick(d: Mapping, what: str, p: Path):
    for key in (what, *_KEYS.get(what, ())):
        if key in d:
            return d[key]
    tensors = [v for v in d.values() if hasattr(v, "shape")]
    if len(tensors) == 1:
        return tensors[0]
    raise UsageError(f"{what}: {p} holds {sorted(map(str, d))}; expected a key '{what}' or a single tensor")


def _check(named: Mapping[str, tuple[torch.Tensor | None, str]], n_classes: int | None = None) -> int:
    """Check logits and labels shapes; ``named``: argument -> (tensor, its file). Returns K."""
    k = n_classes
    for arg, (t, src) in named.items():
        if t is None:
            continue
        if arg.startswith("labels") or arg == "train_counts":
            continue
        if t.ndim != 2:
            raise UsageError(f"{arg} ({src}): expected logits of shape (N, K), got shape {tuple(t.shape)}")
        if k is None:
            k = t.shape[1]
        elif t.shape[1] != k:
            raise UsageError(f"{arg} ({src}): expected {k} classes like the other logits, got {t.shape[1]}")
    pairs = [("zs", "ft", "labels"), ("zs_val", "ft_val", "labels_val")]
    for zs_name, ft_name, y_name in pairs:
        rows = {a: named[a] for a in (zs_name, ft_name) if a in named and named[a][0] is not None}
        y, ysrc = named.get(y_name, (None, ""))
        for a, (t, src) in rows.items():
            if y is None:
                raise UsageError(f"{a} ({src}) needs the matching labels ({y_name})")
            if y.ndim != 1 or y.shape[0] != t.shape[0]:
                raise UsageError(f"{a} ({src}) has {t.shape[0]} rows but {y_name} ({ysrc}) has shape "
                                 f"{tuple(y.shape)}: expected one label per row")
            if y.dtype.is_floating_point or y.min() < 0 or y.max() >= k:
                raise UsageError(f"{y_name} ({ysrc}): expected integer class indices 0..{k - 1}")
    counts, csrc = named.get("train_counts", (None, ""))
    if counts is not None and (counts.ndim != 1 or counts.shape[0] != k):
        raise UsageError(f"train_counts ({csrc}): expected {k} counts (one per class), got shape {tuple(counts.shape)}")
    return k


@dataclass(frozen=True)
class Fitted:
    """What an experiment's models are built from: the test logits (float64), the prior
    removed, ``log p_s`` (None without training counts) and the temperatures (1 unless
    the experiment searches them)."""

    zs: torch.Tensor
    ft: torch.Tensor
    log_q: torch.Tensor
    log_ps: torch.Tensor | None = None
    t_zs: float = 1.0
    t_ft: float = 1.0


def _many_shot_models(f: Fitted) -> dict[Method, torch.Tensor]:
    return {Method.ZERO_SHOT: f.zs, Method.DEBIASED: debias(f.zs, f.log_q), Method.FINE_TUNED: f.ft,
            Method.ENSEMBLE: ensemble_logits(f.zs, f.ft),
            Method.GLA: gla_logits(f.zs, f.ft, f.log_q, log_source_prior=f.log_ps)}


def _few_shot_models(f: Fitted) -> dict[Method, torch.Tensor]:
    return {Method.ZERO_SHOT: f.zs, Method.DEBIASED: debias(f.zs, f.log_q, temperature=f.t_zs),
            Method.FINE_TUNED: f.ft, Method.ENSEMBLE: f.ft / f.t_ft + f.zs / f.t_zs,
            Method.GLA: gla_logits(f.zs, f.ft, f.log_q, zs_temperature=f.t_zs, ft_temperature=f.t_ft)}


def _long_tail_models(f: Fitted) -> dict[Method, torch.Tensor]:
    return {Method.ZERO_SHOT: f.zs, Method.DEBIASED: debias(f.zs, f.log_q), Method.FINE_TUNED_CE: f.ft,
            Method.FINE_TUNED_CE_ADJUSTED: logit_adjust(f.ft, f.log_ps), Method.ENSEMBLE: ensemble_logits(f.zs, f.ft),
            Method.GLA: gla_logits(f.zs, f.ft, f.log_q, log_source_prior=f.log_ps)}


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments as ``gla apply`` runs it.

    Attributes
    ----------
    name : str
        ``many-shot``, ``few-shot`` or ``long-tail`` (the ``experiment`` column).
    models : callable
        :class:`Fitted` -> method -> test logits, in the rows' order.
    searches_temperatures : bool
        ``T_zs`` and ``T_ft`` are searched on val (or given), and the prior is estimated at ``T_zs``.
    groups : {"prior", "counts"}
        Head / medium / tail by the prior, or many / medium / few by training counts (required).
    shots : str or None
        The ``shots`` column (``"all"``, as the protocols write it; None: per run, given in ``columns``).
    """

    name: str
    models: Callable[[Fitted], dict[Method, torch.Tensor]]
    searches_temperatures: bool = False
    groups: str = "prior"
    shots: str | None = "all"


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("many-shot", _many_shot_models),
    Experiment("few-shot", _few_shot_models, searches_temperatures=True, shots=None),
    Experiment("long-tail", _long_tail_models, groups="counts"),
)}


def apply_protocol(which: str, zs: torch.Tensor, ft: torch.Tensor, labels: torch.Tensor, *,
                   protocol: ProtocolSettings | str = "paper", prior: PriorFile | None = None,
                   zs_val: torch.Tensor | None = None, ft_val: torch.Tensor | None = None,
                   labels_val: torch.Tensor | None = None, train_counts: torch.Tensor | None = None,
                   t_zs: float | None = None, t_ft: float | None = None,
                   sources: Mapping[str, str] | None = None, columns: Mapping[str, object] | None = None
                   ) -> pd.DataFrame:
    """The rows of one experiment from saved logits, under the ``paper`` or ``exact`` procedure.

    The prior and the temperatures are fitted as the protocols of :mod:`gla.protocols` fit
    them (:func:`gla.protocols.fit_prior`, :func:`gla.protocols.fit_temperature`):
    ``protocol="paper"`` follows the official GLA code, its 1000-step Lagrangian prior
    solver (``trainers/util.py``, ``pp_solver``; :func:`gla.official_lagrangian_prior`,
    whose ``q`` is normalised afterwards, its raw sum reported as ``prior_sum``) and its
    regula-falsi temperature search (``trainers/util.py``, ``search_T``) to within 0.1
    percentage points for the zero-shot model and 1.0 for the fine-tuned one
    (``trainers/gla.py``); ``protocol="exact"`` uses the exact prior
    (:class:`gla.PriorEstimator`) and a converged bisection (:func:`gla.search_temperature`).
    A :class:`gla.protocols.ProtocolSettings` may name any registered estimator instead.

    Parameters
    ----------
    which : {"many-shot", "few-shot", "long-tail"}
        The experiment (:data:`EXPERIMENTS`): the paper's Sec. 4.1, 4.2 or 4.3 (the
        ``experiment`` column).
    zs, ft : (N, K) tensors
        Zero-shot and fine-tuned logits of the same test images.
    labels : (N,) integer tensor
        Test labels (used for scoring only).
    protocol : ProtocolSettings or {"paper", "exact"}
        The procedure (default ``"paper"``, as ``gla run`` and the notebooks). Of a
        :class:`gla.protocols.ProtocolSettings`, ``protocol``, ``estimator`` and
        ``prior_file`` are used (``prior`` takes precedence over ``prior_file``).
    prior : PriorFile, optional
        A prior from :func:`load_prior_file`, used instead of estimating one; otherwise it
        is estimated with the protocol's estimator on ``zs_val`` / ``labels_val`` (a
        class-balanced validation split, never the test split).
    zs_val, ft_val, labels_val : optional
        Validation logits and labels: the prior's estimation set, and (few-shot) where
        ``T_zs`` and ``T_ft`` are searched with the protocol's search.
    train_counts : (K,) tensor, optional
        Training images per class: required for long-tail (``log p_s`` and the groups);
        for many-shot it adds ``- log p_s`` to GLA.
    t_zs, t_ft : float, optional
        Few-shot temperatures given instead of searched.
    sources : mapping, optional
        Argument name -> file it came from, named in error messages and recorded.
    columns : mapping, optional
        Columns every row carries, e.g. ``backbone``, ``pretrained``, ``dataset`` (default
        :data:`EXTERNAL`), ``shots`` and ``seed`` (few-shot rows need them to be averaged
        as the few-shot chapter averages).

    Returns
    -------
    pandas.DataFrame
        A results table (:func:`gla.protocols.results.results_frame`): one row per method
        (:class:`gla.protocols.Method` identifiers) with ``top1``, ``top5``, ``ece`` and the
        experiment's groups (``head``/``medium``/``tail`` by the prior, or ``many``/
        ``medium``/``few``/``mean_per_class`` by training counts); ``experiment``,
        ``protocol``, ``source_prior`` and the prior's provenance named as in
        :data:`gla.protocols.results.COLUMNS` (``prior_source``: the estimator id or
        ``file:<name>``; ``prior_objective``, ``prior_grad_norm``, ``prior_sum``), plus
        ``prior_file_sum`` (the given file's sum, NaN when estimated), ``prior_file``,
        ``prior_estimated_on``, ``prior_temperature``, ``n`` and ``n_classes``. Few-shot
        rows fill ``t_zs``, ``t_zs_converged``, ``t_ft`` and ``t_ft_converged`` (converged
        is None for a given temperature; a search that cannot meet its target gives T = 1
        and ``False``, as in the protocols). ``df.attrs["prior"]`` is the
        :class:`gla.protocols.PriorFit` removed (its ``log_prior`` the normalised ``log q``)
        and ``df.attrs["temperatures"]`` maps ``"t_zs"``/``"t_ft"`` to the
        :class:`gla.temperature.TemperatureFit` of each search (few-shot).

    Raises
    ------
    gla.errors.UsageError
        For an unknown experiment or protocol, inputs whose shapes disagree, or missing
        inputs (no prior and no validation split; long-tail without training counts).
    """
    if which not in EXPERIMENTS:
        raise UsageError(f"experiment: expected one of {', '.join(EXPERIMENTS)}, got {which!r}")
    exp = EXPERIMENTS[which]
    settings = protocol_settings(protocol)
    if prior is None and settings.prior_file:
        prior = load_prior_file(settings.prior_file)
    src = dict(sources or {})
    named = {a: (t, src.get(a, a)) for a, t in [("zs", zs), ("ft", ft), ("labels", labels), ("zs_val", zs_val),
                                                 ("ft_val", ft_val), ("labels_val", labels_val),
                                                 ("train_counts", train_counts)]}
    k = _check(named)
    zs, ft, labels = zs.to(torch.float64), ft.to(torch.float64), labels.long()
    if exp.groups == "counts" and train_counts is None:
        raise UsageError(f"{which}: training counts per class are required (--train-counts)")
    searched = {}
    if exp.searches_temperatures:
        searched, t_zs, t_ft = _temperatures(settings, src, t_zs=t_zs, t_ft=t_ft, zs_val=zs_val, ft_val=ft_val,
                                             labels_val=labels_val)
    temperatures = {"t_zs": t_zs, "t_zs_converged": searched["t_zs"].converged if "t_zs" in searched else None,
                    "t_ft": t_ft, "t_ft_converged": searched["t_ft"].converged if "t_ft" in searched else None}
    prior_t = float(t_zs) if exp.searches_temperatures else 1.0
    fit, given = _prior(prior, settings, src, k=k, temperature=prior_t, converged=temperatures["t_zs_converged"],
                        zs_val=zs_val, labels_val=labels_val)
    log_ps = _source_prior(train_counts, src)
    base = {"dataset": EXTERNAL, "eval_set": None, "shots": exp.shots, "experiment": which,
            "protocol": settings.protocol, "prior_source": fit.source, **fit.columns(), **given,
            "prior_temperature": prior_t, "source_prior": "counts" if log_ps is not None else "uniform",
            "gla_version": __version__, "zs_file": src.get("zs", ""), "ft_file": src.get("ft", ""), **(columns or {})}
    base["eval_set"] = base["eval_set"] or base["dataset"]
    if exp.searches_temperatures:
        base.update(temperatures)
    fitted = Fitted(zs, ft, fit.log_prior.to(torch.float64), log_ps,
                    float(t_zs) if t_zs is not None else 1.0, float(t_ft) if t_ft is not None else 1.0)
    groups = {"group_prior": fitted.log_q} if exp.groups == "prior" else {"train_counts": train_counts}
    df = results_frame([score(base, method, "test", z, labels, dtype=torch.float64, n=int(labels.shape[0]),
                              n_classes=k, **groups) for method, z in exp.models(fitted).items()])
    df.attrs["prior"] = fit
    df.attrs["temperatures"] = searched
    return df


def _temperatures(settings: ProtocolSettings, src: Mapping[str, str], *, t_zs, t_ft, zs_val, ft_val, labels_val):
    """The few-shot temperatures: given, or searched on val with the protocol's search.
    Returns ``(searches, t_zs, t_ft)``; ``searches`` maps ``t_zs``/``t_ft`` to each search's
    :class:`gla.temperature.TemperatureFit`."""
    if t_zs is None or t_ft is None:
        if zs_val is None or ft_val is None or labels_val is None:
            raise UsageError("few-shot: the temperatures are searched on a validation split: give zero-shot and "
                             "fine-tuned validation logits and their labels (--zs-val, --ft-val, --labels-val), "
                             "or both temperatures (--t-zs, --t-ft)")
    searched = {}
    if t_zs is None:
        searched["t_zs"] = _search(zs_val, labels_val, "zs_val", src, settings, THRESHOLD_ZERO_SHOT)
        t_zs = searched["t_zs"].temperature
    if t_ft is None:
        searched["t_ft"] = _search(ft_val, labels_val, "ft_val", src, settings, THRESHOLD_FINE_TUNED)
        t_ft = searched["t_ft"].temperature
    return searched, t_zs, t_ft


def _prior(prior: PriorFile | None, settings: ProtocolSettings, src: Mapping[str, str], *, k: int, temperature: float,
           converged: bool | None, zs_val, labels_val) -> tuple[PriorFit, dict]:
    """The prior removed: the given file's, or estimated on val at ``temperature``; and the
    columns that say which."""
    if prior is not None:
        if prior.log_prior.shape[0] != k:
            raise UsageError(f"prior file ({prior.path}): expected {k} values (one per class of the logits), "
                             f"got {prior.log_prior.shape[0]}")
        fit = PriorFit(prior.log_prior, f"file:{Path(prior.path).name}", "", temperature, converged,
                       {"raw_sum": prior.original_sum})
        return fit, {"prior_file_sum": prior.original_sum, "prior_file": prior.path, "prior_estimated_on": ""}
    if zs_val is None or labels_val is None:
        raise UsageError("prior: give a prior file (--prior-file) or a class-balanced validation split to "
                         "estimate it on (--zs-val and --labels-val); the test split is never used")
    try:
        fit = fit_prior(Outputs(zs_val, labels_val.long(), "val"), replace(settings, prior_file=None),
                        temperature=temperature, temperature_converged=converged)
    except ValueError as exc:
        raise UsageError(f"prior estimation on {src.get('zs_val', 'zs_val')}: {exc}") from exc
    return fit, {"prior_file_sum": float("nan"), "prior_file": "", "prior_estimated_on": src.get("zs_val", "zs_val")}


def _source_prior(train_counts: torch.Tensor | None, src: Mapping[str, str]) -> torch.Tensor | None:
    """``log p_s`` of the training counts (None without them)."""
    if train_counts is None:
        return None
    counts = train_counts.to(torch.float64)
    if (counts <= 0).any():
        raise UsageError(f"train_counts ({src.get('train_counts', 'train_counts')}): every class needs at least "
                         "one training image for log p_s")
    return log_prior_from_counts(counts)


def protocol_settings(protocol: ProtocolSettings | str) -> ProtocolSettings:
    """The :class:`gla.protocols.ProtocolSettings` of ``protocol``.

    Parameters
    ----------
    protocol : ProtocolSettings or {"paper", "exact"}
        Settings, returned as they are, or the name of the procedure.

    Raises
    ------
    gla.errors.UsageError
        For a name other than ``"paper"`` or ``"exact"``.
    """
    if isinstance(protocol, ProtocolSettings):
        return protocol
    if protocol not in PROCEDURES:
        raise UsageError(f"protocol: expected one of {', '.join(PROCEDURES)}, got {protocol!r}")
    return ProtocolSettings(protocol=protocol)


def _search(logits, labels, arg: str, src: Mapping[str, str], settings: ProtocolSettings, threshold: float):
    """The protocol's confidence-matches-accuracy search on a validation split (a
    :class:`gla.temperature.TemperatureFit`; T = 1 and not converged for an unreachable target)."""
    try:
        return fit_temperature(Outputs(logits, labels.long(), "val"), settings, threshold=threshold)
    except ValueError as exc:
        raise UsageError(f"temperature search on {src.get(arg, arg)}: {exc}; give it with --t-zs/--t-ft") from exc
