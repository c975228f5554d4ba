"""The many-shot protocol: the paper's ImageNet table and its distribution shifts."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from ..adjust import debias, ensemble_logits, gla_logits, interpolate_state_dicts
from ..data import project_labels, project_log_prior, project_logits
from ..finetune import FinetuneConfig
from .common import (
    Models,
    Outputs,
    choose_alpha,
    fit_prior,
    log_source_prior,
    recipe_json,
    run_columns,
    seeded,
    state_tag,
    templates_of,
)
from .config import ProtocolSettings, RunConfig
from .results import EvalOutputs, ManyShotOutputs, ManyShotResult, Method, results_frame, score

DEFAULT_ALPHAS = tuple(i / 10 for i in range(11))


def run_many_shot(backbone: str, pretrained: str | None, dataset: str, *, shifted: Sequence[str] = (),
                  settings: ProtocolSettings = ProtocolSettings(), recipe: FinetuneConfig = FinetuneConfig(),
                  alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0, finetuned: str | None = None,
                  config: RunConfig = RunConfig()) -> ManyShotResult:
    """The many-shot protocol (the paper's ImageNet table and distribution shifts).

    Models: zero-shot, debiased zero-shot (``f_zs - log q``), end-to-end fine-tuned
    (WiSE-FT's recipe), WiSE-FT at alpha 0.5 and at the alpha chosen on val, the output
    ensemble, and GLA (``f_zs + f_ft - log q - log p_s``). Rows for ``test`` and each
    shifted test set (logits projected onto its classes), and a WiSE-FT sweep over
    ``alphas`` on val and test. Head / medium / tail by the prior (estimated on val, or
    ``settings.prior_file``), as in the paper's grouping.

    Parameters
    ----------
    backbone, pretrained : str
        An open_clip model name (or a registered provider's, such as the world's) and a
        pretrained tag or checkpoint file.
    dataset : str
        A registered dataset with ``train``, ``val`` and ``test`` splits.
    shifted : sequence of str
        Test sets evaluated with the same models (ImageNet-V2, -R, ...).
    settings : ProtocolSettings
        The procedure (``paper`` or ``exact``, templates, source prior, a given prior).
    recipe : FinetuneConfig
        The fine-tuning recipe; ``seed`` replaces its seed.
    alphas : sequence of float
        WiSE-FT mixing weights swept on val (the best is chosen there) and reported on test.
    seed : int
        Seeds fine-tuning (part of the fine-tuning cache key).
    finetuned : str, optional
        A fine-tuned model file to evaluate instead of fine-tuning (this project's
        checkpoint, a state dict, or a WiSE-FT checkpoint, e.g. the released ViT-B/16 one
        the official many-shot code evaluates); the rows' ``recipe`` then names the file.
    config : RunConfig
        Where and how to run.

    Returns
    -------
    ManyShotResult
        ``table``: the tidy rows; ``outputs``: per-sample logits of every method.
    """
    recipe = config.recipe(seeded(recipe, seed))
    bb = config.backbone(backbone, pretrained)
    train, val, test = (config.load(dataset, s) for s in ("train", "val", "test"))
    others = [(s, config.load(s, "test")) for s in shifted]
    m = Models(bb, train, templates_of(train, settings.templates), config)
    ft = m.given(finetuned) if finetuned else m.finetuned(train, recipe)
    zs_val, zs_test = m.zs_outputs(val), m.zs_outputs(test)
    prior = fit_prior(zs_val, settings)
    log_q = prior.log_prior
    log_ps, ps_kind = log_source_prior(train, dataset, settings)
    base = run_columns(backbone, pretrained, dataset, settings, shots="all", seed=seed, source_prior=ps_kind,
                       recipe=(f'{{"finetuned": "{Path(finetuned).name}"}}' if finetuned
                               else recipe_json(recipe, config)), **prior.columns())
    sd0, sd1 = m.zero_shot.state_dict(), ft.state_dict()
    ft_tag = f"ft-{state_tag(ft)}"
    wise = copy.deepcopy(ft)

    def wise_outputs(alpha: float, data) -> Outputs:
        wise.load_state_dict(interpolate_state_dicts(sd0, sd1, alpha))
        return m.outputs(wise, data, f"wise-{alpha}-{ft_tag}")

    sweep_val = {a: wise_outputs(a, val) for a in alphas}
    best_alpha = choose_alpha(sweep_val)
    rows, eval_sets = [], {}
    for name, data in [(dataset, test)] + others:
        zs = zs_test if data is test else m.zs_outputs(data)
        fto = m.outputs(ft, data, ft_tag)
        subset = data.class_subset
        labels = project_labels(data.labels, subset)
        lq = project_log_prior(log_q, subset)
        split = "test" if name == dataset else f"test:{name}"
        models = {
            Method.ZERO_SHOT: (zs.logits, None),
            Method.DEBIASED: (debias(zs.logits, log_q), None),
            Method.FINE_TUNED: (fto.logits, None),
            Method.WISE_FT: (wise_outputs(0.5, data).logits, 0.5),
            Method.WISE_FT_VAL: (wise_outputs(best_alpha, data).logits, best_alpha),
            Method.ENSEMBLE: (ensemble_logits(zs.logits, fto.logits), None),
            Method.GLA: (gla_logits(zs.logits, fto.logits, log_q, log_source_prior=log_ps), None),
        }
        projected = {k: project_logits(z.float(), subset) for k, (z, _) in models.items()}
        eval_sets[name] = EvalOutputs(name, split, labels, projected, lq)
        for method, (_, alpha) in models.items():
            rows.append(score({**base, "eval_set": name}, method, split, projected[method], labels, group_prior=lq,
                              alpha=alpha))
    for a in alphas:
        rows.append(score({**base, "eval_set": dataset}, Method.WISE_FT_SWEEP, "val", sweep_val[a].logits,
                          val.labels, alpha=a))
        rows.append(score({**base, "eval_set": dataset}, Method.WISE_FT_SWEEP, "test", wise_outputs(a, test).logits,
                          test.labels, alpha=a))
    outputs = ManyShotOutputs(
        dataset=dataset, classnames=list(train.classnames), train_counts=train.class_counts(), prior=prior,
        log_source_prior=log_ps, val_labels=val.labels,
        val_logits={Method.ZERO_SHOT: zs_val.logits, Method.FINE_TUNED: m.outputs(ft, val, ft_tag).logits},
        eval_sets=eval_sets, alpha=best_alpha)
    return ManyShotResult(results_frame(rows), outputs)
