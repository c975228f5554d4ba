"""Analyses beyond the paper: how good is the estimated prior, and what is it?

Pure functions over logits, features and priors; the book's "Beyond the paper" chapters
call them on the miniature world (where the true pretraining prior is known) or on a real
backbone (where it is not, and the columns that need it are left out).

- :func:`compare_estimators`: every registered estimator (:mod:`gla.estimators`, iterated
  by id) on the same logits, scored against the truth when it is known and by the
  debiased zero-shot and GLA accuracy it leads to; optionally over seeds (resampled
  estimation sets), summarised by :func:`summarise_seeds` as mean and std.
- :func:`planted_priors` and :func:`planted_prior_study`: plant known priors into logits
  and measure how well each estimator recovers them as the estimation set grows;
  :func:`in_model_logits` draws logits that follow the model ``p(y|x) ∝ p(x|y) q(y)``
  exactly.
- :func:`class_predictors` and :func:`explain_prior`: what else the estimated "prior"
  absorbs (class difficulty, text-side similarity), as correlations and a joint linear
  model with each predictor's unique share of explained variance.
- :func:`plateau`: where an accuracy curve stops improving, given its error bars.
- :func:`calibration_table`: expected calibration error and reliability bins per model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import metrics
from ._validation import check_labels, check_log_prior, check_logits
from .adjust import gla_logits
from .estimators import MODEL_PRIOR, get_estimator_class, list_estimators, make_estimator
from .metrics import linear_correlation, rank_correlation


def _centred(log_prior: torch.Tensor) -> torch.Tensor:
    lp = log_prior.to(torch.float64)
    return lp - lp.mean()


def _recovery(estimate: torch.Tensor, target: torch.Tensor) -> dict:
    """Mean absolute difference of centred log priors, Spearman and Pearson correlations
    (NaN when either vector is constant)."""
    e, t = _centred(estimate), _centred(target)
    varies = float(e.std()) > 0 and float(t.std()) > 0
    return {"error": float((e - t).abs().mean()),
            "spearman": rank_correlation(e, t) if varies else float("nan"),
            "pearson": linear_correlation(e, t) if varies else float("nan")}


def _check_ids(estimators: Sequence[str] | None, default: list[str]) -> list[str]:
    if estimators is None:
        return default
    if isinstance(estimators, str):
        raise TypeError("estimators: expected a sequence of estimator ids, got a single string")
    ids = list(estimators)
    for i in ids:
        get_estimator_class(i)  # raises with the known ids
    return ids


def balanced_subsample(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Indices of a class-balanced random subset: ``per_class`` images of every class
    (without replacement), or with ``per_class=None`` a per-class bootstrap (every class's
    images drawn with replacement, class counts kept). Deterministic in ``seed``."""
    labels = torch.as_tensor(labels).long()
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if per_class is None:
            out.append(idx[torch.randint(len(idx), (len(idx),), generator=g)])
        else:
            if len(idx) < per_class:
                raise ValueError(f"per_class: class {c} has {len(idx)} images, fewer than the "
                                 f"{per_class} requested")
            out.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(out)


