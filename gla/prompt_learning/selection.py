"""Which epoch a prompt learner keeps: the best validation score, by default accuracy, or
the *GLA* accuracy on val (:func:`gla_val_selector`, the official rule)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .._validation import ArrayLike, check_labels, check_log_prior, check_logits
from ..adjust import gla_logits
from ..temperature import fit_temperature
from .learners import PromptLearner

Select = Callable[[torch.Tensor], float]


class TemperatureResult(NamedTuple):
    """A fitted temperature and whether the search met its criterion."""

    temperature: float
    converged: bool


def _ft_temperature(logits: torch.Tensor, labels: torch.Tensor, method: str = "official") -> TemperatureResult:
    """``T_ft`` of the learner's val logits: confidence matches accuracy.

    ``method="official"``: the official search (regula falsi from [0.1, 10], stop within
    1.0 percentage point; ``GLA.FS.public.zip`` -> ``trainers/util.py`` ``search_T``,
    ``trainers/gla.py`` thres 1.0); ``"exact"``: a converged search. When accuracy is 1
    or at chance no temperature matches; ``T = 1`` is returned with ``converged=False``.
    """
    fit = fit_temperature(logits, labels, method=method, thres=1.0, fallback=1.0)
    return TemperatureResult(float(fit.temperature), bool(fit.converged))


class GLAValSelector:
    """Model-selection score: accuracy on val of ``f_pt / T_ft + f_zs / T_zs - log q``.

    Built by :func:`gla_val_selector`; pass it as ``select=`` to :func:`train_prompts` or
    :func:`train_prompts_end_to_end`. Calling it on the learner's val logits ``(N_val, K)``
    returns the GLA accuracy (a fraction); ``last_details`` holds the ``T_ft`` used, which
    the trainers copy into the epoch's history record.
    """

    name = "gla_val_accuracy"

    def __init__(self, zs_val_logits: torch.Tensor, val_labels: torch.Tensor, log_prior: torch.Tensor,
                 t_zs: float, search_t_ft: bool, t_ft: float, temperature_method: str = "official"):
        self.zs_val_logits, self.val_labels, self.log_prior = zs_val_logits, val_labels, log_prior
        self.t_zs, self.search_t_ft, self.t_ft = t_zs, search_t_ft, t_ft
        self.temperature_method = temperature_method
        self.last_details: dict[str, Any] = {}

    def __call__(self, pt_val_logits: torch.Tensor) -> float:
        pt = check_logits(pt_val_logits, "pt_val_logits").detach().to(torch.float64).cpu()
        if pt.shape != self.zs_val_logits.shape:
            raise ValueError(f"pt_val_logits: expected the shape of the zero-shot val logits "
                             f"{tuple(self.zs_val_logits.shape)}, got {tuple(pt.shape)}")
        if self.search_t_ft:
            t_ft, converged = _ft_temperature(pt, self.val_labels, self.temperature_method)
        else:
            t_ft, converged = self.t_ft, None
        self.last_details = {"t_ft": float(t_ft), "t_ft_converged": converged}
        z = gla_logits(self.zs_val_logits, pt, self.log_prior, zs_temperature=self.t_zs, ft_temperature=t_ft)
        return float((z.argmax(dim=1) == self.val_labels).double().mean())


def gla_val_selector(zs_val_logits: ArrayLike, val_labels: ArrayLike, log_prior: ArrayLike, t_zs: float, *,
                     search_t_ft: bool = True, t_ft: float = 1.0,
                     temperature_method: str = "official") -> GLAValSelector:
    """The official few-shot model selection: GLA accuracy on the validation split.

    The zero-shot val logits, ``T_zs`` and the prior are fixed during prompt tuning, so the
    score of an epoch is ``acc(argmax(f_pt / T_ft + f_zs / T_zs - log q))`` on val, with
    ``T_ft`` searched again on the learner's val logits at every call, as the official code
    does each epoch (BeierZhu/GLA, ``GLA.FS.public.zip`` -> ``trainers/gla.py``, the
    after-epoch evaluation with ``search_T`` at threshold 1.0).

    Parameters
    ----------
    zs_val_logits : (N_val, K)
        Raw zero-shot logits of the val images, in the order the trainer sees them.
    val_labels : (N_val,)
    log_prior : (K,)
        ``log q`` estimated at ``t_zs`` (any normalisation: a constant shift does not
        change the argmax).
    t_zs : float
        Temperature of the zero-shot model.
    search_t_ft : bool
        Search ``T_ft`` (confidence matches accuracy; ``T_ft = 1`` when accuracy is 1 or
        at chance) at each call; ``False`` uses ``t_ft``.
    t_ft : float
        The fixed fine-tuned temperature when ``search_t_ft`` is False.
    temperature_method : {"official", "exact"}
        How ``T_ft`` is searched (:func:`gla.temperature.fit_temperature`; the protocol's).

    Returns
    -------
    GLAValSelector
        A callable ``(N_val, K) logits -> float`` score (higher is better).
    """
    zs = check_logits(zs_val_logits, "zs_val_logits").detach().to(torch.float64).cpu()
    y = check_labels(val_labels, zs.shape[0], zs.shape[1], "val_labels").cpu()
    lq = check_log_prior(log_prior, zs.shape[1]).detach().to(torch.float64).cpu()
    for name, t in (("t_zs", t_zs), ("t_ft", t_ft)):
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"{name}: expected a positive temperature, got {t!r}")
    return GLAValSelector(zs, y, lq, float(t_zs), bool(search_t_ft), float(t_ft), temperature_method)


def _score_name(select: Select | None) -> str:
    if select is None:
        return "val_accuracy"
    return str(getattr(select, "name", None) or getattr(select, "__name__", None) or type(select).__name__)


class Selection:
    """Scores the learner on val after each epoch and keeps the best parameters."""

    def __init__(self, learner: PromptLearner, val_features: torch.Tensor, val_labels: torch.Tensor,
                 select: Select | None):
        self.learner, self.xv, self.yv, self.select = learner, val_features, val_labels, select
        self.name = _score_name(select)
        self.best: dict[str, Any] = {"score": -math.inf, "epoch": None, "accuracy": None, "state": None}

    @torch.no_grad()
    def evaluate(self, record: dict, candidate: bool = True) -> dict:
        logits = self.learner(self.xv).float()
        acc = float((logits.argmax(1) == self.yv).float().mean())
        if self.select is None:
            score = acc
        else:
            score = float(self.select(logits))
            details = getattr(self.select, "last_details", None)
            if isinstance(details, dict):
                record.update(details)
            if not math.isfinite(score):
                raise ValueError(f"select: expected a finite score, got {score} at epoch {record['epoch']}")
        record.update(val_accuracy=acc, val_score=score, score=self.name, candidate=candidate)
        if candidate and score > self.best["score"]:
            self.best.update(score=score, epoch=record["epoch"], accuracy=acc,
                             state={k: v.detach().clone() for k, v in self.learner.named_parameters()
                                    if v.requires_grad})
        return record

    def restore(self) -> dict:
        with torch.no_grad():
            for k, v in self.learner.named_parameters():
                if k in self.best["state"]:
                    v.copy_(self.best["state"][k])
        return {"best_epoch": self.best["epoch"], "best_val_score": self.best["score"],
                "best_val_accuracy": self.best["accuracy"], "score": self.name}
