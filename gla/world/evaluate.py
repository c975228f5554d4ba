"""Measure where a pretrained world CLIP sits: zero-shot strength, label bias, the estimator.

These are properties of the world and its models (the design rule of the world: judge the
regime by them, never by how GLA scores).
"""

from __future__ import annotations

import os
from dataclasses import asdict

import torch

from .. import metrics
from ..adjust import debias
from ..backbones import load_backbone
from ..data import project_labels, project_log_prior, project_logits
from ..metrics import linear_correlation, rank_correlation  # noqa: F401  (re-exported)
from ..prior import estimate_log_prior
from ..zeroshot import image_features, zero_shot_head, zero_shot_logits
from .concepts import World, WorldConfig
from .presets import world_finetune_config
from .tasks import TASKS, make_split


def zero_shot_report(checkpoint: str | os.PathLike, world_cfg: WorldConfig = WorldConfig(), *,
                     task: str = "world-main", seed: int = 0, model: str = "gla-world-tiny",
                     with_prior: bool = False) -> dict:
    """Zero-shot accuracy (top-1 and head / medium / tail by the *true* prior), debiased
    zero-shot (prior estimated on the val split), and how the estimate relates to the
    true log prior. Returns one flat record (with ``with_prior`` also the tensors
    ``estimated_log_prior`` and ``true_log_prior``)."""
    world = World(world_cfg)
    bb = load_backbone(model, pretrained=checkpoint)
    spec = TASKS[task]
    test = make_split(world, task, "test", seed=seed)
    val = make_split(world, spec.parent or task, "val", seed=seed)  # shifted sets: the parent's val
    head = zero_shot_head(bb, test.classnames, spec.templates)
    scale = bb.logit_scale
    z_test = zero_shot_logits(image_features(bb, test.images), head, scale)
    z_val = zero_shot_logits(image_features(bb, val.images), head, scale)
    base = TASKS[spec.parent] if spec.parent else spec
    true_lp = world.log_prior if base.classes == "concepts" and base.concept_subset is None else None
    log_q = estimate_log_prior(z_val, val.labels)
    rec = {"task": task, **{f"world_{k}": v for k, v in asdict(world_cfg).items()}, "logit_scale": scale}
    groups_lp = true_lp if true_lp is not None else log_q
    keep = test.class_subset
    for name, logits in [("zero_shot", z_test), ("debiased", debias(z_test, log_q))]:
        if keep is not None:  # a shifted set covering some classes: score on those classes
            res = metrics.accuracy_by_prior_group(project_logits(logits, keep), project_labels(test.labels, keep),
                                                  project_log_prior(groups_lp, keep))
        else:
            res = metrics.accuracy_by_prior_group(logits, test.labels, groups_lp)
        rec.update({f"{name}_{k}": v for k, v in res.items()})
    if true_lp is not None:
        rec["spearman_estimated_true"] = rank_correlation(log_q, true_lp)
        rec["pearson_estimated_true"] = linear_correlation(log_q, true_lp)
        pred_share = torch.bincount(z_test.argmax(1), minlength=len(test.classnames)).double() + 0.5
        rec["spearman_predicted_share_true"] = rank_correlation(torch.log(pred_share), true_lp)
        rec["spearman_estimated_predicted_share"] = rank_correlation(log_q, torch.log(pred_share))
    timing = bb.metadata.get("timing", {})
    rec.update({f"pretrain_{k}": v for k, v in timing.items()})
    if with_prior:
        rec["estimated_log_prior"], rec["true_log_prior"] = log_q, true_lp
    return rec




def _sweep_run(wcfg: WorldConfig, recipe, cache_dir: str) -> dict:
    """One world of a sweep: pretrain (cached; sets the recipe's thread count) and measure;
    runs in a worker process."""
    from .pretrain import pretrain

    ckpt = pretrain(wcfg, recipe, cache_dir=cache_dir, progress=False)
    rec = zero_shot_report(ckpt, wcfg, with_prior=True)
    lq, true_lp = rec.pop("estimated_log_prior"), rec.pop("true_log_prior")
    x = true_lp - true_lp.mean()
    rec["bias_slope"] = float(((lq - lq.mean()) * x).sum() / (x * x).sum())
    rec["head_minus_tail"] = rec["zero_shot_head"] - rec["zero_shot_tail"]
    rec["steps"], rec["batch_size"] = recipe.steps, recipe.batch_size
    return rec


def zipf_sweep(exponents, seeds, recipe=None, *, cache_dir: str | os.PathLike = ".gla_cache",
               base: WorldConfig = WorldConfig(), workers: int = 2, progress: bool = True):
    """Pretrain a world per exponent of the frequency law and seed (cached; every other
    setting, the offset included, from ``base``) and measure each with
    :func:`zero_shot_report`. Returns a tidy DataFrame, one row per (exponent, seed), with
    ``head_minus_tail`` (zero-shot, by the true prior) and ``bias_slope`` (the slope of
    the estimated on the true log prior: 1 would mean the model carries the whole prior).

    Worlds are independent, so ``workers`` processes (one thread each, the recipe's
    ``threads``) pretrain them side by side: on two CPU cores two single-threaded runs
    finish about 1.5 times sooner than one two-threaded run after another.
    """
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace
    from multiprocessing import get_context

    import pandas as pd
    from tqdm import tqdm

    from .pretrain import STUDY_PRETRAIN

    recipe = recipe or STUDY_PRETRAIN
    runs = [(replace(base, zipf_exponent=float(e), seed=int(s)), replace(recipe, seed=int(s)))
            for e in exponents for s in seeds]
    if workers <= 1:
        results = [_sweep_run(w, r, str(cache_dir)) for w, r in tqdm(runs, desc="Zipf sweep", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_sweep_run, w, r, str(cache_dir)) for w, r in runs]
            results = [f.result() for f in tqdm(futures, desc="Zipf sweep", disable=not progress)]
    return pd.DataFrame(results)


def finetune_report(checkpoint: str | os.PathLike, world_cfg: WorldConfig = WorldConfig(), *,
                    task: str = "world-main", seed: int = 0, model: str = "gla-world-tiny",
                    recipe=None, progress: bool = False) -> dict:
    """End-to-end fine-tuning and a linear probe on a world task's train split, scored on
    its test split (selection, where any, on val). Returns a flat record."""
    from ..data import LabelledImages
    from ..finetune import ImageClassifier, finetune, linear_probe, predict

    recipe = recipe or world_finetune_config()
    world = World(world_cfg)
    bb = load_backbone(model, pretrained=checkpoint)
    spec = TASKS[task]
    tr, va, te = (make_split(world, task, s, seed=seed) for s in ("train", "val", "test"))
    head = zero_shot_head(bb, te.classnames, spec.templates)
    wrap = lambda s: LabelledImages(s.images, s.labels, s.classnames, spec.templates, transform=bb.preprocess)  # noqa: E731
    f_tr, f_va, f_te = (image_features(bb, s.images) for s in (tr, va, te))
    probe, choice = linear_probe(f_tr, tr.labels, head.T * bb.logit_scale, val_features=f_va, val_labels=va.labels)
    with torch.no_grad():
        lp_acc = metrics.topk_accuracy(probe(f_te), te.labels)
    clf = ImageClassifier(bb.model, head, bb.logit_scale)
    clf, hist = finetune(clf, wrap(tr), recipe, progress=progress)
    logits, labels = predict(clf, wrap(te))
    return {"task": task, "linear_probe": lp_acc, "linear_probe_wd": choice["weight_decay"],
            "finetuned": metrics.topk_accuracy(logits, labels), "finetune_final_loss": hist[-1]["train_loss"]}