def compare_estimators(zs_val: torch.Tensor, y_val: torch.Tensor, zs_test: torch.Tensor, y_test: torch.Tensor, *,
                       estimators: Sequence[str] | None = None, params: Mapping[str, Mapping] | None = None,
                       ft_test: torch.Tensor | None = None, log_source_prior: torch.Tensor | None = None,
                       unlabelled: torch.Tensor | None = None, true_log_prior: torch.Tensor | None = None,
                       official_steps: int | None = None, seeds: Sequence[int] | None = None,
                       images_per_class: int | None = None, include_uniform: bool = True) -> pd.DataFrame:
    """Fit every registered estimator on the same logits and score each estimate.

    Parameters
    ----------
    zs_val, y_val : tensors
        Zero-shot logits (N, K) and labels (N,) of the labelled estimation set (validation).
    zs_test, y_test : tensors
        Zero-shot logits and labels of the test split (scoring only).
    estimators : sequence of str, optional
        Estimator ids (:func:`gla.estimators.list_estimators`); default: all registered.
    params : mapping, optional
        ``{id: {param: value}}`` passed to :func:`gla.estimators.make_estimator`.
    ft_test : tensor, optional
        Fine-tuned logits on the test split; adds the GLA accuracy of each estimate.
    log_source_prior : tensor, optional
        ``log p_s`` of the fine-tuning data, passed to :func:`gla.gla_logits`.
    unlabelled : tensor, optional
        Zero-shot logits of unlabelled target images for the label-free estimators (without
        them those run on the validation logits, ignoring their labels).
    true_log_prior : tensor, optional
        The true pretraining log prior (the world); adds ``spearman_true``,
        ``pearson_true`` and ``mae_true`` (mean absolute error of the centred log priors).
    official_steps : int, optional
        Shorthand for ``params={"official": {"n_steps": ...}}``.
    seeds : sequence of int, optional
        Repeat with resampled estimation sets, one per seed: ``images_per_class`` images of
        each class (or, when it is None, a per-class bootstrap of ``zs_val`` and a bootstrap
        of ``unlabelled``). Without seeds the full sets are used once (``seed`` is NaN).
    images_per_class : int, optional
        Size of each seed's class-balanced subset of the estimation set.
    include_uniform : bool
        Add the baseline row ``uniform`` (no debiasing; not an estimator).

    Returns
    -------
    DataFrame
        One row per estimator (and seed): ``id``, ``estimator`` (display name),
        ``labels`` (whether it needs labels), ``estimates`` (``"model prior"`` or
        ``"target label distribution"``), ``seed``, ``seconds``, ``sum_q`` (mass before
        normalising), ``converged``, ``grad_norm``, ``debiased_top1`` and where available
        ``gla_top1``, ``spearman_true``, ``pearson_true``, ``mae_true`` and ``mae_to_exact``
        (to the ``exact`` row of the same seed). The prior-recovery columns are NaN for
        estimators of the target label distribution (EM): they do not estimate ``q``.
        :func:`summarise_seeds` turns the seeds into mean and std.
    """
    zs_val = check_logits(zs_val, "zs_val")
    k = zs_val.shape[1]
    y_val = check_labels(y_val, zs_val.shape[0], k, "y_val")
    zs_test = check_logits(zs_test, "zs_test")
    y_test = check_labels(y_test, zs_test.shape[0], zs_test.shape[1], "y_test")
    if unlabelled is not None:
        unlabelled = check_logits(unlabelled, "unlabelled")
    if true_log_prior is not None:
        true_log_prior = check_log_prior(true_log_prior, k, "true_log_prior").to(torch.float64)
    ids = _check_ids(estimators, list_estimators())
    params = {i: dict(p) for i, p in (params or {}).items()}
    if official_steps is not None:
        params.setdefault("official", {})["n_steps"] = int(official_steps)
    unknown = set(params) - set(ids)
    if unknown:
        raise ValueError(f"params: ids {sorted(unknown)} are not among the estimators compared ({ids})")

    def score(row, lq, temperature, is_prior, exact):
        zt = zs_test.to(torch.float64) / temperature
        row["debiased_top1"] = metrics.topk_accuracy(zt - lq, y_test)
        if ft_test is not None:
            row["gla_top1"] = metrics.topk_accuracy(
                gla_logits(zt, ft_test, lq, log_source_prior=log_source_prior), y_test)
        if true_log_prior is not None:
            rec = _recovery(lq, true_log_prior) if is_prior else dict.fromkeys(("error", "spearman", "pearson"),
                                                                              float("nan"))
            row.update(spearman_true=rec["spearman"], pearson_true=rec["pearson"], mae_true=rec["error"])
        if exact is not None:
            row["mae_to_exact"] = float((_centred(lq) - _centred(exact)).abs().mean()) if is_prior else float("nan")
        return row

    rows = []
    for seed in (list(seeds) if seeds else [None]):
        zv, yv, pool = zs_val, y_val, unlabelled
        if seed is not None:
            idx = balanced_subsample(y_val, images_per_class, seed)
            zv, yv = zs_val[idx], y_val[idx]
            if pool is not None:
                g = torch.Generator().manual_seed(int(seed))
                pool = pool[torch.randint(pool.shape[0], (pool.shape[0],), generator=g)]
        fitted = {}
        for i in ids:
            est = make_estimator(i, **params.get(i, {}))
            t0 = time.perf_counter()
            if est.requires_labels:
                est.fit(zv, yv)
            else:
                est.fit(zv if pool is None else pool)
            fitted[i] = (est, time.perf_counter() - t0)
        exact = fitted["exact"][0].log_prior_ if "exact" in fitted else None
        for i, (est, seconds) in fitted.items():
            d = est.diagnostics_
            row = {"id": i, "estimator": est.name, "labels": est.requires_labels, "estimates": est.estimates,
                   "seed": float("nan") if seed is None else seed, "seconds": seconds, "sum_q": d.raw_sum,
                   "converged": d.converged, "grad_norm": d.grad_norm}
            rows.append(score(row, est.log_prior_, est.temperature_, est.estimates == MODEL_PRIOR, exact))
        if include_uniform:
            row = {"id": "uniform", "estimator": "uniform (no debiasing)", "labels": False,
                   "estimates": "baseline", "seed": float("nan") if seed is None else seed, "seconds": 0.0,
                   "sum_q": 1.0, "converged": True, "grad_norm": 0.0}
            rows.append(score(row, torch.full((k,), -math.log(k), dtype=torch.float64), 1.0, True, exact))
    return pd.DataFrame(rows)


