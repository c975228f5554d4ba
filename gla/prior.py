"""Estimating the label prior that pretraining left in a zero-shot model.

The paper (Zhu et al., *Generalized Logit Adjustment*, NeurIPS 2023, arXiv 2310.08106;
official code ``GLA.FS.public.zip``, ``trainers/util.py`` L17-48) estimates the pretraining label prior ``q`` from the
zero-shot logits ``z`` (N x K) of a labelled, class-balanced set by minimising the mean
cross-entropy of ``z / T - log q`` over the probability simplex. Writing
``log q = theta - logsumexp(theta)`` the normaliser cancels and the objective

    F(theta) = sum_i w_i [ logsumexp_k(z_ik / T - theta_k) - (z_{i,y_i} / T - theta_{y_i}) ]

is convex in ``theta`` (sample weights ``w_i`` sum to one). Its gradient is

    dF/dtheta_k = pi_k - sum_i w_i softmax(z_i / T - theta)_k ,

the class share ``pi_k`` of the labels minus the mean debiased probability of ``k``. At the
optimum the two agree for every class (the *moment condition*). Notice what it says: on a
class-balanced set (``pi_k = 1/K``) the labels enter the optimum only through their
class shares, so the estimate is the prior that makes the debiased model's mean
prediction uniform.

This module solves the problem exactly with a damped Newton method whose linear systems
are solved by preconditioned conjugate gradients on Hessian-vector products, so it never
forms a K x K matrix. ``exp(z)`` is computed once; every function, gradient or
Hessian-vector evaluation after that costs one or two matrix-vector products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validation import ArrayLike, check_labels, check_logits
from .base import MODEL_PRIOR, Diagnostics, PriorEstimatorBase

__all__ = [
    "PriorEstimator",
    "estimate_log_prior",
    "prior_objective",
    "class_weights",
    "official_lagrangian_prior",
    "mean_probability_prior",
    "em_prior",
]


def class_weights(labels: torch.Tensor, n_classes: int, balance: bool) -> torch.Tensor:
    """Per-sample weights summing to one; with ``balance`` every class gets total ``1/K``."""
    n = labels.shape[0]
    if not balance:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=labels.device)
    counts = torch.bincount(labels, minlength=n_classes).to(torch.float64)
    return 1.0 / (n_classes * counts[labels])


def prior_objective(logits: ArrayLike, labels: ArrayLike, log_prior: ArrayLike,
                    weights: ArrayLike | None = None) -> float:
    """Weighted mean cross-entropy of ``logits - log_prior`` (the estimator's objective).

    Computed directly with ``logsumexp`` in float64; used as a reference.
    """
    z = check_logits(logits).to(torch.float64)
    y = check_labels(labels, z.shape[0], z.shape[1])
    lp = torch.as_tensor(log_prior, dtype=torch.float64, device=z.device)
    w = (torch.full((z.shape[0],), 1.0 / z.shape[0], dtype=torch.float64, device=z.device)
         if weights is None else torch.as_tensor(weights, dtype=torch.float64, device=z.device))
    adj = z - lp
    ce = torch.logsumexp(adj, dim=1) - adj.gather(1, y[:, None]).squeeze(1)
    return float((w * ce).sum())


class _Problem:
    """The convex objective in the ``exp(z)`` representation (see module docstring)."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, temperature: float):
        # exp() runs in the logits' own precision (float32 logits carry no more than that);
        # everything after it is float64.
        zmax = z.max(dim=1).values
        self.zmax = zmax.to(torch.float64) / temperature
        self.E = torch.exp((z - zmax[:, None]) / temperature).to(torch.float64)  # in (0, 1]
        self.w = w
        k = z.shape[1]
        self.pi = torch.zeros(k, dtype=torch.float64, device=z.device).index_add_(0, y, w)
        zy = z.gather(1, y[:, None]).squeeze(1).to(torch.float64) / temperature
        self.linear = float((w * zy).sum())

    def _mv(self, v: torch.Tensor) -> torch.Tensor:
        return self.E @ v

    def _rmv(self, a: torch.Tensor) -> torch.Tensor:
        return self.E.T @ a

    def state(self, theta: torch.Tensor):
        """Objective value and what gradients and HVPs at ``theta`` need."""
        c = theta.min()
        u = torch.exp(-(theta - c))  # in (0, 1]
        s = self._mv(u)
        if not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
            return math.inf, None
        lse = self.zmax - c + torch.log(s)
        f = float((self.w * lse).sum()) - self.linear + float(self.pi @ theta)
        return f, (u, s)

    def gradient(self, st) -> tuple[torch.Tensor, torch.Tensor]:
        u, s = st
        m = u * self._rmv(self.w / s)
        return self.pi - m, m

    def hvp(self, st, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        u, s = st
        pv = self._mv(u * v) / s  # p_i . v
        return m * v - u * self._rmv(self.w * pv / s)


@dataclass
class _Result:
    theta: torch.Tensor
    objective: float
    grad_norm: float
    n_iter: int
    n_matvec: int
    converged: bool


def newton_cg(prob, theta: torch.Tensor, tol: float, max_iter: int) -> _Result:
    """Damped Newton with preconditioned conjugate gradients on Hessian-vector products,
    for the convex objectives of the prior estimators (never a K x K matrix).

    ``prob`` has ``state(theta) -> (f, st)`` (``f = inf`` outside the domain),
    ``gradient(st) -> (g, m)`` (``m``: the Hessian's diagonal part, the preconditioner) and
    ``hvp(st, m, v)``. Stops when ``max|g| <= tol`` or after ``max_iter`` Newton steps; the
    objective must be invariant to a constant shift of ``theta`` (it is re-centred).
    """
    f, st = prob.state(theta)
    n_mv = 1
    g, m = prob.gradient(st)
    n_mv += 1
    gnorm = float(g.abs().max())
    it = 0
    while gnorm > tol and it < max_iter:
        it += 1
        # Solve H d = -g by preconditioned CG (preconditioner: diag(m), the part of the
        # Hessian that ignores the coupling between classes).
        precond = 1.0 / m.clamp_min(1e-300)
        g2 = float(g @ g)
        cg_tol = min(0.5, math.sqrt(math.sqrt(g2))) * math.sqrt(g2)
        d = torch.zeros_like(g)
        r = -g.clone()
        zr = precond * r
        p = zr.clone()
        rz = float(r @ zr)
        for _ in range(200):
            hp = prob.hvp(st, m, p)
            n_mv += 2
            php = float(p @ hp)
            if php <= 0:
                break
            alpha = rz / php
            d += alpha * p
            r -= alpha * hp
            if float(r.norm()) <= cg_tol:
                break
            zr = precond * r
            rz_new = float(r @ zr)
            p = zr + (rz_new / rz) * p
            rz = rz_new
        if not bool(d.abs().max() > 0):
            d = -precond * g
        # Armijo backtracking: a full Newton step is accepted near the optimum.
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction (round-off); fall back to scaled gradient
            d = -precond * g
            slope = float(g @ d)
        step = 1.0
        while True:
            f_new, st_new = prob.state(theta + step * d)
            n_mv += 1
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        if not math.isfinite(f_new):
            break
        theta = theta + step * d
        theta = theta - theta.mean()  # the objective and `st` do not change under a shift
        f, st = f_new, st_new
        g, m = prob.gradient(st)
        n_mv += 1
        gnorm = float(g.abs().max())
        if step < 1e-10:
            break
    return _Result(theta, f, gnorm, it, n_mv, gnorm <= tol)


class PriorEstimator(PriorEstimatorBase):
    """Estimate the label prior of a zero-shot model (the paper's estimator, solved exactly).

    Minimises the mean cross-entropy of ``z / T - log q`` over the simplex on a labelled
    class-balanced set (Zhu et al., NeurIPS 2023, section 4.2) by damped Newton; registered
    as ``"exact"`` in :mod:`gla.estimators`. Follows the contract of
    :class:`gla.base.PriorEstimatorBase` (scikit-learn's conventions): settings go to
    ``__init__``, :meth:`fit` learns from data and returns the estimator, and what was
    learned is an attribute with a trailing underscore.

    Parameters
    ----------
    temperature : float or "search"
        Logits are divided by this before solving. ``"search"`` chooses it like the
        official code: the mean max-softmax confidence matches accuracy
        (:func:`gla.search_temperature`). The default 1.0 uses the logits as they are.
    balance : bool
        Reweight samples so that every class carries the same total weight. On a
        class-balanced set this changes nothing; on an unbalanced one it makes the
        answer that of a balanced set. Default True.
    tol : float
        Stop when the largest moment residual ``|pi_k - mean debiased p_k|`` is below this.
    max_iter : int
        Newton iterations at most.

    Notes
    -----
    ``exp(logits / T)`` is computed once in the logits' precision and kept as a float64
    ``N x K`` matrix (8 bytes per entry); all later work is float64.

    Attributes
    ----------
    log_prior_ : (K,) float64 tensor
        The estimated log prior, normalised (``logsumexp == 0``).
    prior_ : (K,) float64 tensor
        ``exp(log_prior_)``.
    temperature_ : float
        Temperature that was used.
    diagnostics_ : gla.base.Diagnostics
        ``objective`` (weighted mean cross-entropy of ``logits / T - log_prior_`` at the
        answer), ``grad_norm`` (largest absolute moment residual, the gradient's max-norm),
        ``n_iter`` (Newton iterations) and ``converged`` (``grad_norm <= tol``); also read
        as ``objective_``, ``grad_norm_``, ``n_iter_`` and ``converged_``.
    n_matvec_ : int
        Matrix-vector products with the ``N x K`` matrix (the cost unit).
    n_classes_ : int
        ``K``.
    class_counts_ : (K,) tensor
        Labelled examples per class.
    """

    id = "exact"
    name = "exact (paper's objective)"
    requires_labels = True
    estimates = MODEL_PRIOR
    description = "The paper's cross-entropy objective over the simplex, solved exactly (Newton)."

    def __init__(self, temperature: float | str = 1.0, balance: bool = True, tol: float = 1e-9,
                 max_iter: int = 100):
        self.temperature = temperature
        self.balance = balance
        self.tol = tol
        self.max_iter = max_iter

    def _fit(self, z: torch.Tensor, y: torch.Tensor, temperature: float) -> tuple[torch.Tensor, Diagnostics]:
        k = z.shape[1]
        w = class_weights(y, k, self.balance)
        res = newton_cg(_Problem(z, y, w, temperature), torch.zeros(k, dtype=torch.float64, device=z.device),
                        self.tol, self.max_iter)
        self.n_matvec_ = res.n_matvec
        self.class_counts_ = torch.bincount(y, minlength=k)
        return res.theta, Diagnostics(res.objective, res.grad_norm, res.n_iter, bool(res.converged))


def estimate_log_prior(logits: ArrayLike, labels: ArrayLike, *, temperature: float | str = 1.0,
                       balance: bool = True, tol: float = 1e-9, max_iter: int = 100) -> torch.Tensor:
    """Estimate the normalised log prior ``log q`` of a zero-shot model.

    Shorthand for ``PriorEstimator(...).fit(logits, labels).log_prior_``; see
    :class:`PriorEstimator` for the parameters and the diagnostics it keeps.

    Returns
    -------
    (K,) float64 tensor
        ``log q`` with ``logsumexp(log q) == 0``.
    """
    return PriorEstimator(temperature=temperature, balance=balance, tol=tol,
                          max_iter=max_iter).fit(logits, labels).log_prior_


def official_lagrangian_prior(logits: ArrayLike, labels: ArrayLike, *, n_steps: int = 1000,
                              lr: float | None = None, temperature: float = 1.0,
                              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Our re-implementation of the official prior solver, for the "official" protocol.

    The official few-shot code (``GLA.FS.public.zip``, ``trainers/util.py`` L17-48, run
    from ``CLIP.pp_estimate`` L413-423) minimises ``CE(z - log q)`` over ``q`` subject to
    ``sum(q) = 1`` and ``q >= 0`` with the pre-1.0 ``cooper`` library: starting from the
    uniform ``q`` and multipliers at 0, ``n_steps`` = 1000 simultaneous full-batch SGD
    steps, the primal step on the Lagrangian ``CE + lam (1 - sum q)`` and the dual step
    ``lam += lr * (1 - sum q)`` with the constraint violation taken at the same iterate,
    both with ``lr = 1e-5 * (N / K) / 50``. The gradient is computed in closed form, in
    ``dtype`` (the official code takes it from autograd through the same operations; the
    two agree to rounding: the golden test matches the official ``q`` to ``1e-7``).

    The inequality multipliers of ``q >= 0`` stay exactly 0 while ``q > 0`` (their update
    is projected onto ``[0, inf)``), so they are not carried. Where a step would make some
    ``q_k <= 0`` the official code takes the log of it on the next step (NaN); here
    ``q_k`` is clamped to ``1e-12`` instead.

    The constraint is only met approximately and the solver stops far from the optimum of
    its own objective (compare :class:`PriorEstimator`): the ImageNet ``q`` released with
    the official code sums to about 0.804, not 1.

    Parameters
    ----------
    logits : (N, K) tensor or array
        Zero-shot logits of the labelled estimation set.
    labels : (N,) integer tensor or array
        True classes.
    n_steps : int
        SGD steps (official: 1000).
    lr : float, optional
        Step size of both the primal and the dual step; default ``1e-5 * (N / K) / 50``.
    temperature : float
        The logits are divided by it first, in ``dtype`` (the official code divides by the
        searched ``T``; see :func:`gla.temperature.fit_temperature`).
    dtype : torch.float32 or torch.float64
        Precision of the whole run. float32 (the default) is what the official code runs
        in; each step moves ``q`` by about ``1e-6`` and float32 resolves about ``1e-8``
        near 0.2, so the two precisions differ by up to about ``1e-5``.

    Returns
    -------
    (K,) float64 tensor
        ``log q`` as the algorithm leaves it: not renormalised, ``exp(.)`` sums to about
        1 but not exactly. The official code then uses ``log(q + 1e-12)``.
    """
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    if int(n_steps) < 0:
        raise ValueError(f"n_steps: expected a non-negative integer, got {n_steps}")
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature: expected a positive finite number, got {temperature}")
    n, k = z.shape
    if lr is None:
        lr = 1e-5 * (n / k) / 50
    elif not (float(lr) > 0 and math.isfinite(float(lr))):
        raise ValueError(f"lr: expected a positive finite step size, got {lr}")
    z = z.to(dtype)
    if temperature != 1.0:
        z = z / temperature
    # The gradient of CE(z - log q) in closed form, (counts / N - mean_i softmax(z_i - log q)) / q,
    # minus lam from the constraint term: what autograd computes through the official code's
    # operations, up to rounding, in about a seventh of the time on 1,000 x 1,000 logits.
    z = z.detach()  # no graph through the 1000 steps, whatever the caller's logits carry
    freq = torch.bincount(y, minlength=k).to(dtype) / n
    q = torch.full((k,), 1.0 / k, dtype=dtype, device=z.device)
    lam = torch.zeros((), dtype=dtype, device=z.device)
    for _ in range(int(n_steps)):
        violation = 1 - q.sum()
        p_mean = torch.softmax(z - torch.log(q), dim=1).mean(dim=0)
        grad = (freq - p_mean) / q - lam
        q -= lr * grad
        lam = lam + lr * violation
        if not bool((q > 0).all()):
            q.clamp_(min=1e-12)
    return torch.log(q.to(torch.float64))


def mean_probability_prior(logits: ArrayLike) -> torch.Tensor:
    """A naive estimate: ``log`` of the mean softmax probability of each class (normalised)."""
    z = check_logits(logits).to(torch.float64)
    m = torch.softmax(z, dim=1).mean(dim=0)
    return torch.log(m) - torch.logsumexp(torch.log(m), dim=0)


def em_prior(logits: ArrayLike, *, n_iter: int = 100, tol: float = 1e-10) -> torch.Tensor:
    """Label-free prior re-estimation by expectation-maximisation (Saerens et al., 2002).

    Treats ``softmax(logits)`` as posteriors under a uniform training prior and finds the
    prior ``pi`` of the unlabelled data with ``pi = mean_i softmax(logits_i + log pi)``.

    Returns
    -------
    (K,) float64 tensor
        ``log pi``, normalised.
    """
    z = check_logits(logits).to(torch.float64)
    k = z.shape[1]
    log_pi = torch.full((k,), -math.log(k), dtype=torch.float64, device=z.device)
    for _ in range(n_iter):
        new = torch.log(torch.softmax(z + log_pi, dim=1).mean(dim=0).clamp_min(1e-300))
        new = new - torch.logsumexp(new, dim=0)
        done = float((new - log_pi).abs().max()) < tol
        log_pi = new
        if done:
            break
    return log_pi
