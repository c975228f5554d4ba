"""Adjusting logits: debiased zero-shot, logit adjustment, GLA, ensembles, WiSE-FT.

All functions are pure and work on any device; outputs are float64 logits (or state
dicts for the weight-space functions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._validation import (
    ArrayLike,
    as_tensor,
    check_log_prior,
    check_logits,
    check_positive,
    check_prior,
    check_state_dicts,
    check_unit_interval,
)

__all__ = [
    "debias",
    "logit_adjust",
    "gla_logits",
    "ensemble_logits",
    "interpolate_state_dicts",
    "wise_ft_sweep",
    "log_prior_from_counts",
]


def log_prior_from_counts(counts: ArrayLike) -> torch.Tensor:
    """Normalised log prior from positive per-class counts (or unnormalised weights)."""
    c = as_tensor(counts, "counts")
    if c.ndim != 1:
        raise ValueError(f"counts: expected a 1-D vector of per-class counts, got shape {tuple(c.shape)}")
    return torch.log(check_prior(c, c.shape[0], name="counts").to(torch.float64))


def _lp(log_prior: ArrayLike | None, k: int, name: str, device: torch.device) -> torch.Tensor | None:
    if log_prior is None:
        return None
    return check_log_prior(log_prior, k, name=name).to(device=device, dtype=torch.float64)


def debias(logits: ArrayLike, log_prior: ArrayLike, *, temperature: float = 1.0) -> torch.Tensor:
    """Debiased zero-shot logits ``logits / temperature - log_prior``.

    Parameters
    ----------
    logits : (N, K)
        Zero-shot logits.
    log_prior : (K,)
        Estimated log prior of the zero-shot model (e.g. :func:`gla.estimate_log_prior`),
        estimated at the same ``temperature``.
    temperature : float
        Temperature the prior was estimated at.
    """
    z = check_logits(logits).to(torch.float64)
    t = check_positive(temperature, "temperature")
    return z / t - _lp(log_prior, z.shape[1], "log_prior", z.device)


def logit_adjust(logits: ArrayLike, log_source_prior: ArrayLike, *,
                 log_target_prior: ArrayLike | None = None, tau: float = 1.0) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al., 2021): ``logits - tau * log p_s (+ log p_t)``.

    Parameters
    ----------
    logits : (N, K)
        Logits of a model trained on data with label prior ``p_s``.
    log_source_prior : (K,)
        ``log p_s``, e.g. :func:`log_prior_from_counts` of the training counts.
    log_target_prior : (K,), optional
        ``log p_t`` of the test distribution; omitted means balanced.
    tau : float
        Scale of the adjustment (1 is the Bayes-optimal choice for a calibrated model).
    """
    z = check_logits(logits).to(torch.float64)
    k = z.shape[1]
    out = z - check_positive(tau, "tau") * _lp(log_source_prior, k, "log_source_prior", z.device)
    if log_target_prior is not None:
        out = out + _lp(log_target_prior, k, "log_target_prior", z.device)
    return out