def summarise_seeds(df: pd.DataFrame, by: Sequence[str] = ("id", "estimator"),
                    columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every numeric column.

    Parameters
    ----------
    df : DataFrame
        Rows of :func:`compare_estimators` or :func:`planted_prior_study` (one per seed).
    by : sequence of str
        Columns that identify a group (the seed column is averaged over); for
        :func:`planted_prior_study` use ``("planted", "id", "images_per_class")``.
    columns : sequence of str, optional
        Numeric columns to summarise; default all numeric and boolean columns except
        ``seed``, ``labels``, ``images_per_class`` and ``by`` (``converged_mean`` is the
        share of seeds that converged).

    Returns
    -------
    DataFrame
        One row per group, in the order groups first appear: the ``by`` columns,
        ``n_seeds``, and ``<column>_mean`` / ``<column>_std`` for each column (std with
        ``ddof=1``; NaN for a single seed).
    """
    by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"by: columns {missing} are not in the table (columns: {list(df.columns)})")
    if columns is None:
        columns = [c for c in df.select_dtypes(include=[np.number, "bool"]).columns
                   if c not in by and c not in ("seed", "labels", "images_per_class")]
    g = df.groupby(by, sort=False)
    out = g.size().rename("n_seeds").to_frame()
    for c in columns:
        vals = g[c].agg(["mean", "std"]).astype(float)
        out[f"{c}_mean"], out[f"{c}_std"] = vals["mean"], vals["std"]
    return out.reset_index()


# --------------------------------------------------------------------------- planted priors


def in_model_logits(log_prior: torch.Tensor, n_per_class: int, *, signal: float = 1.5,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that follow the model ``p(y|x) ∝ p(x|y) q(y)`` exactly, on a balanced set.

    Images are ``x ~ N(signal * e_y, I)`` in ``R^K`` (``n_per_class`` of each class), and the
    logits are their exact log joint ``log p(x|k) + log q_k`` up to a per-image constant:
    ``z = signal * x + log q``. So ``softmax(z)`` is the Bayes posterior under the prior
    ``q``: the regime in which the label-free balanced-prediction and the eigenvector
    estimators are exact in expectation. Returns ``(logits, labels)``, float64 and int64.
    """
    lq = torch.as_tensor(log_prior, dtype=torch.float64)
    if lq.ndim != 1 or lq.shape[0] < 2 or not bool(torch.isfinite(lq).all()):
        raise ValueError("log_prior: expected a 1-D vector of at least 2 finite log-probabilities")
    if int(n_per_class) < 1:
        raise ValueError(f"n_per_class: expected a positive integer, got {n_per_class}")
    k = lq.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    y = torch.arange(k).repeat_interleave(int(n_per_class))
    x = signal * torch.nn.functional.one_hot(y, k).to(torch.float64) + torch.randn(len(y), k, generator=g,
                                                                                    dtype=torch.float64)
    return signal * x + (lq - torch.logsumexp(lq, 0)), y


def planted_priors(true_log_prior: torch.Tensor, strengths: Sequence[float] = (0.5, 1, 2),
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """Priors to plant into logits: the world's true prior at several strengths, and a random one.

    Parameters
    ----------
    true_log_prior : (K,) tensor
        The world's true pretraining log prior.
    strengths : sequence of float
        Exponents ``s``: the planted prior is ``q_true ** s`` (renormalised), i.e. the log
        prior scaled by ``s``.
    seed : int
        Seed of the random prior: a random permutation of ``q_true`` (same spread, no
        relation to the classes).

    Returns
    -------
    dict
        ``{"true^s": log prior, ..., "random": log prior}``, every entry normalised
        (``logsumexp == 0``), float64.
    """
    lq = torch.as_tensor(true_log_prior, dtype=torch.float64)
    if lq.ndim != 1 or lq.shape[0] < 2 or not bool(torch.isfinite(lq).all()):
        raise ValueError("true_log_prior: expected a 1-D vector of at least 2 finite log-probabilities")
    lq = lq - torch.logsumexp(lq, 0)
    out = {}
    for s in strengths:
        s = float(s)
        out[f"true^{s:g}"] = s * lq - torch.logsumexp(s * lq, 0)
    g = torch.Generator().manual_seed(int(seed))
    out["random"] = lq[torch.randperm(lq.shape[0], generator=g)]
    return out


def planted_prior_study(zs_logits: torch.Tensor, labels: torch.Tensor, planted: Mapping[str, torch.Tensor], *,
                        estimators: Sequence[str] | None = None, sizes: Sequence[int] = (1, 2, 4, 8, 16),
                        seeds: Sequence[int] = (1, 2, 3), base_log_prior: torch.Tensor | None = None,
                        params: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """How well each estimator recovers a prior planted into the logits, by set size.

    Planting ``log p`` into logits ``z`` gives ``z + log p``: a model whose prior is the
    one already in ``z`` (``q_0``) times ``p``. For every planted prior, estimator, size
    ``n`` (images per class) and seed, the estimator is fitted on a class-balanced random
    subset of ``n`` images per class (labels given only to estimators that need them; the
    label-free ones see the same images unlabelled), and its estimate is compared with
    the target ``log q_0 + log p``.

    ``q_0`` is ``base_log_prior`` when it is known (the world's true prior, or the prior
    the logits were generated with); otherwise each estimator's own estimate on all the
    unplanted logits, so the error then measures how far a small set moves the estimator
    from its large-sample answer once ``p`` is planted. The planted name ``"none"`` (no
    planting) is always included: what each estimator finds in the logits as they are.

    Parameters
    ----------
    zs_logits, labels : tensors
        Zero-shot logits (N, K) and labels (N,) of a labelled pool with at least
        ``max(sizes)`` images of every class.
    planted : mapping of str to (K,) tensor
        Named log priors to plant (e.g. :func:`planted_priors`); the name ``"none"`` is
        reserved.
    estimators : sequence of str, optional
        Estimator ids; default: every registered estimator of the model prior
        (``list_estimators(estimates="model prior")``). An estimator of the target label
        distribution (EM) may be asked for; its rows say so in ``estimates``.
    sizes : sequence of int
        Images per class.
    seeds : sequence of int
        One random subset per seed (the same subset for every planted prior and estimator).
    base_log_prior : (K,) tensor, optional
        The prior ``q_0`` already in ``zs_logits``, when known.
    params : mapping, optional
        ``{id: {param: value}}`` for :func:`gla.estimators.make_estimator`.

    Returns
    -------
    DataFrame
        Tidy, one row per planted x estimator x images-per-class x seed: ``planted``,
        ``id``, ``estimator`` (display name), ``estimates``, ``labels``,
        ``images_per_class``, ``seed``, ``error`` (mean absolute difference of the centred
        estimated and target log priors), ``spearman``, ``pearson`` (NaN when a vector is
        constant), ``converged``.
    """
    z = check_logits(zs_logits, "zs_logits").to(torch.float64)
    k = z.shape[1]
    y = check_labels(labels, z.shape[0], k)
    if "none" in planted:
        raise ValueError("planted: the name 'none' is reserved for the unplanted logits")
    plants = {"none": torch.zeros(k, dtype=torch.float64)}
    for name, lp in planted.items():
        plants[str(name)] = check_log_prior(lp, k, f"planted[{name!r}]").to(torch.float64)
    ids = _check_ids(estimators, list_estimators(estimates=MODEL_PRIOR))
    params = {i: dict(p) for i, p in (params or {}).items()}
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes: expected positive numbers of images per class, got {sizes}")
    counts = torch.bincount(y, minlength=k)
    if int(counts.min()) < max(sizes):
        raise ValueError(f"labels: every class needs at least max(sizes) = {max(sizes)} images; the smallest "
                         f"class has {int(counts.min())}")
    if base_log_prior is not None:
        base = {i: check_log_prior(base_log_prior, k, "base_log_prior").to(torch.float64) for i in ids}
    else:
        base = {}
        for i in ids:
            est = make_estimator(i, **params.get(i, {}))
            base[i] = (est.fit(z, y) if est.requires_labels else est.fit(z)).log_prior_
    rows = []
    for n in sizes:
        for seed in seeds:
            idx = balanced_subsample(y, n, seed)
            zs, ys = z[idx], y[idx]
            for pname, lp in plants.items():
                zp = zs + lp
                for i in ids:
                    est = make_estimator(i, **params.get(i, {}))
                    est.fit(zp, ys) if est.requires_labels else est.fit(zp)
                    rec = _recovery(est.log_prior_, base[i] + lp)
                    rows.append({"planted": pname, "id": i, "estimator": est.name, "estimates": est.estimates,
                                 "labels": est.requires_labels, "images_per_class": n, "seed": seed, **rec,
                                 "converged": est.diagnostics_.converged})
    return pd.DataFrame(rows)


def class_predictors(head: torch.Tensor, val_features: torch.Tensor, val_labels: torch.Tensor, *,
                     val_logits_ft: torch.Tensor | None = None,
                     true_log_prior: torch.Tensor | None = None) -> pd.DataFrame:
    """Per-class quantities the estimated prior might absorb.

    ``head`` is the ``(D, K)`` zero-shot head (normalised text embeddings);
    ``val_features`` the normalised image features of the labelled validation images.

    Columns: ``text_similarity`` (mean cosine of a class's text embedding to the others:
    a "hub" text attracts images of other classes), ``text_nearest`` (cosine to the nearest
    other class text), ``image_text_alignment`` (cosine between a class's mean image
    feature and its text embedding), ``image_nearest`` (cosine between a class's mean
    image feature and the nearest other class's), ``difficulty`` (1 - per-class val
    accuracy of a fine-tuned model, when ``val_logits_ft`` is given), ``true_log_prior``.
    """
    w = torch.nn.functional.normalize(head.T.to(torch.float64), dim=1)  # (K, D)
    k = w.shape[0]
    sim = w @ w.T
    off = sim.masked_fill(torch.eye(k, dtype=torch.bool), float("nan"))
    f = torch.nn.functional.normalize(val_features.to(torch.float64), dim=1)
    counts = torch.bincount(val_labels, minlength=k)
    if (counts == 0).any():
        raise ValueError("val_labels: every class needs at least one validation image")
    centroids = torch.zeros(k, f.shape[1], dtype=torch.float64).index_add_(0, val_labels, f) / counts[:, None]
    c = torch.nn.functional.normalize(centroids, dim=1)
    img = (c @ c.T).masked_fill(torch.eye(k, dtype=torch.bool), -2.0)
    out = {"class_index": np.arange(k),
           "text_similarity": torch.nanmean(off, dim=1).numpy(),
           "text_nearest": torch.nan_to_num(off, nan=-2.0).max(dim=1).values.numpy(),
           "image_text_alignment": (c * w).sum(1).numpy(),
           "image_nearest": img.max(dim=1).values.numpy()}
    if val_logits_ft is not None:
        out["difficulty"] = (1 - metrics.per_class_accuracy(val_logits_ft, val_labels)).numpy()
    if true_log_prior is not None:
        out["true_log_prior"] = _centred(true_log_prior).numpy()
    return pd.DataFrame(out)


def explain_prior(log_prior: torch.Tensor, predictors: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How much of the estimated log prior each per-class predictor accounts for.

    Returns ``(single, joint)``: ``single`` has each predictor's Spearman and Pearson
    correlation with the centred log prior; ``joint`` the standardised coefficients of an
    ordinary least-squares fit on all predictors together, each predictor's unique share
    (the drop in R^2 when it is left out), and the joint R^2 (row ``all``).
    """
    names = [c for c in predictors.columns if c != "class_index"]
    if not names:
        raise ValueError("predictors: expected at least one predictor column besides class_index")
    y = _centred(log_prior).numpy()
    if len(predictors) != len(y):
        raise ValueError(f"predictors: expected {len(y)} rows (one per class), got {len(predictors)}")
    x = predictors[names].to_numpy(dtype=np.float64)
    single = pd.DataFrame({"predictor": names,
                           "spearman": [rank_correlation(x[:, i], y) for i in range(len(names))],
                           "pearson": [linear_correlation(x[:, i], y) for i in range(len(names))]})

    def zscore(a):
        sd = a.std(axis=0)
        return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)

    xs, ys = zscore(x), zscore(y[:, None])[:, 0]

    def r2(cols):
        a = np.column_stack([np.ones(len(ys)), xs[:, cols]])
        coef, *_ = np.linalg.lstsq(a, ys, rcond=None)
        resid = ys - a @ coef
        return 1 - float(resid @ resid) / float(ys @ ys), coef[1:]

    full, coef = r2(list(range(len(names))))
    unique = [full - r2([j for j in range(len(names)) if j != i])[0] for i in range(len(names))]
    joint = pd.DataFrame({"predictor": names + ["all"], "std_coefficient": list(coef) + [np.nan],
                          "unique_r2": unique + [np.nan], "r2": [np.nan] * len(names) + [full]})
    return single, joint


def plateau(df: pd.DataFrame, x: str, y: str, *, by: str | None = None) -> pd.DataFrame:
    """The smallest ``x`` whose mean ``y`` is within the noise of the best mean.

    Rows of ``df`` are repeated measurements (seeds). For each group of ``by``: the mean,
    standard deviation and standard error of ``y`` at each ``x``; the plateau is the first
    ``x`` whose mean is at least the best mean minus the larger of the two standard
    errors (so the difference is not distinguishable from seed noise).
    """
    groups = [(None, df)] if by is None else list(df.groupby(by))
    rows = []
    for key, g in groups:
        s = g.groupby(x)[y].agg(["mean", "std", "count"]).sort_index()
        s["sem"] = (s["std"].fillna(0) / np.sqrt(s["count"])).astype(float)
        best = s["mean"].idxmax()
        reached = s.index[s["mean"] >= s.loc[best, "mean"] - np.maximum(s["sem"], s.loc[best, "sem"])]
        rows.append({**({by: key} if by else {}), "plateau_" + x: reached.min(), "best_" + x: best,
                     "mean_at_plateau": float(s.loc[reached.min(), "mean"]),
                     "best_mean": float(s.loc[best, "mean"])})
    return pd.DataFrame(rows)


def calibration_table(logits: Mapping[str, torch.Tensor], labels: torch.Tensor, *,
                      n_bins: int = 15) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-1 accuracy and expected calibration error of each model, and the reliability
    bins (``model``, bin columns of :func:`gla.expected_calibration_error`)."""
    summary, bins = [], []
    for name, z in logits.items():
        ece, table = metrics.expected_calibration_error(z, labels, n_bins=n_bins)
        summary.append({"model": name, "top1": metrics.topk_accuracy(z, labels), "ece": ece,
                        "mean_confidence": float(torch.softmax(z.double(), 1).max(1).values.mean())})
        bins.append(table.assign(model=name))
    return pd.DataFrame(summary), pd.concat(bins, ignore_index=True)
