"""Temperature search: scale logits so that confidence matches accuracy.

The official GLA code divides logits by a temperature ``T`` chosen so that the mean
maximum softmax probability of ``logits / T`` equals the top-1 accuracy (to within 0.1
percentage points, by bisection from the bounds 0.1 and 10, widened when needed). The
same search is used for the zero-shot model before estimating the prior and for the
few-shot fine-tuned model on its validation split.
"""

from __future__ import annotations

import math

import torch

from ._validation import ArrayLike, check_labels, check_logits


def mean_confidence(logits: torch.Tensor, temperature: float) -> float:
    """Mean over rows of the largest softmax probability of ``logits / temperature``."""
    return float(torch.softmax(logits / temperature, dim=1).max(dim=1).values.mean())


def search_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    tol: float = 1e-6,
    lower: float = 0.1,
    upper: float = 10.0,
    max_iter: int = 200,
) -> float:
    """Find ``T`` such that the mean max-softmax confidence of ``logits / T`` equals accuracy.

    Parameters
    ----------
    logits : (N, K) tensor or array
        Raw logits of the model whose temperature is searched.
    labels : (N,) integer tensor or array
        True classes.
    tol : float
        Stop when ``|mean confidence - accuracy|`` is below ``tol`` (a fraction, so
        ``1e-3`` is the official 0.1 percentage points). The default is tighter.
    lower, upper : float
        Initial bracket for ``T``; each bound is moved by a factor of 10 until it brackets
        the solution.
    max_iter : int
        Bisection steps (in ``log T``).

    Returns
    -------
    float
        The temperature. Confidence decreases monotonically in ``T`` from 1 (``T -> 0``)
        to ``1/K`` (``T -> inf``); if the accuracy is 1 or at most ``1/K`` no finite
        positive ``T`` matches it and a ``ValueError`` says so.
    """
    z = check_logits(logits).to(torch.float64)
    y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
    if not (0 < lower < upper):
        raise ValueError(f"lower, upper: expected 0 < lower < upper, got {lower}, {upper}")
    acc = float((z.argmax(dim=1) == y).double().mean())
    n_classes = z.shape[1]
    if acc >= 1.0 or acc <= 1.0 / n_classes:
        raise ValueError(
            f"search_temperature: accuracy is {acc:.4f}; a temperature can match it only when "
            f"1/K = {1.0 / n_classes:.4f} < accuracy < 1"
        )
    lo, hi = math.log(lower), math.log(upper)
    for _ in range(60):  # widen the bracket: conf(lo) must exceed acc, conf(hi) fall below
        if mean_confidence(z, math.exp(lo)) >= acc:
            break
        lo -= math.log(10.0)
    for _ in range(60):
        if mean_confidence(z, math.exp(hi)) <= acc:
            break
        hi += math.log(10.0)
    mid = 0.5 * (lo + hi)
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        conf = mean_confidence(z, math.exp(mid))
        if abs(conf - acc) < tol:
            break
        if conf > acc:
            lo = mid
        else:
            hi = mid
    return math.exp(mid)