def gla_logits(zs_logits: ArrayLike, ft_logits: ArrayLike, log_prior: ArrayLike, *,
               log_source_prior: ArrayLike | None = None,
               log_target_prior: ArrayLike | None = None,
               zs_temperature: float = 1.0, ft_temperature: float = 1.0) -> torch.Tensor:
    """Generalized logit adjustment: the ensemble of the two debiased models.

    ``f_gla = f_zs / T_zs + f_ft / T_ft - log q - log p_s + log p_t``

    Parameters
    ----------
    zs_logits, ft_logits : (N, K)
        Zero-shot and fine-tuned logits of the same images.
    log_prior : (K,)
        ``log q``, the zero-shot model's estimated prior (at ``zs_temperature``).
    log_source_prior : (K,), optional
        ``log p_s``, the fine-tuning data's label prior; omitted means balanced.
    log_target_prior : (K,), optional
        ``log p_t``; omitted means a balanced test set.
    zs_temperature, ft_temperature : float
        Temperatures of the two models (the few-shot recipe searches both; the
        many-shot recipe uses 1).

    Returns
    -------
    (N, K) float64 tensor
        The GLA logits.

    Notes
    -----
    The official code's two forms are special cases (an unnormalised ``q`` only shifts
    every row by a constant, which changes no prediction):

    - many-shot (``Code.zip``, ``src/models/modeling.py`` L11-17, ``gla_inference``):
      ``zs + ft - log q - log(1/K)``, i.e. ``gla_logits(zs, ft, log(q),
      log_source_prior=full(K, -log K))``; the official code never passes ``p_s``, so the
      source prior is uniform;
    - few-shot (``GLA.FS.public.zip``, ``trainers/gla.py`` L273-275, L285-306):
      ``ft / T_ft + zs / T_zs - log(pp + 1e-12)`` with ``pp`` the unnormalised output of
      the official solver, i.e. ``gla_logits(zs, ft, log(pp + 1e-12), zs_temperature=T_zs,
      ft_temperature=T_ft)``. A class with ``pp = 0`` then gets ``+27.63``; ``log 0``
      itself is refused.
    """
    zs = check_logits(zs_logits, "zs_logits").to(torch.float64)
    ft = check_logits(ft_logits, "ft_logits").to(torch.float64)
    if zs.shape != ft.shape:
        raise ValueError(
            f"zs_logits and ft_logits: expected the same shape (same images, same classes), "
            f"got {tuple(zs.shape)} and {tuple(ft.shape)}"
        )
    k = zs.shape[1]
    out = (zs / check_positive(zs_temperature, "zs_temperature")
           + ft.to(zs.device) / check_positive(ft_temperature, "ft_temperature")
           - _lp(log_prior, k, "log_prior", zs.device))
    if log_source_prior is not None:
        out = out - _lp(log_source_prior, k, "log_source_prior", zs.device)
    if log_target_prior is not None:
        out = out + _lp(log_target_prior, k, "log_target_prior", zs.device)
    return out


def ensemble_logits(zs_logits: ArrayLike, ft_logits: ArrayLike, *, alpha: float = 0.5) -> torch.Tensor:
    """Output-space ensemble ``(1 - alpha) * f_zs + alpha * f_ft`` (no debiasing)."""
    zs = check_logits(zs_logits, "zs_logits").to(torch.float64)
    ft = check_logits(ft_logits, "ft_logits").to(torch.float64)
    if zs.shape != ft.shape:
        raise ValueError(
            f"zs_logits and ft_logits: expected the same shape, got {tuple(zs.shape)} and {tuple(ft.shape)}"
        )
    a = check_unit_interval(alpha, "alpha")
    return (1 - a) * zs + a * ft.to(zs.device)


def interpolate_state_dicts(zero_shot: Mapping[str, torch.Tensor], fine_tuned: Mapping[str, torch.Tensor],
                            alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT weight-space interpolation ``(1 - alpha) * zero_shot + alpha * fine_tuned``.

    ``alpha = 0`` gives the zero-shot weights, ``alpha = 1`` the fine-tuned ones. Both
    state dicts must come from one architecture (same keys, same shapes). Tensors that are
    not floating point (counters, index buffers) are taken from ``fine_tuned``. The result
    lies where ``fine_tuned`` lies (a zero-shot model kept on the CPU and a fine-tuned one
    on the GPU mix).
    """
    a = check_unit_interval(alpha, "alpha")
    check_state_dicts(zero_shot, fine_tuned, ("zero_shot", "fine_tuned"))
    out = {}
    for key, t1 in fine_tuned.items():
        t0 = zero_shot[key]
        if torch.is_floating_point(t1):
            out[key] = ((1 - a) * t0.to(device=t1.device, dtype=t1.dtype) + a * t1).to(t1.dtype)
        else:
            out[key] = t1.clone()
    return out


def wise_ft_sweep(model: torch.nn.Module, zero_shot: Mapping[str, torch.Tensor],
                  fine_tuned: Mapping[str, torch.Tensor], alphas: Iterable[float],
                  evaluate: Callable[[torch.nn.Module], Any]) -> list[tuple[float, Any]]:
    """Evaluate WiSE-FT models for several ``alphas``.

    Loads each interpolated state dict into ``model`` (in place) and calls
    ``evaluate(model)``; returns ``[(alpha, result), ...]``. The model is left holding
    the fine-tuned weights.
    """
    alphas = [check_unit_interval(a, "alphas") for a in alphas]
    check_state_dicts(zero_shot, fine_tuned, ("zero_shot", "fine_tuned"))
    results = []
    for a in alphas:
        model.load_state_dict(interpolate_state_dicts(zero_shot, fine_tuned, a))
        results.append((a, evaluate(model)))
    model.load_state_dict(dict(fine_tuned))
    return results
