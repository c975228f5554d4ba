"""Analyses beyond the paper: how good is the estimated prior, and what is it?

Pure functions over logits, features and priors; the book's "Beyond the paper" chapters
call them on the miniature world (where the true pretraining prior is known) or on a real
backbone (where it is not, and the columns that need it are left out).

- :func:`compare_estimators`: the paper's objective solved exactly, the official
  algorithm (1000 Lagrangian steps), the label-free EM re-estimation of Saerens et al.
  (2002), the mean predicted probability; each scored against the truth and by the
  debiased zero-shot and GLA accuracy it leads to.
- :func:`class_predictors` and :func:`explain_prior`: what else the estimated "prior"
  absorbs (class difficulty, text-side similarity), as correlations and a joint linear
  model with each predictor's unique share of explained variance.
- :func:`plateau`: where an accuracy curve stops improving, given its error bars.
- :func:`calibration_table`: expected calibration error and reliability bins per model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch

from . import metrics
from .adjust import debias, gla_logits
from .metrics import linear_correlation, rank_correlation
from .prior import PriorEstimator, em_prior, mean_probability_prior, official_lagrangian_prior


def _centred(log_prior: torch.Tensor) -> torch.Tensor:
    lp = log_prior.to(torch.float64)
    return lp - lp.mean()


def compare_estimators(zs_val: torch.Tensor, y_val: torch.Tensor, zs_test: torch.Tensor, y_test: torch.Tensor, *,
                       ft_test: torch.Tensor | None = None, log_source_prior: torch.Tensor | None = None,
                       unlabelled: torch.Tensor | None = None, true_log_prior: torch.Tensor | None = None,
                       official_steps: int = 1000) -> pd.DataFrame:
    """Estimate the prior in several ways on the same logits and score each estimate.

    Parameters
    ----------
    zs_val, y_val : tensors
        Zero-shot logits and labels of the labelled estimation set (validation split).
    zs_test, y_test : tensors
        Zero-shot logits and labels of the test split (scoring only).
    ft_test : tensor, optional
        Fine-tuned logits on the test split; adds the GLA accuracy of each estimate.
    log_source_prior : tensor, optional
        ``log p_s`` of the fine-tuning data, passed to :func:`gla.gla_logits`.
    unlabelled : tensor, optional
        Zero-shot logits of unlabelled target images for the EM re-estimation (without
        them EM runs on the validation logits, ignoring their labels).
    true_log_prior : tensor, optional
        The true pretraining log prior (the world); adds rank / linear correlations and the
        mean absolute error of the centred log priors.
    official_steps : int
        Steps of the official Lagrangian algorithm.

    Returns
    -------
    DataFrame
        One row per estimator: ``estimator``, ``labels`` (whether it needs labels),
        ``seconds``, ``debiased_top1``, and where available ``gla_top1``,
        ``spearman_true``, ``pearson_true``, ``mae_true``, ``sum_q`` (the estimate's total
        mass before renormalising) and ``mae_to_exact``.
    """
    pool = zs_val if unlabelled is None else unlabelled
    estimators: dict[str, tuple[bool, Callable[[], torch.Tensor]]] = {
        "exact (paper's objective)": (True, lambda: PriorEstimator().fit(zs_val, y_val).log_prior_),
        f"official algorithm ({official_steps} steps)": (
            True, lambda: official_lagrangian_prior(zs_val, y_val, n_steps=official_steps)),
        "EM, label-free (Saerens et al.)": (False, lambda: em_prior(pool)),
        "mean predicted probability": (False, lambda: mean_probability_prior(pool)),
        "uniform (no debiasing)": (False, lambda: torch.full((zs_val.shape[1],), -math.log(zs_val.shape[1]),
                                                             dtype=torch.float64)),
    }
    rows, exact = [], None
    for name, (needs_labels, fn) in estimators.items():
        t0 = time.perf_counter()
        raw = fn()
        seconds = time.perf_counter() - t0
        lq = raw - torch.logsumexp(raw, 0)
        if exact is None:
            exact = lq
        row = {"estimator": name, "labels": needs_labels, "seconds": seconds,
               "sum_q": float(torch.exp(raw).sum()),
               "mae_to_exact": float((_centred(lq) - _centred(exact)).abs().mean()),
               "debiased_top1": metrics.topk_accuracy(debias(zs_test, lq), y_test)}
        if ft_test is not None:
            row["gla_top1"] = metrics.topk_accuracy(
                gla_logits(zs_test, ft_test, lq, log_source_prior=log_source_prior), y_test)
        if true_log_prior is not None:
            varies = float(lq.std()) > 0
            row["spearman_true"] = rank_correlation(lq, true_log_prior) if varies else float("nan")
            row["pearson_true"] = linear_correlation(lq, true_log_prior) if varies else float("nan")
            row["mae_true"] = float((_centred(lq) - _centred(true_log_prior)).abs().mean())
        rows.append(row)
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
