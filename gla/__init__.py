"""gla: the reference companion of *Generalized Logit Adjustment* (Zhu et al., NeurIPS 2023).

The method is a handful of pure functions over tensors:

- :func:`estimate_log_prior` / :class:`PriorEstimator`: the label prior a zero-shot model
  inherited from pretraining, estimated on a labelled class-balanced set
  (:mod:`gla.estimators` holds every estimator behind one contract);
- :func:`search_temperature`: confidence-matches-accuracy temperature;
- :func:`debias`, :func:`logit_adjust`, :func:`gla_logits`, :func:`ensemble_logits`,
  :func:`interpolate_state_dicts`: the models the paper compares;
- :mod:`gla.metrics`: accuracies, group breakdowns and calibration.

Around it: :func:`load_backbone` (open_clip models and registered providers),
:func:`load_dataset` / :func:`list_datasets` (:mod:`gla.data`), and the paper's protocols
(:func:`run_many_shot`, :func:`run_few_shot`, :func:`run_long_tail`, :mod:`gla.protocols`).
"""

from . import notebook
from .adjust import (
    debias,
    ensemble_logits,
    gla_logits,
    interpolate_state_dicts,
    log_prior_from_counts,
    logit_adjust,
    wise_ft_sweep,
)
from .backbones import list_backbones, load_backbone
from .data import list_datasets, load_dataset
from .metrics import (
    accuracy_by_count_group,
    accuracy_by_prior_group,
    count_groups,
    expected_calibration_error,
    mean_per_class_accuracy,
    per_class_accuracy,
    prior_groups,
    topk_accuracy,
)
from .prior import (
    PriorEstimator,
    em_prior,
    estimate_log_prior,
    mean_probability_prior,
    official_lagrangian_prior,
    prior_objective,
)
from .protocols import (
    Method,
    PromptRecipe,
    ProtocolSettings,
    RunConfig,
    run_few_shot,
    run_long_tail,
    run_many_shot,
    save_results,
)
from .temperature import search_temperature
from .version import __version__ as __version__

__all__ = [
    "Method",
    "PriorEstimator",
    "PromptRecipe",
    "ProtocolSettings",
    "RunConfig",
    "accuracy_by_count_group",
    "accuracy_by_prior_group",
    "count_groups",
    "debias",
    "em_prior",
    "ensemble_logits",
    "estimate_log_prior",
    "expected_calibration_error",
    "gla_logits",
    "interpolate_state_dicts",
    "list_backbones",
    "list_datasets",
    "load_backbone",
    "load_dataset",
    "log_prior_from_counts",
    "logit_adjust",
    "mean_per_class_accuracy",
    "mean_probability_prior",
    "notebook",
    "official_lagrangian_prior",
    "per_class_accuracy",
    "prior_groups",
    "prior_objective",
    "run_few_shot",
    "run_long_tail",
    "run_many_shot",
    "save_results",
    "search_temperature",
    "topk_accuracy",
    "wise_ft_sweep",
]
