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
- long-tail (Sec. 4.3): adds fine-tuned ``- log p_s`` and groups many (> 100 training
  images) / medium (20 to 100) / few (< 20), each the mean of per-class accuracies.

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

import json
import math
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import metrics
from .adjust import debias, ensemble_logits, gla_logits, log_prior_from_counts, logit_adjust
from .cache import atomic_write_text
from .errors import UsageError
from .prior_file import PriorFile, load_prior_file
from .protocols.common import THRESHOLD_FINE_TUNED, THRESHOLD_ZERO_SHOT, Outputs, fit_prior, fit_temperature
from .protocols.config import PROTOCOLS as PROCEDURES
from .protocols.config import ProtocolSettings
from .protocols.results import PriorFit

__all__ = ["EXPERIMENTS", "PriorFile", "apply_protocol", "load_prior_file", "load_tensor", "protocol_settings",
           "save_table"]

EXPERIMENTS = ("many-shot", "few-shot", "long-tail")
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


def _row(base: dict, method: str, logits: torch.Tensor, labels: torch.Tensor, *, log_prior=None,
         train_counts=None, **extra) -> dict:
    k = logits.shape[1]
    row = {**base, "method": method, **extra, "n": int(labels.shape[0]), "n_classes": k,
           "top1": metrics.topk_accuracy(logits, labels),
           "top5": metrics.topk_accuracy(logits, labels, k=min(5, k))}
    if log_prior is not None and k >= 3:
        row.update({g: v for g, v in metrics.accuracy_by_prior_group(logits, labels, log_prior).items() if g != "all"})
    if train_counts is not None:
        g = metrics.accuracy_by_count_group(logits, labels, train_counts)
        row.update({"many": g["many"], "medium": g["medium"], "few": g["few"], "mean_per_class": g["all"]})
    row["ece"] = metrics.expected_calibration_error(logits, labels)[0]
    return row


