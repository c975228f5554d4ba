"""Temperature search: scale logits so that confidence matches accuracy.

Before estimating the label prior, the official GLA code divides the zero-shot logits by
a temperature ``T`` chosen so that the mean maximum softmax probability of ``logits / T``
matches the top-1 accuracy; the few-shot GLA also puts the prompt-tuned model on that
scale, searching its ``T`` on the validation split (Zhu et al., NeurIPS 2023; official code
``GLA.FS.public.zip``, ``trainers/util.py`` L178-224 and L413-423, ``trainers/gla.py``
L285-290).

Three ways to choose ``T`` are offered, all behind :func:`fit_temperature`:

``"official"``
    :func:`search_temperature_official`, our re-implementation of the official search.
    It is *not* a bisection: from the bracket ``[0.1, 10]`` it interpolates between the
    bounds by their gaps to the target (regula falsi), widens a bound by a factor 1.1 when
    the target lies outside the bracket, and returns the first trial within ``thres``
    percentage points: 0.1 pp for the zero-shot model (``util.py`` L416-419), 1.0 pp for
    the prompt-tuned model (``gla.py`` L285-290). It runs in float32 like the official code.
``"exact"``
    :func:`search_temperature`: bisection in ``log T`` to a tolerance of ``1e-6``.
``"fixed"``
    A given temperature (e.g. 1 for the many-shot recipe, which uses none).

The official ImageNet config also sets a fixed ``T = 0.9753``; only the ``PpSolver``
trainer of ``trainers/zsclip.py`` (GLA.FS.public), which estimates ``q`` on the test labels,
reads it. GLA's trainer (``trainers/gla.py``, ``pp_estimate`` in ``trainers/util.py``)
estimates ``q`` at the searched ``T``, as the protocols here do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validation import ArrayLike, check_labels, check_logits

__all__ = [
    "TemperatureFit",
    "fit_temperature",
    "mean_confidence",
    "search_temperature",
    "search_temperature_official",
]

_METHODS = ("official", "exact", "fixed")


@dataclass(frozen=True)
class TemperatureFit:
    """The result of a temperature search.

    Attributes
    ----------
    temperature : float
        The temperature to divide the logits by.
    converged : bool
        Whether the search met its criterion (``False`` for an impossible target or a
        search that stopped without meeting it; ``reason`` says which).
    method : str
        ``"official"``, ``"exact"`` or ``"fixed"``.
    n_calls : int
        ``"official"``: rounds of the search (calls of the official ``search_recurse``,
        each evaluating the confidence at both bounds and at the trial); ``"exact"``:
        confidence evaluations; ``"fixed"``: 0.
    trials : tuple of float
        Every trial temperature in order (``"official"``: each ``T_mid``, the last one is
        the returned value when converged; ``"exact"``: every ``T`` evaluated).
    accuracy : float
        Top-1 accuracy of the logits, a fraction in ``[0, 1]``.
    confidence : float
        Mean max-softmax probability of ``logits / temperature``, a fraction.
    reason : str
        Why the search did not converge; ``""`` when it did.
    """

    temperature: float
    converged: bool
    method: str
    n_calls: int
    trials: tuple[float, ...]
    accuracy: float
    confidence: float
    reason: str = ""

    @property
    def gap_pp(self) -> float:
        """``|confidence - accuracy|`` in percentage points."""
        return 100.0 * abs(self.confidence - self.accuracy)


def mean_confidence(logits: torch.Tensor, temperature: float) -> float:
    """Mean over rows of the largest softmax probability of ``logits / temperature``.

    Computed in the dtype of ``logits``; returned as a Python float (a fraction).
    """
    return float(torch.softmax(logits / temperature, dim=1).max(dim=1).values.mean())


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    return dtype


def _exact_search(z: torch.Tensor, acc: float, tol: float, lower: float, upper: float,
                  max_iter: int) -> tuple[float, list[float]]:
    """Bisection in ``log T`` (``z`` float64, ``1/K < acc < 1``); returns ``T`` and every trial."""
    trials: list[float] = []

    def conf(log_t: float) -> float:
        trials.append(math.exp(log_t))
        return mean_confidence(z, trials[-1])

    lo, hi = math.log(lower), math.log(upper)
    for _ in range(60):  # widen the bracket: conf(lo) must exceed acc, conf(hi) fall below
        if conf(lo) >= acc:
            break
        lo -= math.log(10.0)
    for _ in range(60):
        if conf(hi) <= acc:
            break
        hi += math.log(10.0)
    mid = 0.5 * (lo + hi)
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        c = conf(mid)
        if abs(c - acc) < tol:
            break
        if c > acc:
            lo = mid
        else:
            hi = mid
    return math.exp(mid), trials


def _impossible(acc: float, n_classes: int) -> str:
    """Why no finite positive ``T`` can match ``acc``; ``""`` when one can."""
    if acc >= 1.0:
        return (f"accuracy is {acc:.4f}: confidence stays below 1 for every finite temperature, "
                "so it cannot match a perfect accuracy")
    if acc <= 1.0 / n_classes:
        return (f"accuracy is {acc:.4f}, at or below chance 1/K = {1.0 / n_classes:.4f}: confidence "
                "stays above 1/K for every finite temperature")
    return ""


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

    The "exact" protocol's search: bisection in ``log T`` to a tight tolerance, in
    float64. For the official code's search see :func:`search_temperature_official`.

    Parameters
    ----------
    logits : (N, K) tensor or array
        Raw logits of the model whose temperature is searched.
    labels : (N,) integer tensor or array
        True classes.
    tol : float
        Stop when ``|mean confidence - accuracy|`` is below ``tol`` (a fraction, so
        ``1e-3`` is 0.1 percentage points). The default is much tighter than the official
        code's threshold.
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
    return _exact_search(z, acc, tol, lower, upper, max_iter)[0]


def search_temperature_official(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    thres: float = 0.1,
    lower: float = 0.1,
    upper: float = 10.0,
    max_calls: int = 100,
    dtype: torch.dtype = torch.float32,
) -> TemperatureFit:
    """The official GLA temperature search (regula falsi with widening), re-implemented.

    Follows ``Calibrater.search_T`` in the official few-shot code (``GLA.FS.public.zip``,
    ``trainers/util.py`` L178-224). Accuracy ``acc`` and confidence ``conf(T)`` are in
    percent. Each round, with the bracket ``[T_min, T_max]``:

    1. ``gap_min = |conf(T_min) - acc|``, ``gap_max = |conf(T_max) - acc|``,
       ``a = gap_min / (gap_min + gap_max)``, trial ``T_mid = T_min (1 - a) + T_max a``;
    2. if ``|conf(T_mid) - acc| <= thres``, return ``T_mid``;
    3. else if ``conf(T_max) > acc`` (target above the bracket) ``T_max *= 1.1``;
       else if ``conf(T_min) < acc`` (target below it) ``T_min /= 1.1``;
       else the bound with the larger gap is replaced by ``T_mid``.

    Step 3 does not look at which side of the target ``T_mid`` lies, so the bracket can
    stop containing the target and the search can cycle forever (the official code then
    ends in ``RecursionError``). Here the search stops when the bracket repeats exactly
    (the search is deterministic, so it would cycle) or after ``max_calls`` rounds, and
    returns ``converged=False`` with the trial of smallest gap.

    Parameters
    ----------
    logits : (N, K) tensor or array
        Logits of the model (the official code searches on raw logits).
    labels : (N,) integer tensor or array
        True classes.
    thres : float
        Threshold in percentage points: 0.1 for the zero-shot model (official default),
        1.0 for the prompt-tuned model.
    lower, upper : float
        Starting bracket (official: 0.1 and 10).
    max_calls : int
        Rounds at most.
    dtype : torch.float32 or torch.float64
        Precision of the softmax and the accuracy. float32 (the default) is what the
        official code runs in; float64 shows the sensitivity to precision.

    Returns
    -------
    TemperatureFit
        ``method="official"``; ``n_calls`` rounds; ``trials`` every ``T_mid``. It does not
        check whether the target is reachable (:func:`fit_temperature` does): for an
        accuracy of 1 or at chance it runs until it stops like the official code would.
    """
    z = check_logits(logits).to(_float_dtype(dtype))
    y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
    if not (thres > 0 and math.isfinite(thres)):
        raise ValueError(f"thres: expected a positive number of percentage points, got {thres}")
    if not (0 < lower < upper and math.isfinite(upper)):
        raise ValueError(f"lower, upper: expected 0 < lower < upper, got {lower}, {upper}")
    if int(max_calls) < 1:
        raise ValueError(f"max_calls: expected a positive integer, got {max_calls}")
    n = z.shape[0]
    # Accuracy as the official metric returns it: correct * (100 / N) in the logits' dtype.
    acc = float((z.argmax(dim=1) == y).to(z.dtype).sum() * (100.0 / n))

    def conf(t: float) -> float:  # percent: the mean is taken in dtype, then scaled in Python
        return mean_confidence(z, t) * 100.0

    t_min, t_max = float(lower), float(upper)
    trials: list[float] = []
    gaps: list[float] = []
    seen: set[tuple[float, float]] = set()
    reason = ""
    while True:
        if len(trials) >= max_calls:
            reason = (f"no trial within {thres} pp after max_calls={max_calls} rounds; "
                      "returned the trial with the smallest gap")
            break
        if (t_min, t_max) in seen:
            reason = (f"the bracket update cycles without a trial within {thres} pp (the official "
                      "code recurses until RecursionError); returned the trial with the smallest gap")
            break
        seen.add((t_min, t_max))
        c_min, c_max = conf(t_min), conf(t_max)
        gap_min, gap_max = abs(c_min - acc), abs(c_max - acc)
        a = gap_min / (gap_min + gap_max) if gap_min + gap_max > 0 else 0.0
        t_mid = t_min * (1 - a) + t_max * a
        gap_mid = abs(conf(t_mid) - acc)
        trials.append(t_mid)
        gaps.append(gap_mid)
        if gap_mid <= thres:
            break
        if c_max > acc:
            t_max *= 1.1
        elif c_min < acc:
            t_min /= 1.1
        elif gap_min < gap_max:
            t_max = t_mid
        else:
            t_min = t_mid
    if reason:
        best = min(range(len(gaps)), key=gaps.__getitem__)
        temperature = trials[best]
    else:
        temperature = trials[-1]
    return TemperatureFit(temperature=temperature, converged=not reason, method="official",
                          n_calls=len(trials), trials=tuple(trials), accuracy=acc / 100.0,
                          confidence=mean_confidence(z, temperature), reason=reason)


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    method: str = "official",
    thres: float = 0.1,
    fallback: float = 1.0,
    temperature: float | None = None,
    max_calls: int = 100,
    dtype: torch.dtype = torch.float32,
) -> TemperatureFit:
    """Choose the temperature of a model: the one front door for the protocols.

    Parameters
    ----------
    logits : (N, K) tensor or array
        Logits of the model on the labelled set the temperature is fitted on.
    labels : (N,) integer tensor or array
        True classes.
    method : {"official", "exact", "fixed"}
        ``"official"``: :func:`search_temperature_official` (regula falsi, float32 by
        default, stops within ``thres`` pp). ``"exact"``: :func:`search_temperature`
        (bisection to ``1e-6``, float64; ``thres`` is not used). ``"fixed"``: no search,
        ``temperature`` (or ``fallback`` when ``temperature`` is None).
    thres : float
        Percentage points, for ``"official"``: 0.1 for the zero-shot model, 1.0 for the
        prompt-tuned model (the official code's two settings).
    fallback : float
        Temperature returned when no temperature can match the accuracy.
    temperature : float, optional
        The temperature for ``method="fixed"``.
    max_calls : int
        Rounds at most of the official search.
    dtype : torch.float32 or torch.float64
        Precision of the official search.

    Returns
    -------
    TemperatureFit
        Never raises for an unreachable target: when the accuracy is 1 or at or below
        chance ``1/K`` no finite temperature matches it, and the result has
        ``converged=False``, ``temperature=fallback`` and the ``reason``. When the official
        search stops without a trial within ``thres`` (it cycles), ``converged=False`` and
        ``temperature`` is its trial with the smallest gap. Bad arguments (unknown method,
        malformed logits or labels) raise ``ValueError``.
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
    fallback = float(fallback)
    if not (fallback > 0 and math.isfinite(fallback)):
        raise ValueError(f"fallback: expected a positive finite temperature, got {fallback}")
    z64 = z.to(torch.float64)
    acc = float((z64.argmax(dim=1) == y).double().mean())
    if method == "fixed":
        t = fallback if temperature is None else float(temperature)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"temperature: expected a positive finite number, got {temperature}")
        return TemperatureFit(t, True, "fixed", 0, (), acc, mean_confidence(z64, t), "")
    why = _impossible(acc, z.shape[1])
    if why:
        return TemperatureFit(fallback, False, method, 0, (), acc, mean_confidence(z64, fallback),
                              why + f"; returned the fallback temperature {fallback}")
    if method == "official":
        return search_temperature_official(z, y, thres=thres, max_calls=max_calls, dtype=dtype)
    t, trials = _exact_search(z64, acc, 1e-6, 0.1, 10.0, 200)
    conf = mean_confidence(z64, t)
    ok = abs(conf - acc) < 1e-6
    return TemperatureFit(t, ok, "exact", len(trials), tuple(trials), acc, conf,
                          "" if ok else "bisection stopped after 200 steps above the tolerance 1e-6")
