"""Input checks at the public boundary.

Every public function of :mod:`gla` checks its inputs once, here, and raises a
``ValueError`` (or ``TypeError``) whose message names the argument and says what was
expected. Internal helpers trust their inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | Sequence


def as_tensor(x: ArrayLike, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Turn ``x`` into a tensor without copying when it already is one."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name}: expected a tensor or array, got {type(x).__name__}") from exc
    if dtype is not None:
        t = t.to(dtype)
    return t


def check_logits(logits: ArrayLike, name: str = "logits") -> torch.Tensor:
    """Check a logit matrix: 2-D ``(N, K)`` floating point with finite entries."""
    t = as_tensor(logits, name)
    if t.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array of shape (n_samples, n_classes), got {t.ndim}-D "
            f"with shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[1] < 2:
        raise ValueError(
            f"{name}: expected at least one sample and two classes, got shape {tuple(t.shape)}"
        )
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    # One cheap reduction first; the elementwise scan only runs when it is not finite.
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        bad = ~torch.isfinite(t)
        rows = torch.nonzero(bad.any(dim=1)).flatten()[:5].tolist()
        kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
        raise ValueError(
            f"{name}: expected finite values, found {int(bad.sum())} non-finite entries "
            f"({kind}; first rows {rows})"
        )
    return t


def check_labels(labels: ArrayLike, n_samples: int, n_classes: int, name: str = "labels") -> torch.Tensor:
    """Check integer class labels in ``[0, n_classes)`` of length ``n_samples``."""
    t = as_tensor(labels, name)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class indices, got shape {tuple(t.shape)}")
    if t.shape[0] != n_samples:
        raise ValueError(
            f"{name}: expected {n_samples} labels (one per row of the logits), got {t.shape[0]}"
        )
    if torch.is_floating_point(t):
        if not torch.equal(t, t.round()):
            raise ValueError(f"{name}: expected integer class indices, got non-integer values")
    t = t.long()
    if n_samples and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(
            f"{name}: expected class indices in [0, {n_classes - 1}], got values from "
            f"{int(t.min())} to {int(t.max())}"
        )
    return t


def check_log_prior(log_prior: ArrayLike, n_classes: int, name: str = "log_prior") -> torch.Tensor:
    """Check a vector of log-probabilities of length ``n_classes`` (finite entries)."""
    t = as_tensor(log_prior, name)
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    if t.ndim != 1 or t.shape[0] != n_classes:
        raise ValueError(
            f"{name}: expected a 1-D vector of {n_classes} log-probabilities (one per class), "
            f"got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(
            f"{name}: expected finite log-probabilities; a class with prior 0 (log -inf) cannot "
            "be adjusted for"
        )
    return t


def check_prior(prior: ArrayLike, n_classes: int, name: str = "prior") -> torch.Tensor:
    """Check a vector of positive class probabilities or counts of length ``n_classes``.

    Returns the normalised probabilities.
    """
    t = as_tensor(prior, name)
    if not torch.is_floating_point(t):
        t = t.to(torch.float64)
    if t.ndim != 1 or t.shape[0] != n_classes:
        raise ValueError(
            f"{name}: expected a 1-D vector of {n_classes} positive values (one per class), "
            f"got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all() or (t <= 0).any():
        bad = torch.nonzero(~(torch.isfinite(t) & (t > 0))).flatten()[:5].tolist()
        raise ValueError(
            f"{name}: expected strictly positive finite values, got non-positive or non-finite "
            f"entries at classes {bad}"
        )
    return t / t.sum()


def check_unit_interval(x: float, name: str) -> float:
    """Check a scalar in ``[0, 1]``."""
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a number in [0, 1], got {x!r}") from exc
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name}: expected a number in [0, 1], got {v}")
    return v


def check_positive(x: float, name: str) -> float:
    """Check a strictly positive finite scalar."""
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a positive number, got {x!r}") from exc
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {v}")
    return v


def check_state_dicts(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                      names: tuple[str, str] = ("state_dict_0", "state_dict_1")) -> None:
    """Check that two state dicts share keys and tensor shapes."""
    ka, kb = set(a), set(b)
    if ka != kb:
        only_a = sorted(ka - kb)[:5]
        only_b = sorted(kb - ka)[:5]
        raise ValueError(
            f"{names[0]} and {names[1]}: expected the same keys (one architecture); "
            f"only in {names[0]}: {only_a}; only in {names[1]}: {only_b}"
        )
    for k in a:
        if tuple(a[k].shape) != tuple(b[k].shape):
            raise ValueError(
                f"{names[0]} and {names[1]}: expected the same shape for '{k}', got "
                f"{tuple(a[k].shape)} and {tuple(b[k].shape)}"
            )
