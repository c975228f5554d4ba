"""Estimators of the label prior a zero-shot model carries, behind one contract and a registry.

Every estimator follows the contract of :class:`gla.base.PriorEstimatorBase`
(scikit-learn's conventions): settings go to ``__init__``, ``fit(logits, labels=None)``
returns the estimator, what was learned is an attribute with a trailing underscore
(``log_prior_``, ``temperature_``, ``diagnostics_``), and ``get_params`` / ``set_params`` /
:func:`gla.base.clone` behave as scikit-learn's.

Studies and notebooks iterate the registry by id (:func:`list_estimators`,
:func:`make_estimator`), so adding an estimator is one class and one
:func:`register_estimator`.

Registered ids
--------------
``exact``
    The paper's objective (Zhu et al., NeurIPS 2023, section 4.2) solved exactly
    (:class:`gla.PriorEstimator`, registered as it is; ``ExactEstimator`` is its other name).
``official``
    The official code's algorithm: 1000 Lagrangian gradient steps
    (:func:`gla.official_lagrangian_prior`), normalised afterwards.
``mean-probability``
    Label-free: the mean softmax probability of each class.
``balanced-prediction``
    Label-free: the prior whose removal makes the mean prediction on unlabelled
    class-balanced data uniform (the exact estimator's moment condition without labels).
``eigenvector``
    Labelled: the stationary vector of the matrix of class-conditional mean predictions
    (the estimator of the paper's journal extension, arXiv 2310.08106 v3).
``eigenvector-pseudo``
    Label-free: the same with argmax pseudo-labels in place of labels, repeated on the
    debiased logits until it stops moving (as in Frolic, NeurIPS 2024).
``em``
    Saerens et al. (2002) EM. Estimates the *target label distribution*, not the model's
    prior.
"""

from __future__ import annotations

import math

import torch

from .base import (
    ESTIMATES,
    MODEL_PRIOR,
    TARGET_DISTRIBUTION,
    Diagnostics,
    PriorEstimatorBase,
    clone,
    normalise,
)
from .prior import PriorEstimator, em_prior, mean_probability_prior, newton_cg, official_lagrangian_prior

__all__ = [
    "ESTIMATES",
    "MODEL_PRIOR",
    "TARGET_DISTRIBUTION",
    "Diagnostics",
    "PriorEstimatorBase",
    "clone",
    "ExactEstimator",
    "OfficialEstimator",
    "MeanProbabilityEstimator",
    "BalancedPredictionEstimator",
    "EigenvectorEstimator",
    "PseudoEigenvectorEstimator",
    "EMEstimator",
    "register_estimator",
    "list_estimators",
    "make_estimator",
    "get_estimator_class",
]

# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type] = {}


def register_estimator(cls: type) -> type:
    """Add an estimator class to the registry (usable as a class decorator).

    The class must define ``id`` (a new, non-empty string), ``name``, ``requires_labels``
    (bool), ``estimates`` (one of :data:`ESTIMATES`), ``description`` and ``fit``.

    Raises
    ------
    ValueError
        If the id is already registered or an attribute is missing or invalid.
    """
    for attr in ("id", "name", "requires_labels", "estimates", "description", "fit"):
        if not hasattr(cls, attr):
            raise ValueError(f"register_estimator: {cls.__name__} has no '{attr}' attribute")
    if not isinstance(cls.id, str) or not cls.id:
        raise ValueError(f"register_estimator: {cls.__name__}.id must be a non-empty string, got {cls.id!r}")
    if cls.id in _REGISTRY:
        raise ValueError(f"register_estimator: id {cls.id!r} is already registered "
                         f"(by {_REGISTRY[cls.id].__name__}); choose another id")
    if cls.estimates not in ESTIMATES:
        raise ValueError(f"register_estimator: {cls.__name__}.estimates must be one of {ESTIMATES}, "
                         f"got {cls.estimates!r}")
    if not isinstance(cls.requires_labels, bool):
        raise ValueError(f"register_estimator: {cls.__name__}.requires_labels must be a bool")
    _REGISTRY[cls.id] = cls
    return cls


def list_estimators(label_free: bool | None = None, *, estimates: str | None = None) -> list[str]:
    """Ids of the registered estimators, in registration order.

    Parameters
    ----------
    label_free : bool, optional
        ``True``: only estimators that need no labels; ``False``: only those that need
        them; ``None`` (default): all.
    estimates : str, optional
        Keep only estimators of this quantity (``"model prior"`` or
        ``"target label distribution"``).
    """
    if estimates is not None and estimates not in ESTIMATES:
        raise ValueError(f"estimates: expected one of {ESTIMATES}, got {estimates!r}")
    return [i for i, c in _REGISTRY.items()
            if (label_free is None or c.requires_labels != label_free)
            and (estimates is None or c.estimates == estimates)]