def apply_protocol(which: str, zs: torch.Tensor, ft: torch.Tensor, labels: torch.Tensor, *,
                   protocol: ProtocolSettings | str = "paper", prior: PriorFile | None = None,
                   zs_val: torch.Tensor | None = None, ft_val: torch.Tensor | None = None,
                   labels_val: torch.Tensor | None = None, train_counts: torch.Tensor | None = None,
                   t_zs: float | None = None, t_ft: float | None = None,
                   sources: Mapping[str, str] | None = None) -> pd.DataFrame:
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

    Parameters
    ----------
    which : {"many-shot", "few-shot", "long-tail"}
        The experiment: the paper's Sec. 4.1, 4.2 or 4.3 (the ``experiment`` column).
    zs, ft : (N, K) tensors
        Zero-shot and fine-tuned logits of the same test images.
    labels : (N,) integer tensor
        Test labels (used for scoring only).
    protocol : ProtocolSettings or {"paper", "exact"}
        The procedure (default ``"paper"``, as ``gla run`` and the notebooks). Of a
        :class:`gla.protocols.ProtocolSettings`, ``protocol`` and ``prior_file`` are used
        (``prior`` takes precedence over ``prior_file``).
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

    Returns
    -------
    pandas.DataFrame
        One row per method with ``top1``, ``top5``, ``ece`` and the experiment's groups
        (``head``/``medium``/``tail`` by the prior, or ``many``/``medium``/``few``/
        ``mean_per_class`` by training counts); ``experiment``, ``protocol`` and the
        prior's provenance named as in :data:`gla.protocols.results.COLUMNS`
        (``prior_source``: the estimator id or ``file:<name>``; ``prior_objective``,
        ``prior_grad_norm``, ``prior_sum``), plus ``prior_file_sum`` (the given file's
        sum, NaN when estimated), ``prior_file``, ``prior_estimated_on`` and
        ``prior_temperature``. Few-shot rows add ``t_zs``, ``t_zs_converged``, ``t_ft``
        and ``t_ft_converged`` (converged is None for a given temperature; a search that
        cannot meet its target gives T = 1 and ``False``, as in the protocols).
        ``df.attrs["prior"]`` is the :class:`gla.protocols.PriorFit` removed (its
        ``log_prior`` the normalised ``log q``) and ``df.attrs["temperatures"]`` maps
        ``"t_zs"``/``"t_ft"`` to the :class:`gla.temperature.TemperatureFit` of each
        search (few-shot).

    Raises
    ------
    gla.errors.UsageError
        For an unknown experiment or protocol, inputs whose shapes disagree, or missing
        inputs (no prior and no validation split; long-tail without training counts).
    """
    if which not in EXPERIMENTS:
        raise UsageError(f"experiment: expected one of {', '.join(EXPERIMENTS)}, got {which!r}")
    settings = protocol_settings(protocol)
    if prior is None and settings.prior_file:
        prior = load_prior_file(settings.prior_file)
    src = dict(sources or {})
    named = {a: (t, src.get(a, a)) for a, t in [("zs", zs), ("ft", ft), ("labels", labels), ("zs_val", zs_val),
                                                 ("ft_val", ft_val), ("labels_val", labels_val),
                                                 ("train_counts", train_counts)]}
    k = _check(named)
    zs, ft, labels = zs.to(torch.float64), ft.to(torch.float64), labels.long()
    if which == "long-tail" and train_counts is None:
        raise UsageError("long-tail: training counts per class are required (--train-counts)")
    searched: dict = {}
    if which == "few-shot":
        if t_zs is None or t_ft is None:
            if zs_val is None or ft_val is None or labels_val is None:
                raise UsageError("few-shot: the temperatures are searched on a validation split: give zero-shot and "
                                 "fine-tuned validation logits and their labels (--zs-val, --ft-val, --labels-val), "
                                 "or both temperatures (--t-zs, --t-ft)")
        if t_zs is None:
            searched["t_zs"] = _search(zs_val, labels_val, "zs_val", src, settings, THRESHOLD_ZERO_SHOT)
            t_zs = searched["t_zs"].temperature
        if t_ft is None:
            searched["t_ft"] = _search(ft_val, labels_val, "ft_val", src, settings, THRESHOLD_FINE_TUNED)
            t_ft = searched["t_ft"].temperature
    prior_t = float(t_zs) if which == "few-shot" else 1.0
    zs_converged = searched["t_zs"].converged if "t_zs" in searched else None
    if prior is not None:
        if prior.log_prior.shape[0] != k:
            raise UsageError(f"prior file ({prior.path}): expected {k} values (one per class of the logits), "
                             f"got {prior.log_prior.shape[0]}")
        fit = PriorFit(prior.log_prior, f"file:{Path(prior.path).name}", "", prior_t, zs_converged,
                       {"raw_sum": prior.original_sum})
        given = {"prior_file_sum": prior.original_sum, "prior_file": prior.path, "prior_estimated_on": ""}
    else:
        if zs_val is None or labels_val is None:
            raise UsageError("prior: give a prior file (--prior-file) or a class-balanced validation split to "
                             "estimate it on (--zs-val and --labels-val); the test split is never used")
        try:
            fit = fit_prior(Outputs(zs_val, labels_val.long(), "val"), replace(settings, prior_file=None),
                            temperature=prior_t, temperature_converged=zs_converged)
        except ValueError as exc:
            raise UsageError(f"prior estimation on {src.get('zs_val', 'zs_val')}: {exc}") from exc
        given = {"prior_file_sum": float("nan"), "prior_file": "",
                 "prior_estimated_on": src.get("zs_val", "zs_val")}
    log_q = fit.log_prior.to(torch.float64)
    base = {"experiment": which, "protocol": settings.protocol, "split": "test", "prior_source": fit.source,
            **fit.columns(), **given, "prior_temperature": prior_t, "zs_file": src.get("zs", ""),
            "ft_file": src.get("ft", "")}
    log_ps = None
    if train_counts is not None:
        counts = train_counts.to(torch.float64)
        if (counts <= 0).any():
            raise UsageError(f"train_counts ({src.get('train_counts', 'train_counts')}): every class needs at least "
                             "one training image for log p_s")
        log_ps = log_prior_from_counts(counts)
    rows = []
    if which == "few-shot":
        extra = {"t_zs": t_zs, "t_zs_converged": zs_converged, "t_ft": t_ft,
                 "t_ft_converged": searched["t_ft"].converged if "t_ft" in searched else None}
        models = {"zero-shot": zs, "zero-shot - log q": debias(zs, log_q, temperature=t_zs), "fine-tuned": ft,
                  "ensemble": ft / t_ft + zs / t_zs,
                  "GLA": gla_logits(zs, ft, log_q, zs_temperature=t_zs, ft_temperature=t_ft)}
        rows = [_row({**base, **extra}, m, z, labels, log_prior=log_q) for m, z in models.items()]
    elif which == "many-shot":
        models = {"zero-shot": zs, "zero-shot - log q": debias(zs, log_q), "fine-tuned": ft,
                  "ensemble": ensemble_logits(zs, ft), "GLA": gla_logits(zs, ft, log_q, log_source_prior=log_ps)}
        rows = [_row(base, m, z, labels, log_prior=log_q) for m, z in models.items()]
    else:
        models = {"zero-shot": zs, "zero-shot - log q": debias(zs, log_q), "fine-tuned": ft,
                  "fine-tuned - log p_s": logit_adjust(ft, log_ps), "ensemble": ensemble_logits(zs, ft),
                  "GLA": gla_logits(zs, ft, log_q, log_source_prior=log_ps)}
        rows = [_row(base, m, z, labels, train_counts=train_counts) for m, z in models.items()]
    df = pd.DataFrame(rows)
    df.attrs["prior"] = fit
    df.attrs["temperatures"] = searched
    return df


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


def save_table(df: pd.DataFrame, out_dir: str | os.PathLike, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.json`` (records) atomically.

    The JSON is written with :mod:`json` at full float precision (pandas' ``to_json``
    keeps 10 decimals by default and writes a value such as ``3e-12`` as 0); NaN becomes
    ``null``.
    """
    out = Path(out_dir)
    csv = atomic_write_text(out / f"{stem}.csv", df.to_csv(index=False))
    js = atomic_write_text(out / f"{stem}.json", json.dumps(table_records(df), indent=1, allow_nan=False))
    return csv, js


def table_records(df: pd.DataFrame) -> list[dict]:
    """Rows as plain Python records, floats at full precision, NaN as ``None``."""
    def plain(v):
        if hasattr(v, "item") and not isinstance(v, (list, dict)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return [{str(k): plain(v) for k, v in rec.items()} for rec in df.to_dict(orient="records")]
