"""Where and how a protocol runs (:class:`RunConfig`) and which procedure it follows
(:class:`ProtocolSettings`).

``protocol="paper"`` runs the official GLA code's procedure: its temperature search
(regula falsi between 0.1 and 10 to within 0.1 percentage points for the zero-shot model,
1.0 for the fine-tuned one; ``trainers/util.py``, ``search_T``) and its 1000-step
Lagrangian prior solver in float32 (``trainers/util.py``, ``pp_solver``), the GLA code's
prompt templates, Dassl's few-shot sampling and GLA's ImageNet split, and for ImageNet
many-shot no source prior (``Code.zip``, ``src/gla.py``). ``protocol="exact"`` replaces the
temperature search and the prior solver by their converged, exact solutions
(:class:`gla.prior.PriorEstimator`); everything else in a protocol function is the same, so
given the same prompt recipe the two differ by the optimisation alone. (The book's
notebooks, through :func:`gla.notebook.context`, also pick the few-shot prompt recipe by
protocol for a real backbone: GLA's end-to-end recipe under ``paper``, the cached-feature
one under ``exact``.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..backbones import load_backbone
from ..cache import default_cache_dir
from ..data import dataset_entry, load_dataset
from ..estimators import MODEL_PRIOR, list_estimators

PROTOCOLS = ("paper", "exact")
TEMPLATE_STYLES = ("gla", "coop")
SOURCE_PRIORS = ("uniform", "counts")
# Datasets whose many-shot GLA the official code runs without log p_s (treated as balanced).
BALANCED_BY_CONVENTION = ("imagenet",)


@dataclass(frozen=True)
class ProtocolSettings:
    """The procedure of a run; every field is a column of every result row.

    Parameters
    ----------
    protocol : {"paper", "exact"}
        ``paper``: the official temperature search and 1000-step prior solver.
        ``exact``: a converged temperature search and the exact prior.
    templates : {"gla", "coop"}
        Zero-shot prompt templates: the GLA code's (default) or CoOp's.
    source_prior : {"uniform", "counts"} or None
        ``log p_s`` removed from the fine-tuned model in GLA: uniform (no adjustment) or
        the training label counts. None: uniform for ImageNet under ``paper`` (the official
        many-shot code), counts otherwise.
    prior_file : str, optional
        A given prior (e.g. the official ``q.pt``): used instead of estimating ``q``;
        head / medium / tail then follow it. Read by :func:`gla.protocols.load_prior_file`.
    estimator : str, optional
        Id of the prior's estimator: any estimator of the model's prior registered in
        :mod:`gla.estimators` (``official``, ``exact``, ``eigenvector``, ...). None: the
        protocol's (``official`` under ``paper``, ``exact`` under ``exact``), resolved by
        :attr:`estimator_id` (so ``replace(settings, protocol=...)`` follows the new
        protocol). It changes the estimate of ``q`` only; the temperature search stays the
        protocol's.
    """

    protocol: str = "paper"
    templates: str = "gla"
    source_prior: str | None = None
    prior_file: str | None = None
    estimator: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {self.protocol!r}")
        if self.templates not in TEMPLATE_STYLES:
            raise ValueError(f"templates: expected one of {TEMPLATE_STYLES}, got {self.templates!r}")
        if self.source_prior is not None and self.source_prior not in SOURCE_PRIORS:
            raise ValueError(f"source_prior: expected one of {SOURCE_PRIORS} or None, got {self.source_prior!r}")
        if self.prior_file is not None and not Path(self.prior_file).is_file():
            raise FileNotFoundError(f"prior_file: no file at {self.prior_file}")
        if self.estimator is not None:
            known = list_estimators(estimates=MODEL_PRIOR)
            if self.estimator not in known:
                other = self.estimator in list_estimators()
                raise ValueError(f"estimator: expected the id of an estimator of the model's prior, one of {known}; "
                                 f"got {self.estimator!r}" + (" (it estimates the target label distribution, which "
                                                              "GLA does not subtract)" if other else ""))

    @property
    def estimator_id(self) -> str:
        """Id of the prior's estimator in :mod:`gla.estimators`: ``estimator``, or the protocol's."""
        if self.estimator is not None:
            return self.estimator
        return "official" if self.protocol == "paper" else "exact"

    @property
    def temperature_method(self) -> str:
        """Method of :func:`gla.temperature.fit_temperature`."""
        return "official" if self.protocol == "paper" else "exact"

    def source_prior_for(self, dataset: str) -> str:
        """The source prior used for ``dataset`` (resolves the default)."""
        if self.source_prior is not None:
            return self.source_prior
        return "uniform" if (self.protocol == "paper" and dataset in BALANCED_BY_CONVENTION) else "counts"

    def columns(self) -> dict[str, str]:
        """The settings as result columns."""
        return {"protocol": self.protocol, "templates": self.templates,
                "prior_source": f"file:{Path(self.prior_file).name}" if self.prior_file else self.estimator_id}


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunConfig:
    """Where and how to run: the one carrier of the run's environment.

    Parameters
    ----------
    cache_dir : path
        Features, logits, zero-shot heads and fine-tuned weights (default ``GLA_CACHE_DIR``
        or ``.gla_cache``).
    data_root : str, optional
        Root of real datasets (default ``GLA_DATA_ROOT``).
    device : str
        ``cpu``, ``cuda``, ``cuda:1``, ...
    precision : str, optional
        Autocast precision of feature extraction, prediction and fine-tuning: ``fp32``,
        ``bf16`` or ``fp16``; None: fp32 on the CPU, fp16 on CUDA (open_clip's ``amp``).
        Part of every cache key and of the recipe in the rows.
    num_workers : int, optional
        Data-loading worker processes (None: from the CPU count for image files, 0 for
        in-memory tensors).
    quick_gelu : bool, optional
        For a local checkpoint file: whether the weights were trained with QuickGELU
        (OpenAI's) or GELU (LAION's, DataComp's); None: detected where the file or the name
        tells (see :func:`gla.backbones.resolve_model_name`). Every backbone loaded with
        this config gets it: a table of several backbones gives each its own config
        (:meth:`gla.notebook.Context.runs`).
    progress : bool
        Progress bars and messages (which checkpoint is reused, why a model trains); under
        ``torchrun`` only the process of rank 0 prints messages.
    dataset_options : mapping
        Options passed to the datasets that declare them (the world's ``world`` and
        ``scale``; a reader's ``image_root``); other datasets never see them.
    """

    cache_dir: Path = field(default_factory=default_cache_dir)
    data_root: str | None = None
    device: str = "cpu"
    precision: str | None = None
    num_workers: int | None = None
    quick_gelu: bool | None = None
    progress: bool = True
    dataset_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if self.precision not in (None, "fp32", "bf16", "fp16", "amp", "amp_bf16"):
            raise ValueError(f"precision: expected 'fp32', 'bf16', 'fp16' or None, got {self.precision!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers: expected a non-negative number, got {self.num_workers}")
        if self.quick_gelu is not None and not isinstance(self.quick_gelu, bool):
            raise ValueError(f"quick_gelu: expected True, False or None (detected), got {self.quick_gelu!r}")

    def log(self, message: str) -> None:
        """Tell the user something about the run (stderr), when ``progress``, from one
        process only (rank 0, under ``torchrun``)."""
        if self.progress and int(os.environ.get("RANK", "0")) == 0:
            _log_stderr(message)

    def load(self, name: str, split: str, *, transform=None):
        """One split of a registered dataset, with the options it declares."""
        entry = dataset_entry(name)
        options = {k: v for k, v in self.dataset_options.items() if k in entry.options}
        return load_dataset(name, split, root=self.data_root, transform=transform, **options)

    def backbone(self, name: str, pretrained: str | None):
        """The backbone, on this run's device."""
        return load_backbone(name, pretrained, device=self.device, quick_gelu=self.quick_gelu)

    def recipe(self, recipe):
        """A fine-tuning recipe with this run's precision (unless it sets its own) and workers."""
        return replace(recipe, precision=recipe.precision or self.precision,
                       num_workers=self.num_workers if recipe.num_workers is None else recipe.num_workers)