def get_estimator_class(id: str) -> type:
    """The class registered under ``id``."""
    try:
        return _REGISTRY[id]
    except (KeyError, TypeError):
        raise ValueError(f"estimator: expected an estimator id, one of {list(_REGISTRY)}, got {id!r}") from None


def make_estimator(id: str, **params) -> "PriorEstimatorBase":
    """A new, unfitted estimator of the class registered under ``id``, with ``params``."""
    cls = get_estimator_class(id)
    try:
        return cls(**params)
    except TypeError as e:
        raise TypeError(f"make_estimator({id!r}): {e}") from None


# --------------------------------------------------------------------------- helpers


def _moment_solve(z: torch.Tensor, pi: torch.Tensor, w: torch.Tensor, tol: float, max_iter: int):
    """Minimise ``F(theta) = sum_i w_i logsumexp(z_i - theta) + pi . theta`` (convex).

    ``dF/dtheta = pi - sum_i w_i softmax(z_i - theta)``: at the optimum the weighted mean
    prediction of the debiased logits equals ``pi``. Solved by the same damped Newton with
    conjugate gradients as the exact estimator (:func:`gla.prior.newton_cg`, Hessian-vector
    products, never a K x K matrix); ``z`` is float, the rest float64.
    Returns ``(theta, objective, grad_max_norm, n_iter)``.
    """
    zmax = z.max(dim=1, keepdim=True).values
    E = torch.exp(z - zmax).to(torch.float64)  # (N, K), entries in (0, 1]
    zmax = zmax.squeeze(1).to(torch.float64)

    def state(theta):
        c = theta.min()
        u = torch.exp(-(theta - c))
        s = E @ u
        if not bool((s > 0).all()):
            return math.inf, None
        f = float((w * (zmax - c + torch.log(s))).sum()) + float(pi @ theta)
        return f, (u, s)

    def grad(st):
        u, s = st
        m = u * (E.T @ (w / s))
        return pi - m, m

    def hvp(st, m, v):
        u, s = st
        pv = (E @ (u * v)) / s
        return m * v - u * (E.T @ (w * pv / s))

    class Problem:  # the interface of gla.prior's Newton-CG solver
        pass

    prob = Problem()
    prob.state, prob.gradient, prob.hvp = state, grad, hvp
    res = newton_cg(prob, torch.zeros(z.shape[1], dtype=torch.float64, device=z.device), tol, max_iter)
    return res.theta, res.objective, res.grad_norm, res.n_iter


