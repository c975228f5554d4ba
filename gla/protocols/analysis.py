"""Helpers for the book's analyses: the zero-shot model on one split, how the prior
estimate depends on the estimation set, and fine-tuning into the protocols' cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import torch

from .. import metrics
from ..adjust import debias, gla_logits
from ..data import few_shot_indices
from ..finetune import FinetuneConfig, distributed_from_env
from ..zeroshot import zero_shot_logits
from .common import (
    Models,
    Outputs,
    cached_head,
    features,
    fit_prior,
    fit_temperature,
    log_source_prior,
    seeded,
    templates_of,
)
from .config import ProtocolSettings, RunConfig
from .few_shot import PromptRecipe, run_few_shot
from .many_shot import run_many_shot
from .results import ManyShotOutputs, Method, ZeroShotOutputs


def zero_shot_split(backbone: str, pretrained: str | None, dataset: str, split: str, *,
                    settings: ProtocolSettings = ProtocolSettings(), config: RunConfig = RunConfig()
                    ) -> ZeroShotOutputs:
    """The zero-shot model on one split (features from the cache)."""
    bb = config.backbone(backbone, pretrained)
    data = config.load(dataset, split)
    train = data if split == "train" else config.load(dataset, "train")
    head = cached_head(bb, train.classnames, templates_of(train, settings.templates), config)
    feats = features(bb, data, config)
    return ZeroShotOutputs(head, feats, zero_shot_logits(feats, head, bb.logit_scale), data.labels,
                           list(train.classnames))


def run_estimation_ablation(outputs: ManyShotOutputs, *, sizes: Sequence[int] = (1, 2, 4, 8, 16),
                            seeds: Sequence[int] = (1, 2, 3), backbone: str = "",
                            settings: ProtocolSettings = ProtocolSettings(protocol="exact"),
                            true_log_prior: torch.Tensor | None = None) -> pd.DataFrame:
    """How the prior estimate depends on the estimation set: images per class and the
    temperature search.

    Subsamples ``k`` validation images per class by seed (Dassl's sampler), estimates
    ``q`` with and without the protocol's temperature search, and scores debiased
    zero-shot and GLA on the test split. Rows carry the estimate's distance to the
    full-validation estimate (mean absolute difference of the normalised log priors) and,
    with ``true_log_prior``, ``mae_true``: the mean absolute difference of the centred
    estimated and true log priors.
    """
    zs_val, y_val = outputs.val_logits[Method.ZERO_SHOT], outputs.val_labels
    test = outputs.test
    zs_test, ft_test, y_test = test.logits[Method.ZERO_SHOT], test.logits[Method.FINE_TUNED], test.labels
    log_ps = outputs.log_source_prior

    def fit(z, y, searched: bool):
        out = Outputs(z, y, "val")
        t = fit_temperature(out, settings) if searched else None
        return fit_prior(out, replace(settings, prior_file=None), temperature=t.temperature if t else 1.0,
                         temperature_converged=t.converged if t else None)

    full = {s: fit(zs_val, y_val, s).log_prior for s in (False, True)}
    per_class = int(torch.bincount(y_val).min())
    rows = []
    for k in [s for s in sizes if s <= per_class] + ([per_class] if per_class not in sizes else []):
        for seed in seeds:
            idx = torch.tensor(few_shot_indices(y_val, k, seed))
            for searched in (False, True):
                p = fit(zs_val[idx], y_val[idx], searched)
                lq = p.log_prior
                rows.append({
                    "backbone": backbone, "dataset": outputs.dataset, "per_class": k, "seed": seed,
                    "protocol": settings.protocol, "temperature": "searched" if searched else "1 (none)",
                    "T": p.temperature, "T_converged": p.temperature_converged,
                    "debiased_top1": metrics.topk_accuracy(debias(zs_test, lq, temperature=p.temperature), y_test),
                    "gla_top1": metrics.topk_accuracy(gla_logits(zs_test, ft_test, lq, log_source_prior=log_ps,
                                                                 zs_temperature=p.temperature), y_test),
                    "distance_to_full": float((lq - full[searched]).abs().mean()),
                    **({} if true_log_prior is None else
                       {"mae_true": float(((lq - lq.mean()) - (true_log_prior - true_log_prior.mean())).abs().mean())}),
                })
    return pd.DataFrame(rows)


def finetune_to_cache(backbone: str, pretrained: str | None, dataset: str, *, loss: str = "ce",
                      recipe: FinetuneConfig = FinetuneConfig(), seed: int = 0,
                      settings: ProtocolSettings = ProtocolSettings(), config: RunConfig = RunConfig()):
    """Fine-tune on ``dataset``'s train split into the cache the protocols read.

    The checkpoint lands where :func:`run_many_shot` (``loss="ce"``) and
    :func:`run_long_tail` (``"ce"`` and ``"la"``) look for it with the same recipe, seed and
    templates, so a multi-GPU run (``torchrun --nproc_per_node 8 -m gla finetune ...``)
    followed by ``gla run ...`` with the same options reuses it. ``recipe.batch_size`` is
    the global batch, split over the processes. Returns the checkpoint path (already
    present: nothing is trained).
    """
    if loss not in ("ce", "la"):
        raise ValueError(f"loss: expected 'ce' or 'la', got {loss!r}")
    with distributed_from_env(config.device) as dev:
        config = replace(config, device=dev)
        bb = config.backbone(backbone, pretrained)
        train = config.load(dataset, "train")
        m = Models(bb, train, templates_of(train, settings.templates), config)
        cfg = replace(config.recipe(seeded(recipe, seed)), loss=loss)
        log_ps = log_source_prior(train, dataset, replace(settings, source_prior="counts"))[0] if loss == "la" else None
        m.finetuned(train, cfg, log_source_prior=log_ps)
        return m.finetuned_path(train, cfg)


def compare_protocols(paper: pd.DataFrame, exact: pd.DataFrame, *,
                      by: Sequence[str] = ("backbone", "dataset", "eval_set", "templates", "shots", "method", "alpha"),
                      value: str = "top1") -> pd.DataFrame:
    """The same table under ``protocol="paper"`` and ``"exact"``, side by side.

    The two protocols differ only in how ``q`` is estimated (the official 1000-step
    algorithm, GLA ``trainers/util.py`` L17-48, against the exact optimum of the same
    objective) and how the temperatures are searched (the official regula-falsi search,
    ``search_T``, against a converged one); the models, data and seeds are the same, so
    the difference is what the exact solution changes in the table.

    Parameters
    ----------
    paper, exact : pandas.DataFrame
        Tidy results of one protocol run with each setting (their ``protocol`` column
        must say so when present); rows of the test split are compared.
    by : sequence of str
        Columns that identify a row (those present are used); values are averaged over
        the rest (seeds).
    value : str
        The measure compared.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, ``paper`` and ``exact`` (in percent) and ``difference`` (exact minus
        paper, in points), one row per method present in both.
    """
    for name, df, want in (("paper", paper, "paper"), ("exact", exact, "exact")):
        if "protocol" in df and len(df) and set(df["protocol"].dropna()) - {want}:
            raise ValueError(f"{name}: expected rows of protocol {want!r}, got {sorted(set(df['protocol']))}")
    keys = [c for c in by if c in paper.columns and c in exact.columns]
    if not keys:
        raise ValueError(f"by: none of {list(by)} is a column of both tables")

    def mean(df):
        rows = df[df["split"] == "test"] if "split" in df else df
        return rows.groupby(keys, sort=False, dropna=False)[value].mean() * 100

    both = pd.concat({"paper": mean(paper), "exact": mean(exact)}, axis=1, join="inner").reset_index()
    both["difference"] = both["exact"] - both["paper"]
    return both


def comparison_few_shot_dataset(few_shot_dataset: str | None, dataset: str, prompts) -> str | None:
    """The few-shot task :func:`run_protocol_comparison` compares: ``few_shot_dataset``,
    or for ``"default"`` the many-shot ``dataset`` when ``prompts`` (a
    :class:`gla.protocols.PromptRecipe`) trains on cached image features, else None."""
    if few_shot_dataset == "default":
        return dataset if prompts.trainer == "features" else None
    return few_shot_dataset


def run_protocol_comparison(backbone: str, pretrained: str | None, dataset: str, *, recipe: FinetuneConfig,
                            settings: ProtocolSettings = ProtocolSettings(), config: RunConfig = RunConfig(),
                            few_shot_dataset: str | None = None, shots: Sequence[int] = (1, 16),
                            prompts=None, alphas: Sequence[float] = (0.5,)) -> pd.DataFrame:
    """The many-shot table of ``dataset`` (and, when given, the few-shot rows of
    ``few_shot_dataset``) computed under both protocols on the same models
    (:func:`compare_protocols`).

    ``few_shot_dataset="default"`` compares the few-shot rows of ``dataset`` when prompt
    learning runs on cached image features (``prompts.trainer == "features"``: the world's
    recipe, or the ``exact`` protocol's), and none when it runs through the image encoder
    at every step (GLA's recipe for an open_clip backbone under ``paper``, minutes to hours
    per run; the few-shot chapter has those numbers); see
    :func:`comparison_few_shot_dataset`. None compares none.

    Both runs estimate the prior (a ``prior_file`` in ``settings`` is left out: with a
    given prior both protocols would use it and show no difference), and both use the same
    fine-tuning ``recipe`` and prompt recipe ``prompts``, so they differ only in the
    estimator and the temperature search. Fine-tuned models and features come from the
    cache the chapters share, so the second run costs the prior fits and the searches;
    few-shot prompt learning runs once per protocol (its epoch is chosen by GLA's val
    accuracy, which the search changes).

    Returns
    -------
    pandas.DataFrame
        :func:`compare_protocols`' columns and ``table`` (``"many-shot"`` or
        ``"few-shot"``); the WiSE-FT sweep (one row per alpha, not one model) is left out.
    """
    few_shot_dataset = comparison_few_shot_dataset(few_shot_dataset, dataset, prompts or PromptRecipe())
    base = replace(settings, prior_file=None)
    many = {p: run_many_shot(backbone, pretrained, dataset, recipe=recipe, alphas=alphas,
                             settings=replace(base, protocol=p), config=config).table for p in ("paper", "exact")}
    tables = [compare_protocols(many["paper"], many["exact"]).assign(table="many-shot")]
    if few_shot_dataset:
        few = {p: run_few_shot(backbone, pretrained, [few_shot_dataset], shots=list(shots), seeds=[1],
                               prompts=prompts or PromptRecipe(), settings=replace(base, protocol=p),
                               config=config).table for p in ("paper", "exact")}
        tables.append(compare_protocols(few["paper"], few["exact"]).assign(table="few-shot"))
    out = pd.concat(tables, ignore_index=True)
    return out[out["method"] != Method.WISE_FT_SWEEP].reset_index(drop=True)

