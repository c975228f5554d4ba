"""Metrics: accuracy, per-class accuracy, group breakdowns and calibration.

``scipy.stats`` is imported inside the two correlation functions only: it is slow to import
and nothing else here needs it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ._validation import ArrayLike, as_tensor, check_labels, check_log_prior, check_logits

__all__ = [
    "topk_accuracy",
    "per_class_accuracy",
    "mean_per_class_accuracy",
    "prior_groups",
    "count_groups",
    "accuracy_by_prior_group",
    "accuracy_by_count_group",
    "expected_calibration_error",
    "GROUP_NAMES",
]

GROUP_NAMES = {"prior": ("head", "medium", "tail"), "count": ("many", "medium", "few")}


def _preds(logits: ArrayLike, labels: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, int]:
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1])
    return z.argmax(dim=1), y.to(z.device), z.shape[1]


def topk_accuracy(logits: ArrayLike, labels: ArrayLike, k: int | tuple[int, ...] = 1) -> float | dict[int, float]:
    """Top-k accuracy (a fraction). With a tuple of ks returns ``{k: accuracy}``."""
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
    ks = (k,) if isinstance(k, int) else tuple(k)
    for kk in ks:
        if not 1 <= kk <= z.shape[1]:
            raise ValueError(f"k: expected 1 <= k <= {z.shape[1]} (the number of classes), got {kk}")
    top = z.topk(max(ks), dim=1).indices
    hit = top == y[:, None]
    out = {kk: float(hit[:, :kk].any(dim=1).double().mean()) for kk in ks}
    return out[ks[0]] if isinstance(k, int) else out


def per_class_accuracy(logits: ArrayLike, labels: ArrayLike) -> torch.Tensor:
    """Accuracy of each class (float64, length K); NaN for a class with no test sample."""
    pred, y, k = _preds(logits, labels)
    correct = torch.zeros(k, dtype=torch.float64, device=y.device).index_add_(0, y, (pred == y).double())
    total = torch.bincount(y, minlength=k).double()
    return torch.where(total > 0, correct / total.clamp_min(1), torch.full_like(total, float("nan")))


def mean_per_class_accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean of the per-class accuracies over the classes present in ``labels``."""
    acc = per_class_accuracy(logits, labels)
    return float(acc[~torch.isnan(acc)].mean())