def _stationary(C: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Stationary distribution ``q`` of a row-stochastic matrix ``C`` (``q C = q``, ``sum q = 1``).

    Solves the linear system ``(C^T - I) q = 0`` with one equation replaced by ``sum q = 1``
    (float64), then one step of iterative refinement. Returns ``(q, max |q C - q|)``.
    """
    k = C.shape[0]
    A = C.T - torch.eye(k, dtype=C.dtype, device=C.device)
    A[-1] = 1.0
    b = torch.zeros(k, dtype=C.dtype, device=C.device)
    b[-1] = 1.0
    q = torch.linalg.solve(A, b)
    q = q + torch.linalg.solve(A, b - A @ q)
    q = q.clamp_min(torch.finfo(C.dtype).tiny)
    q = q / q.sum()
    return q, float((q @ C - q).abs().max())


# --------------------------------------------------------------------------- estimators


ExactEstimator = register_estimator(PriorEstimator)


@register_estimator
class OfficialEstimator(PriorEstimatorBase):
    """The official code's algorithm: ``n_steps`` simultaneous Lagrangian gradient steps.

    Wraps :func:`gla.official_lagrangian_prior` (full-batch steps on the primal ``q`` and
    the multiplier of ``sum q = 1``, ``lr = 1e-5 * (N / K) / 50`` by default, from uniform
    ``q``; official ``GLA`` repository, the prior-estimation step of ``zero_shot.py``). The
    constraint is only met approximately: ``log_prior_`` is normalised and the raw sum of
    ``q`` is kept in ``diagnostics_.raw_sum`` (the released ImageNet ``q`` sums to 0.804).
    ``grad_norm`` is the largest moment residual ``|pi_k - mean debiased p_k|`` at the
    answer, the quantity the exact estimator drives to zero; ``converged`` says whether it
    is below ``tol``.
    """

    id = "official"
    name = "official algorithm (Lagrangian steps)"
    requires_labels = True
    estimates = MODEL_PRIOR
    description = "The official code's 1000 Lagrangian gradient steps from uniform q; normalised afterwards."

    def __init__(self, temperature: float | str = 1.0, n_steps: int = 1000, lr: float | None = None,
                 tol: float = 1e-6):
        self.temperature = temperature
        self.n_steps = n_steps
        self.lr = lr
        self.tol = tol

    def _fit(self, z, y, temperature):
        zt = z / temperature
        raw = official_lagrangian_prior(zt, y, n_steps=int(self.n_steps), lr=self.lr).to(torch.float64)
        k = z.shape[1]
        lq = normalise(raw)
        w = torch.full((z.shape[0],), 1.0 / z.shape[0], dtype=torch.float64, device=z.device)
        adj = zt.to(torch.float64) - lq
        lse = torch.logsumexp(adj, dim=1)
        obj = float((w * (lse - adj.gather(1, y[:, None]).squeeze(1))).sum())
        pi = torch.bincount(y, minlength=k).to(torch.float64) / z.shape[0]
        resid = float((pi - torch.softmax(adj, dim=1).mean(0)).abs().max())
        return lq, Diagnostics(obj, resid, int(self.n_steps), resid <= self.tol, float(raw.exp().sum()))


@register_estimator
class MeanProbabilityEstimator(PriorEstimatorBase):
    """Label-free: ``q_k`` = the mean softmax probability of class ``k`` (closed form).

    Wraps :func:`gla.mean_probability_prior` on ``logits / T``. On class-balanced data it is
    biased towards uniform: an accurate model's mean prediction is close to the label
    shares, whatever its prior.
    """

    id = "mean-probability"
    name = "mean predicted probability"
    requires_labels = False
    estimates = MODEL_PRIOR
    description = "Mean softmax probability of each class on unlabelled data (closed form)."

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def _fit(self, z, y, temperature):
        return mean_probability_prior(z / temperature), Diagnostics(float("nan"), 0.0, 0, True)


@register_estimator
class BalancedPredictionEstimator(PriorEstimatorBase):
    """Label-free: the prior whose removal makes the mean prediction on balanced data uniform.

    On unlabelled images of a class-balanced set, find ``q`` with

        (1/N) sum_i softmax(z_i / T - log q)_k = 1/K   for every class k.

    This is the exact estimator's moment condition (Zhu et al., NeurIPS 2023, section 4.2:
    at the optimum the mean debiased probability of each class equals its share in the
    labels) with the label shares replaced by the ``1/K`` a balanced set has, so it needs no
    labels. It is the optimality condition of the convex problem

        min_theta  (1/N) sum_i logsumexp(z_i / T - theta) + (1/K) sum_k theta_k ,

    solved by damped Newton with conjugate gradients (``log q = theta - logsumexp(theta)``).
    Under the model ``p(y|x) ∝ p(x|y) q(y)``, ``theta = log q`` solves it: the debiased
    prediction is the posterior under a uniform prior, whose mean over a balanced mixture is
    ``1/K``. Its regime is unlabelled data whose classes are (close to) balanced; on
    unbalanced data it absorbs the class shares into ``q``.

    ``diagnostics_.grad_norm`` is ``max_k |1/K - mean prediction_k|``.
    """

    id = "balanced-prediction"
    name = "balanced prediction (label-free)"
    requires_labels = False
    estimates = MODEL_PRIOR
    description = "q such that the debiased mean prediction on unlabelled balanced data is uniform (convex, exact)."

    def __init__(self, temperature: float = 1.0, tol: float = 1e-9, max_iter: int = 100):
        self.temperature = temperature
        self.tol = tol
        self.max_iter = max_iter

    def _fit(self, z, y, temperature):
        n, k = z.shape
        pi = torch.full((k,), 1.0 / k, dtype=torch.float64, device=z.device)
        w = torch.full((n,), 1.0 / n, dtype=torch.float64, device=z.device)
        theta, f, gnorm, it = _moment_solve(z / temperature, pi, w, self.tol, self.max_iter)
        return theta, Diagnostics(f, gnorm, it, gnorm <= self.tol)


@register_estimator
class EigenvectorEstimator(PriorEstimatorBase):
    """Labelled: ``q`` as the stationary vector of the class-conditional mean predictions.

    The estimator of the paper's journal extension (arXiv 2310.08106 v3), derived here.
    Let ``p(k|x) = softmax(z(x) / T)_k`` and define the K x K matrix

        C_jk = E_{x ~ p(x|y=j)} [ p(k|x) ]        (estimated: mean of p(k|x_i) over y_i = j),

    the mean prediction on images of class ``j``. Each row sums to 1, so ``C`` is the
    transition matrix of a Markov chain on the classes. Under the model
    ``p(y|x) = p(x|y) q(y) / sum_j p(x|j) q(j)`` (the zero-shot model as the Bayes posterior
    of its pretraining mixture),

        sum_j q_j C_jk = ∫ sum_j q_j p(x|j) p(k|x) dx = ∫ p_q(x) p(k|x) dx = ∫ p(x|k) q_k dx = q_k ,

    i.e. ``q C = q``: ``q`` is a stationary distribution of ``C`` (the left eigenvector of
    eigenvalue 1). Softmax probabilities are positive, so ``C`` is irreducible and aperiodic
    and the stationary vector is unique. Because ``C`` conditions on the class, the class
    shares of the estimation set do not matter (only their sampling noise does): no
    reweighting is needed. Its regime is a calibrated model (the right temperature) whose
    class-conditional image distributions match pretraining, and which confuses classes
    often enough: when it is nearly always right, ``C`` is close to the identity and the
    stationary vector rests on a few rare confusions, so it is noisy (with logits that
    follow the model exactly, about 1 nat of mean error at 99% accuracy and 1000 images per
    class, against 0.03 at 40-55% accuracy).

    The stationary vector is found by solving ``(C^T - I) q = 0`` with ``sum q = 1`` (one
    direct solve and one refinement step); ``diagnostics_.grad_norm`` is
    ``max |q C - q|``. ``confusion_`` keeps ``C``.

    Sources: the journal version's abstract (arXiv 2310.08106 v3) describes the estimator
    as "an eigenvector derived from a matrix of zero-shot predictions"; Frolic's released
    code (github.com/zhuhsingyuu/Frolic, ``main_zeroshot.py``, ``pp_estimate_eigen``)
    builds the same matrix (row ``k``: the mean softmax of the images labelled ``k``) and
    takes its stationary vector by power iteration (tolerance 1e-3, at most 100 steps),
    where we solve the linear system exactly. The derivation above is ours.

    Parameters
    ----------
    temperature : float or "search"
        Logits are divided by it before the softmax (default 1.0).
    tol : float
        ``converged`` when the stationarity residual is below it.
    """

    id = "eigenvector"
    name = "eigenvector (journal extension)"
    requires_labels = True
    estimates = MODEL_PRIOR
    description = "Stationary vector of the matrix of class-conditional mean predictions (labelled)."

    def __init__(self, temperature: float | str = 1.0, tol: float = 1e-9):
        self.temperature = temperature
        self.tol = tol

    def _fit(self, z, y, temperature):
        log_q, resid = self._eigen(z.to(torch.float64) / temperature, y)
        return log_q, Diagnostics(float("nan"), resid, 1, resid <= self.tol)

    def _eigen(self, zt: torch.Tensor, groups: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """Stationary log prior of the class-conditional mean predictions of ``softmax(zt)``,
        grouped by ``groups`` (argmax when None); sets ``confusion_``."""
        k = zt.shape[1]
        p = torch.softmax(zt, dim=1)
        if groups is None:
            groups = p.argmax(dim=1)
        counts = torch.bincount(groups, minlength=k).to(torch.float64)
        C = torch.zeros(k, k, dtype=torch.float64, device=zt.device).index_add_(0, groups, p)
        empty = counts == 0
        if bool(empty.any()):  # only with pseudo-labels: a class no image is predicted as
            soft = (p.T @ p) / p.sum(0)[:, None]
            C[empty] = soft[empty]
            counts = counts.clamp_min(1.0)
        C = C / counts[:, None]
        C = C / C.sum(1, keepdim=True)
        self.confusion_ = C
        self.n_unpredicted_classes_ = int(empty.sum())
        q, resid = _stationary(C)
        return torch.log(q), resid


@register_estimator
class PseudoEigenvectorEstimator(EigenvectorEstimator):
    """Label-free: :class:`EigenvectorEstimator` with argmax pseudo-labels for the labels, repeated.

    As in Frolic (Zhu et al., NeurIPS 2024): rows of ``C`` average the predictions of the
    images *predicted* as class ``j``. One pass is biased: the identity ``q C = q`` needs the
    true labels, and a biased model's argmax over-assigns its frequent classes. So, like
    Frolic, the estimate is repeated on the debiased logits and accumulated,

        log q^(r+1) = log q^(r) + log stationary(C(z / T - log q^(r))) ,

    until the stationary vector of the debiased model is uniform (max centred
    ``|log stationary|`` below ``round_tol``) or ``max_rounds`` is reached
    (``max_rounds=1``: the single pass). Under the model ``p(y|x) ∝ p(x|y) q(y)`` and on
    balanced data the debiased model predicts every class about equally often, and its
    stationary vector is then uniform, so the fixed point is close to ``q`` (in our
    in-model tests it approaches the labelled estimator). Frolic's released code
    (``main_zeroshot.py``) runs a fixed 11 rounds, drops images whose top-two logits are
    closer than ``1/K`` and debiases an ensemble of two models; we keep every image, stop
    at a tolerance and take the logits we are given. A class that no image is predicted as gets the row
    ``sum_i p(j|x_i) p(.|x_i) / sum_i p(j|x_i)`` (soft assignment); ``n_unpredicted_classes_``
    counts them in the last round. ``labels`` are ignored.

    ``diagnostics_``: ``n_iter`` = rounds, ``grad_norm`` = the last round's max centred
    ``|log stationary|`` (distance from the fixed point), ``converged`` = below
    ``round_tol``.
    """

    id = "eigenvector-pseudo"
    name = "eigenvector, pseudo-labels (label-free)"
    requires_labels = False
    estimates = MODEL_PRIOR
    description = "The eigenvector estimator with argmax pseudo-labels, repeated on debiased logits (Frolic)."

    def __init__(self, temperature: float = 1.0, max_rounds: int = 100, round_tol: float = 1e-4):
        self.temperature = temperature
        self.max_rounds = max_rounds
        self.round_tol = round_tol

    def _fit(self, z, y, temperature):
        if int(self.max_rounds) < 1:
            raise ValueError(f"max_rounds: expected a positive integer, got {self.max_rounds}")
        zt = z.to(torch.float64) / temperature
        total = torch.zeros(z.shape[1], dtype=torch.float64, device=z.device)
        change, rounds = math.inf, 0
        while rounds < int(self.max_rounds) and not change < self.round_tol:
            log_pi, _ = self._eigen(zt - total, None)
            step = log_pi - log_pi.mean()
            total = total + step
            change = float(step.abs().max())
            rounds += 1
        return total, Diagnostics(float("nan"), change, rounds, change < self.round_tol)


@register_estimator
class EMEstimator(PriorEstimatorBase):
    """Saerens et al. (2002) EM: the label distribution of the unlabelled data, not ``q``.

    Wraps :func:`gla.em_prior`: treating ``softmax(z / T)`` as posteriors under a uniform
    prior, it finds ``pi = mean_i softmax(z_i / T + log pi)``. This estimates the
    **target label distribution** (label shift); it is not an estimator of the model's own
    prior ``q``: on a
    biased zero-shot model the fixed point feeds the bias back into itself, so classes the
    model under-predicts are driven towards zero mass, and ``-log pi`` turns them into huge
    logits. Do not subtract it as a prior estimate; studies report it separately
    (``estimates = "target label distribution"``).

    ``diagnostics_.grad_norm`` is the max change of ``log pi`` in one more EM step.
    """

    id = "em"
    name = "EM (Saerens et al.), target label distribution"
    requires_labels = False
    estimates = TARGET_DISTRIBUTION
    description = "Saerens et al. EM re-estimation of the target label distribution (not the model prior)."

    def __init__(self, temperature: float = 1.0, n_iter: int = 100, tol: float = 1e-10):
        self.temperature = temperature
        self.n_iter = n_iter
        self.tol = tol

    def _fit(self, z, y, temperature):
        zt = (z / temperature).to(torch.float64)
        log_pi = em_prior(zt, n_iter=int(self.n_iter), tol=self.tol)
        nxt = normalise(torch.log(torch.softmax(zt + log_pi, dim=1).mean(0).clamp_min(1e-300)))
        change = float((nxt - log_pi).abs().max())
        return log_pi, Diagnostics(float("nan"), change, -1, change < self.tol)
