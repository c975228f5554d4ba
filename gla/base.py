"""The one contract of every estimator of the label prior (scikit-learn's conventions).

Settings go to ``__init__`` and are stored there unchanged (nothing is computed);
:meth:`~PriorEstimatorBase.fit` ``(logits, labels=None)`` learns from zero-shot logits and
returns the estimator; what was learned is an attribute with a trailing underscore:

- ``log_prior_``: (K,) float64, normalised (``logsumexp == 0``); ``prior_``: its exp;
- ``temperature_``: the temperature the logits were divided by;
- ``diagnostics_``: a frozen :class:`Diagnostics` (objective, gradient / residual norm,
  iterations, convergence and, for the official algorithm, the unnormalised sum of ``q``),
  the one place an estimator reports on its answer (``objective_``, ``grad_norm_``,
  ``n_iter_`` and ``converged_`` read it);
- ``n_classes_``: K.

:meth:`~PriorEstimatorBase.get_params` and :meth:`~PriorEstimatorBase.set_params` read the
parameters from the ``__init__`` signature and :func:`clone` makes a new unfitted estimator
with the same parameters, as scikit-learn's do (``deep`` is accepted and ignored: no
estimator here holds another).

Class attributes say what an estimator is: ``id`` (registry key), ``name`` (display name),
``requires_labels``, ``estimates`` (:data:`MODEL_PRIOR`: the prior ``q`` that pretraining
left in the model, what GLA subtracts; or :data:`TARGET_DISTRIBUTION`: the class shares of
the data it is fitted on) and ``description``. :mod:`gla.estimators` registers them.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ._validation import ArrayLike, check_labels, check_logits
from .adjust import debias
from .temperature import search_temperature

__all__ = ["ESTIMATES", "MODEL_PRIOR", "TARGET_DISTRIBUTION", "Diagnostics", "PriorEstimatorBase", "clone"]

MODEL_PRIOR = "model prior"
TARGET_DISTRIBUTION = "target label distribution"
ESTIMATES = (MODEL_PRIOR, TARGET_DISTRIBUTION)


@dataclass(frozen=True)
class Diagnostics:
    """What an estimator reports about its own answer.

    Attributes
    ----------
    objective : float
        The estimator's objective at the answer (NaN for estimators without one).
    grad_norm : float
        Max-norm of the optimality residual: the gradient of a convex objective, the
        stationarity residual ``|q C - q|`` of an eigenvector, the last EM change.
        0 for closed-form estimators.
    n_iter : int
        Iterations used (0 for closed forms; ``-1`` where the wrapped function does not
        say).
    converged : bool
        Whether ``grad_norm`` reached the estimator's tolerance.
    raw_sum : float
        Sum of ``q`` before normalisation (1.0 unless the algorithm leaves it unnormalised,
        as the official one does).
    """

    objective: float
    grad_norm: float
    n_iter: int
    converged: bool
    raw_sum: float = 1.0

    def as_dict(self) -> dict:
        """The fields as a plain ``dict`` (for tidy result rows)."""
        return asdict(self)


def normalise(log_q: torch.Tensor) -> torch.Tensor:
    """``log_q - logsumexp(log_q)``: a log prior whose probabilities sum to one."""
    return log_q - torch.logsumexp(log_q, dim=0)


def _diagnostic(field: str) -> property:
    """A read-only fitted attribute that reads ``diagnostics_.<field>`` (the one store)."""

    def read(self) -> Any:
        try:
            return getattr(self.__dict__["diagnostics_"], field)
        except KeyError:
            raise AttributeError(f"{type(self).__name__} is not fitted yet: call fit first") from None

    return property(read, doc=f"``diagnostics_.{field}``.")


class PriorEstimatorBase:
    """The contract: ``fit(logits, labels=None) -> self``; see the module docstring.

    A subclass sets the class attributes, stores its ``__init__`` arguments under their own
    names (``temperature`` among them), and implements ``_fit(z, y, temperature)``:

    - ``z``: the logits as given, checked (2-D, finite) and floating point (half precision
      raised to float32), **not** divided by the temperature;
    - ``y``: the checked labels (every class present) on ``z``'s device, or ``None`` for a
      label-free estimator (it ignores ``labels``, as scikit-learn's unsupervised
      estimators ignore ``y``; a labelled one raises when they are missing);
    - ``temperature``: the resolved positive temperature (``"search"`` already searched).
      ``_fit`` divides the logits by it (or hands it to a solver that does);
      ``tests/test_estimators.py`` fits every registered estimator at a temperature other
      than 1 to check it.

    It returns ``(log_q, Diagnostics)``, ``log_q`` possibly unnormalised, and may set more
    fitted attributes (trailing underscore).
    """

    id: str = ""
    name: str = ""
    requires_labels: bool = True
    estimates: str = MODEL_PRIOR
    description: str = ""

    temperature: float | str = 1.0

    # -- parameters (scikit-learn's BaseEstimator) --------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        """The ``__init__`` parameters, in signature order (no ``*args`` / ``**kwargs``)."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings given to ``__init__``, by name (scikit-learn's ``get_params``).

        ``deep`` is accepted for scikit-learn's callers and changes nothing: no estimator
        here holds another.
        """
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> PriorEstimatorBase:
        """Change settings by name and return the estimator (scikit-learn's ``set_params``).

        Raises
        ------
        ValueError
            For a name that is not an ``__init__`` parameter (the message lists them).
        """
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"set_params: {type(self).__name__} has no parameter {k!r}; "
                                 f"its parameters are {valid}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fitting ---------------------------------------------------------------------

    def _resolve_temperature(self, z: torch.Tensor, y: torch.Tensor | None) -> float:
        t = self.temperature
        if isinstance(t, str):
            if t != "search":
                raise ValueError(f"temperature: expected a positive number or 'search', got {t!r}")
            if y is None:
                raise ValueError(f"temperature='search' needs labels (confidence is matched to accuracy); "
                                 f"{self.id!r} is fitted without labels: give a number")
            return search_temperature(z, y)
        t = float(t)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"temperature: expected a positive number or 'search', got {t}")
        return t

    def fit(self, logits: ArrayLike, labels: ArrayLike | None = None) -> PriorEstimatorBase:
        """Estimate from zero-shot ``logits`` (N, K) and, if required, ``labels`` (N,).

        Every class needs at least one labelled example (a labelled estimator): a class never
        seen says nothing about its prior.

        Returns
        -------
        self
            With ``log_prior_`` (normalised), ``prior_``, ``temperature_``,
            ``diagnostics_`` and ``n_classes_`` set.
        """
        z = check_logits(logits)
        if not torch.is_floating_point(z) or z.dtype in (torch.float16, torch.bfloat16):
            z = z.to(torch.float32)
        y = None
        if self.requires_labels:
            if labels is None:
                raise ValueError(f"labels: estimator {self.id!r} needs the labels of the estimation set")
            y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
            counts = torch.bincount(y, minlength=z.shape[1])
            missing = torch.nonzero(counts == 0).flatten()
            if missing.numel():
                raise ValueError(
                    f"labels: every class needs at least one example in the estimation set; "
                    f"{missing.numel()} of {z.shape[1]} classes have none (first: {missing[:10].tolist()})")
        temperature = self._resolve_temperature(z, y)
        log_q, diag = self._fit(z, y, temperature)
        self.log_prior_ = normalise(log_q.to(torch.float64))
        self.prior_ = self.log_prior_.exp()
        self.temperature_ = temperature
        self.diagnostics_ = diag
        self.n_classes_ = z.shape[1]
        return self

    def _fit(self, z: torch.Tensor, y: torch.Tensor | None, temperature: float
             ) -> tuple[torch.Tensor, Diagnostics]:  # pragma: no cover - abstract
        raise NotImplementedError

    def debias(self, logits: ArrayLike) -> torch.Tensor:
        """Debiased logits ``logits / temperature_ - log_prior_`` (float64)."""
        return debias(logits, self.log_prior_, temperature=self.temperature_)

    # -- the diagnostics under scikit-learn's fitted-attribute names (read from diagnostics_)

    objective_ = _diagnostic("objective")
    grad_norm_ = _diagnostic("grad_norm")
    n_iter_ = _diagnostic("n_iter")
    converged_ = _diagnostic("converged")


def clone(estimator: PriorEstimatorBase) -> PriorEstimatorBase:
    """A new, unfitted estimator of the same class with the same parameters (deep copies),
    as scikit-learn's ``clone``.

    Raises
    ------
    RuntimeError
        When the class's ``__init__`` does not store a parameter unchanged under its name
        (scikit-learn's check; ``get_params`` would not describe the estimator).
    """
    params = {k: copy.deepcopy(v) for k, v in estimator.get_params(deep=False).items()}
    new = type(estimator)(**params)
    stored = new.get_params(deep=False)
    for k, v in params.items():
        if stored[k] is not v:
            raise RuntimeError(f"clone: {type(estimator).__name__}.__init__ does not store the parameter {k!r} "
                               "as given; store every __init__ argument unchanged under its own name")
    return new