def prior_groups(log_prior: ArrayLike, sizes: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Head / medium / tail group (0 / 1 / 2) of each class by a prior, descending.

    Classes are sorted by ``log_prior`` (largest first) and cut into thirds sized like the
    paper's ImageNet split (333 / 333 / 334 at K = 1000, as ``breakdown_accuracy`` in the
    official ``Code.zip``, ``src/gla.py`` L22-43): ``K // 3``, ``K // 3`` and the
    remainder. ``sizes`` overrides the three sizes (they must add up to K). Only the order
    matters, so ``q``, ``q / sum(q)`` and ``log q`` give the same groups (pass ``log q``).
    Ties are broken by class index, so the grouping is deterministic.

    Parameters
    ----------
    log_prior : (K,) finite vector, K >= 3
        A log prior (any normalisation) or any score that orders the classes.
    sizes : (int, int, int), optional
        Numbers of head, medium and tail classes.

    Returns
    -------
    (K,) long tensor
        0 for head, 1 for medium, 2 for tail.
    """
    lp = as_tensor(log_prior, "log_prior").to(torch.float64).cpu()
    if lp.ndim != 1 or lp.shape[0] < 3:
        raise ValueError(f"log_prior: expected a 1-D vector of at least 3 classes, got shape {tuple(lp.shape)}")
    k = lp.shape[0]
    check_log_prior(lp, k)
    if sizes is None:
        sizes = (k // 3, k // 3, k - 2 * (k // 3))
    if len(sizes) != 3 or sum(sizes) != k or min(sizes) < 0:
        raise ValueError(f"sizes: expected three non-negative group sizes adding up to {k}, got {sizes}")
    order = np.lexsort((np.arange(k), -lp.numpy()))  # by prior descending, then index
    groups = torch.empty(k, dtype=torch.long)
    groups[torch.as_tensor(order[: sizes[0]])] = 0
    groups[torch.as_tensor(order[sizes[0]: sizes[0] + sizes[1]])] = 1
    groups[torch.as_tensor(order[sizes[0] + sizes[1]:])] = 2
    return groups


def count_groups(train_counts: ArrayLike, many: int = 100, few: int = 20) -> torch.Tensor:
    """Many / medium / few group (0 / 1 / 2) by training-set size per class.

    The long-tail convention (official ``GLA.FS.public.zip``, ``trainers/util.py``
    L433-475; LIFT ``trainer.py`` L162-164): many-shot ``> many`` (100) images, few-shot
    ``< few`` (20), medium in between (20 and 100 included).

    Parameters
    ----------
    train_counts : (K,) non-negative counts
        Training images per class.
    many, few : int
        The two thresholds.

    Returns
    -------
    (K,) long tensor
        0 for many, 1 for medium, 2 for few.
    """
    c = as_tensor(train_counts, "train_counts")
    if c.ndim != 1 or (c < 0).any():
        raise ValueError("train_counts: expected a 1-D vector of non-negative counts per class")
    g = torch.ones(c.shape[0], dtype=torch.long)
    g[c > many] = 0
    g[c < few] = 2
    return g


def accuracy_by_prior_group(logits: ArrayLike, labels: ArrayLike, log_prior: ArrayLike,
                            sizes: tuple[int, int, int] | None = None, *,
                            empty: float = float("nan")) -> dict[str, float]:
    """Top-1 accuracy on the test images of head, medium and tail classes, and overall.

    As in the paper's ImageNet tables (official ``Code.zip``, ``src/gla.py`` L13-43), each
    group's accuracy is the average over the test *images* whose true class is in the
    group (groups from :func:`prior_groups`).

    Parameters
    ----------
    logits : (N, K)
        Logits of the model under test.
    labels : (N,)
        True classes.
    log_prior : (K,)
        The prior that defines the groups (any normalisation).
    sizes : (int, int, int), optional
        Group sizes, see :func:`prior_groups`.
    empty : float
        Value reported for a group with no test image: NaN by default (no data is not an
        accuracy of 0); ``empty=0.0`` follows the official long-tail convention
        (:func:`accuracy_by_count_group`).

    Returns
    -------
    dict
        ``head``, ``medium``, ``tail`` and ``all``, fractions.
    """
    pred, y, k = _preds(logits, labels)
    groups = prior_groups(check_log_prior(log_prior, k), sizes).to(y.device)
    correct = (pred == y).double()
    out = {}
    for gi, name in enumerate(GROUP_NAMES["prior"]):
        mask = groups[y] == gi
        out[name] = float(correct[mask].mean()) if mask.any() else float(empty)
    out["all"] = float(correct.mean())
    return out


def accuracy_by_count_group(logits: ArrayLike, labels: ArrayLike, train_counts: ArrayLike,
                            many: int = 100, few: int = 20, *,
                            empty: float = float("nan")) -> dict[str, float]:
    """Many / medium / few / all accuracy, each the mean of per-class accuracies.

    This is the long-tail benchmarks' convention (ImageNet-LT, Places365-LT), as
    ``shot_acc`` in the official ``GLA.FS.public.zip``, ``trainers/util.py`` L433-475:
    the per-class accuracies of the classes present in ``labels`` are averaged within each
    group (groups from :func:`count_groups`); ``all`` is their mean over all those classes.

    Parameters
    ----------
    logits : (N, K)
        Logits of the model under test.
    labels : (N,)
        True classes; classes absent from them are left out of every mean.
    train_counts : (K,)
        Training images per class.
    many, few : int
        Group thresholds, see :func:`count_groups`.
    empty : float
        Value reported for a group without any class present in ``labels``. NaN by
        default: a group with no class has no accuracy. The official code reports 0
        (``util.py`` L463-468); pass ``empty=0.0`` to reproduce its numbers.

    Returns
    -------
    dict
        ``many``, ``medium``, ``few`` and ``all``, fractions.
    """
    acc = per_class_accuracy(logits, labels).cpu()
    groups = count_groups(train_counts, many, few)
    if groups.shape[0] != acc.shape[0]:
        raise ValueError(f"train_counts: expected {acc.shape[0]} counts (one per class), got {groups.shape[0]}")
    out = {}
    for gi, name in enumerate(GROUP_NAMES["count"]):
        a = acc[(groups == gi) & ~torch.isnan(acc)]
        out[name] = float(a.mean()) if a.numel() else float(empty)
    out["all"] = float(acc[~torch.isnan(acc)].mean())
    return out


def expected_calibration_error(logits: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> tuple[float, pd.DataFrame]:
    """Expected calibration error of the max-softmax confidence, and the reliability data.

    Confidences are put into ``n_bins`` equal-width bins on ``[0, 1]``; ECE is the
    sample-weighted mean of ``|accuracy - confidence|`` over bins.

    Returns
    -------
    ece : float
        A fraction (multiply by 100 for percent).
    bins : pandas.DataFrame
        One row per bin: ``lower``, ``upper``, ``count``, ``confidence`` (mean),
        ``accuracy``; empty bins have NaN means. Plot accuracy against confidence for a
        reliability diagram.
    """
    z = check_logits(logits).to(torch.float64)
    y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins}")
    prob = torch.softmax(z, dim=1)
    conf, pred = prob.max(dim=1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf.cpu(), edges[1:-1], right=True)
    rows, ece = [], 0.0
    n = z.shape[0]
    for b in range(n_bins):
        mask = idx == b
        cnt = int(mask.sum())
        c = float(conf.cpu()[mask].mean()) if cnt else float("nan")
        a = float(correct.cpu()[mask].mean()) if cnt else float("nan")
        if cnt:
            ece += cnt / n * abs(a - c)
        rows.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": cnt,
                     "confidence": c, "accuracy": a})
    return ece, pd.DataFrame(rows)


def rank_correlation(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation of two per-class vectors (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(_as_numpy(a), _as_numpy(b)).correlation)


def linear_correlation(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation of two per-class vectors."""
    from scipy.stats import pearsonr

    return float(pearsonr(_as_numpy(a), _as_numpy(b))[0])


def _as_numpy(a: ArrayLike):
    return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=float)
