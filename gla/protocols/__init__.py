"""The paper's protocols: many-shot (ImageNet and its shifts), few-shot, long-tail.

Each protocol takes a backbone, datasets, the procedure (:class:`ProtocolSettings`:
``protocol="paper"`` or ``"exact"``) and where to run (:class:`RunConfig`), and returns a
typed result (:class:`ManyShotResult`, :class:`FewShotResult`, :class:`LongTailResult`)
whose ``table`` is the tidy table (:mod:`gla.protocols.results`), one row per method x
dataset x split x shots x seed, that :func:`save_results` writes as CSV and JSON.
"""

from ..prior_file import load_prior_file
from .analysis import (
    compare_protocols,
    comparison_few_shot_dataset,
    finetune_to_cache,
    run_estimation_ablation,
    run_protocol_comparison,
    zero_shot_split,
)
from .common import Outputs, TestSplitUsedError, choose_alpha, fit_prior, fit_temperature
from .config import ProtocolSettings, RunConfig
from .few_shot import PAPER_PROMPTS, PromptRecipe, run_few_shot
from .long_tail import run_long_tail
from .many_shot import DEFAULT_ALPHAS, run_many_shot
from .results import (
    COLUMNS,
    EvalOutputs,
    FewShotFit,
    FewShotResult,
    LongTailResult,
    ManyShotOutputs,
    ManyShotResult,
    Method,
    PriorFit,
    ZeroShotOutputs,
    method_label,
    method_style,
    order_methods,
    save_results,
    score,
)

__all__ = [
    "compare_protocols", "comparison_few_shot_dataset",
    "COLUMNS", "DEFAULT_ALPHAS", "PAPER_PROMPTS", "EvalOutputs", "FewShotFit", "FewShotResult",
    "LongTailResult", "ManyShotOutputs", "ManyShotResult",
    "Method", "Outputs", "PriorFit", "PromptRecipe", "ProtocolSettings", "RunConfig", "TestSplitUsedError",
    "ZeroShotOutputs", "choose_alpha", "finetune_to_cache", "fit_prior", "fit_temperature", "load_prior_file",
    "method_label", "method_style", "order_methods", "run_estimation_ablation", "score", "run_protocol_comparison",
    "run_few_shot", "run_long_tail", "run_many_shot", "save_results",
    "zero_shot_split",
]
