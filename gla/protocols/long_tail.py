"""The long-tail protocol (ImageNet-LT, Places365-LT).

The official code for the long-tail benchmarks was never released: the recipe here is
ours, stated in the rows (``recipe``) and in the book's long-tail chapter.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from ..adjust import debias, gla_logits, interpolate_state_dicts, logit_adjust
from ..finetune import FinetuneConfig
from .common import Models, fit_prior, log_source_prior, recipe_json, run_columns, seeded, state_tag, templates_of
from .config import ProtocolSettings, RunConfig
from .results import LongTailResult, Method, results_frame, score


def run_long_tail(backbone: str, pretrained: str | None, dataset: str, *,
                  settings: ProtocolSettings = ProtocolSettings(), recipe: FinetuneConfig = FinetuneConfig(),
                  seed: int = 0, config: RunConfig = RunConfig()) -> LongTailResult:
    """The long-tail protocol: zero-shot, its debiased form, fine-tuned with cross-entropy
    (CE), CE with post-hoc logit adjustment (CE - log p_s), fine-tuned with the
    logit-adjusted loss (LA loss), WiSE-FT (alpha 0.5, CE model), and GLA (zero-shot + CE
    model, both priors removed). Many / medium / few / all by training counts (mean of
    per-class accuracies, the LT benchmarks' convention).

    Parameters are those of :func:`gla.protocols.run_many_shot`; the source prior is always
    the training counts (the point of a long-tailed training set).

    Returns
    -------
    LongTailResult
        ``table``: the tidy rows; ``prior``, ``log_source_prior`` and ``train_counts``:
        what the models remove and what the groups are cut by.
    """
    settings = replace(settings, source_prior="counts")
    recipe = config.recipe(seeded(recipe, seed))
    bb = config.backbone(backbone, pretrained)
    train, val, test = (config.load(dataset, s) for s in ("train", "val", "test"))
    log_ps, ps_kind = log_source_prior(train, dataset, settings)
    m = Models(bb, train, templates_of(train, settings.templates), config)
    ft_ce = m.finetuned(train, recipe)
    ft_la = m.finetuned(train, replace(recipe, loss="la"), log_source_prior=log_ps)
    zs_val, zs_test = m.zs_outputs(val), m.zs_outputs(test)
    prior = fit_prior(zs_val, settings)
    ce = m.outputs(ft_ce, test, f"ft-{state_tag(ft_ce)}").logits
    la = m.outputs(ft_la, test, f"ft-{state_tag(ft_la)}").logits
    wise = replace_weights(ft_ce, m.zero_shot.state_dict(), ft_ce.state_dict(), 0.5)
    wise_logits = m.outputs(wise, test, f"wise-0.5-{state_tag(ft_ce)}").logits
    base = run_columns(backbone, pretrained, dataset, settings, shots="all", seed=seed, eval_set=dataset,
                       source_prior=ps_kind, recipe=recipe_json(recipe, config), **prior.columns())
    models = {
        Method.ZERO_SHOT: (zs_test.logits, None), Method.DEBIASED: (debias(zs_test.logits, prior.log_prior), None),
        Method.FINE_TUNED_CE: (ce, None), Method.FINE_TUNED_CE_ADJUSTED: (logit_adjust(ce, log_ps), None),
        Method.FINE_TUNED_LA_LOSS: (la, None), Method.WISE_FT: (wise_logits, 0.5),
        Method.GLA: (gla_logits(zs_test.logits, ce, prior.log_prior, log_source_prior=log_ps), None),
    }
    counts = train.class_counts()
    table = results_frame([score(base, k, "test", z, test.labels, train_counts=counts, alpha=a)
                           for k, (z, a) in models.items()])
    return LongTailResult(table, prior, log_ps, counts)


def replace_weights(model, sd0, sd1, alpha: float):
    """A copy of ``model`` with the WiSE-FT interpolation of two state dicts loaded."""
    wise = copy.deepcopy(model)
    wise.load_state_dict(interpolate_state_dicts(sd0, sd1, alpha))
    return wise
