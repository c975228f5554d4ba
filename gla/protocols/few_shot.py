"""The few-shot protocol: zero-shot, linear probe, CoOp, the paper's prompt tuning, their
ensemble with the zero-shot model, and GLA ``f_pt / T_ft + f_zs / T_zs - log q``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..adjust import gla_logits
from ..data import (
    LabelledImages,
    dataset_entry,
    few_shot_indices,
    project_labels,
    project_logits,
    prompt_tuning_template,
    sample_few_shot,
)
from ..features import dataset_identity
from ..finetune import linear_probe
from ..pickles import cached_few_shot_split, preprocessed_train_order
from ..prompt_learning import CoOp, PromptResiduals, gla_val_selector, train_prompts, train_prompts_end_to_end
from ..zeroshot import zero_shot_logits
from .common import (
    THRESHOLD_FINE_TUNED,
    THRESHOLD_ZERO_SHOT,
    Outputs,
    cached_head,
    choose_on,
    features,
    fit_prior,
    fit_temperature,
    run_columns,
    templates_of,
)
from .config import ProtocolSettings, RunConfig
from .results import FewShotFit, FewShotResult, Method, results_frame, score

# Fewer shots than this: the prior and T_zs are estimated on the few-shot train + val
# images; otherwise on val only (the official few-shot code).
ESTIMATE_ON_TRAIN_BELOW = 20


@dataclass(frozen=True)
class PromptRecipe:
    """How the few-shot prompt learners (CoOp and prompt tuning) train.

    Parameters
    ----------
    trainer : {"features", "images"}
        ``features``: on cached image features (no augmentation; AdamW, full batch): fast,
        what the miniature world's book uses. ``images``: through the frozen image encoder
        on augmented images (random resized crop and flip), SGD with a cosine schedule and
        one warm-up epoch, fp16 on CUDA: the official recipe (:data:`PAPER_PROMPTS`).
    epochs, lr, batch_size :
        Optimisation (``batch_size=None``: full batch, ``features`` only).
    coop_n_ctx : int
        CoOp's context vectors (16 in CoOp's default, randomly initialised, class last).
    select : {"gla", "own"}
        Model selection of prompt tuning: the epoch with the best GLA accuracy on val (the
        official rule) or with the prompt-tuned model's own val accuracy.
    """

    trainer: str = "features"
    epochs: int = 40
    lr: float = 2e-3
    batch_size: int | None = None
    coop_n_ctx: int = 16
    select: str = "gla"

    def __post_init__(self) -> None:
        if self.trainer not in ("features", "images"):
            raise ValueError(f"trainer: expected 'features' or 'images', got {self.trainer!r}")
        if self.select not in ("gla", "own"):
            raise ValueError(f"select: expected 'gla' or 'own', got {self.select!r}")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs: expected a positive number of epochs, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size: expected a positive batch size or None (full batch), got {self.batch_size}")


# The official few-shot recipe (GLA.FS.public configs, rn50_ep50_shot*.yaml).
PAPER_PROMPTS = PromptRecipe(trainer="images", epochs=50, lr=4e-4, batch_size=512)


def check_draws(shots: Sequence[int], seeds: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``shots`` are positive numbers of images per class and
    ``seeds`` whole numbers, at least one of each (the draws of :func:`run_few_shot`)."""
    if not shots or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in shots):
        raise ValueError(f"shots: expected positive numbers of images per class, got {list(shots)}")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds: expected whole numbers, got {list(seeds)}")


def run_few_shot(backbone: str, pretrained: str | None, datasets: Sequence[str], *,
                 shots: Sequence[int] = (1, 2, 4, 8, 16), seeds: Sequence[int] = (1, 2, 3),
                 settings: ProtocolSettings = ProtocolSettings(), prompts: PromptRecipe = PromptRecipe(),
                 shifted: Mapping[str, Sequence[str]] | None = None, shifted_shots: Sequence[int] | None = None,
                 config: RunConfig = RunConfig()) -> FewShotResult:
    """The few-shot protocol.

    For every dataset, number of shots and seed: the k-shot train and val sets are drawn
    as the reference code draws them (Dassl's order; GLA's split for ImageNet; a cached
    split file when present); ``q`` and ``T_zs`` are estimated on train + val below 20
    shots and on val otherwise; prompt tuning keeps the epoch with the best GLA accuracy
    on val; ``T_ft`` is searched on val.

    Parameters
    ----------
    backbone, pretrained : str
    datasets : sequence of str
    shots, seeds : sequences of int
    settings : ProtocolSettings
    prompts : PromptRecipe
    shifted : mapping, optional
        Dataset -> shifted test sets on which the models trained with ``shifted_shots``
        (default: the most shots) are also evaluated (rows with ``split == "test:<set>"``).
    config : RunConfig

    Returns
    -------
    FewShotResult
        ``table``: the tidy rows; ``fits``: per (dataset, shots, seed), the prior, both
        temperatures and the prompt-tuning epoch behind them.
    """
    check_draws(shots, seeds)
    shifted = dict(shifted or {})
    unknown = sorted(set(shifted) - set(datasets))
    if unknown:
        raise ValueError(f"shifted: {unknown} are not among the datasets {list(datasets)}")
    run = _Run(config.backbone(backbone, pretrained), backbone, pretrained, settings, prompts,
               frozenset(shifted_shots or [max(shots)]), config)
    rows, fits = [], {}
    for name in datasets:
        pool = _Pool.load(run, name, shots, seeds, shifted.get(name, ()))
        for k in shots:
            for seed in seeds:
                draw_rows, fits[(name, k, seed)] = _one_draw(run, pool, k, seed)
                rows += draw_rows
    return FewShotResult(results_frame(rows), fits)


@dataclass(frozen=True)
class _Run:
    """What every dataset of one few-shot run shares."""

    bb: Any  # gla.backbones.Backbone
    backbone: str
    pretrained: str | None
    settings: ProtocolSettings
    prompts: PromptRecipe
    eval_shots: frozenset[int]  # shots whose models are also evaluated on the shifted sets
    config: RunConfig


@dataclass
class _Pool:
    """One dataset: its splits, every draw, and what all draws share (features, head, test logits)."""

    name: str
    full: dict  # "train" (the pool drawn from), "val", "test"
    draws: dict  # (shots, seed) -> (train indices, val indices, how)
    features: torch.Tensor  # of the drawn images only, row where[i] for global index i
    where: torch.Tensor
    labels: torch.Tensor  # train pool then val, by global index
    head: torch.Tensor
    template: str
    test_features: torch.Tensor
    zs_test: torch.Tensor
    shifted: list  # (name, data, features) of each shifted test set

    @classmethod
    def load(cls, run: _Run, name: str, shots: Sequence[int], seeds: Sequence[int], shifted: Sequence[str]) -> _Pool:
        config, bb = run.config, run.bb
        entry = dataset_entry(name)
        pool_split = "train_full" if "train_full" in entry.splits else "train"  # GLA draws ImageNet from all of train
        full = {"train": config.load(name, pool_split), "val": config.load(name, "val"),
                "test": config.load(name, "test")}
        draws = {(k, seed): _draw(name, entry, full, k, seed, config) for k in shots for seed in seeds}
        # Features of the drawn images only (ImageNet's pool is 1.28M images), cached by their exact list.
        used = sorted({int(i) for tr, va, _ in draws.values() for i in torch.cat([tr, va]).tolist()})
        drawn = _pick(full, torch.tensor(used))
        where = torch.full((len(full["train"]) + len(full["val"]),), -1, dtype=torch.long)
        where[torch.tensor(used)] = torch.arange(len(used))
        pool_feats = features(bb, drawn, config)
        feats_test = features(bb, full["test"], config)
        head = cached_head(bb, full["train"].classnames, templates_of(full["train"], run.settings.templates), config)
        template = prompt_tuning_template(name)
        zs_test = zero_shot_logits(feats_test, head, bb.logit_scale)
        labels_all = torch.cat([full["train"].labels, full["val"].labels])
        extra_sets = [(sname, sdata, features(bb, sdata, config)) for sname, sdata in
                      ((s, config.load(s, "test")) for s in shifted)]
        return cls(name, full, draws, pool_feats, where, labels_all, head, template, feats_test, zs_test, extra_sets)

    @property
    def classnames(self) -> list[str]:
        return self.full["train"].classnames

    def items(self, index: torch.Tensor) -> tuple[_Items, torch.Tensor]:
        """Drawn items by global index, with their features."""
        return _Items(index, self.labels[index]), self.features[self.where[index]]


def _one_draw(run: _Run, pool: _Pool, k: int, seed: int) -> tuple[list[dict], FewShotFit]:
    """The rows of one (shots, seed) draw: the prior and ``T_zs`` first (the official rule
    selects prompt tuning's epoch by GLA on val), then every model, then ``T_ft``."""
    settings, prompts, bb = run.settings, run.prompts, run.bb
    torch.manual_seed(seed)
    itr, iva, how = pool.draws[(k, seed)]
    (tr, f_tr), (va, f_va) = pool.items(itr), pool.items(iva)
    y_test = pool.full["test"].labels
    base = run_columns(run.backbone, run.pretrained, pool.name, settings, shots=k, seed=seed, eval_set=pool.name,
                       sampling=how, source_prior="uniform", recipe=json.dumps(asdict(prompts), sort_keys=True))
    below = k < ESTIMATE_ON_TRAIN_BELOW
    zs_est = Outputs(zero_shot_logits(torch.cat([f_tr, f_va]) if below else f_va, pool.head, bb.logit_scale),
                     torch.cat([tr.labels, va.labels]) if below else va.labels, "train+val" if below else "val")
    t_zs = fit_temperature(zs_est, settings, threshold=THRESHOLD_ZERO_SHOT)
    prior = fit_prior(zs_est, settings, temperature=t_zs.temperature, temperature_converged=t_zs.converged)
    zs_val = zero_shot_logits(f_va, pool.head, bb.logit_scale)
    base.update(prior.columns())
    rows = [score(base, Method.ZERO_SHOT, "test", pool.zs_test, y_test)]
    probe, _ = linear_probe(f_tr, tr.labels, pool.head.T * bb.logit_scale, val_features=f_va, val_labels=va.labels,
                            seed=seed)
    with torch.no_grad():
        rows.append(score(base, Method.LINEAR_PROBE, "test", probe(pool.test_features), y_test))
    choose_on("val", "the prompt-tuning epoch")
    select = (gla_val_selector(zs_val, va.labels, prior.log_prior, t_zs.temperature,
                               temperature_method=settings.temperature_method)
              if prompts.select == "gla" else None)
    draw = _Draw(tr, va, f_tr, f_va, seed)
    coop, coop_hist = _train(run, pool, CoOp(bb, pool.classnames, n_ctx=prompts.coop_n_ctx, seed=seed), draw, None)
    pt, pt_hist = _train(run, pool, PromptResiduals(bb, pool.classnames, pool.template), draw, select)
    with torch.no_grad():
        coop_test, pt_val, pt_test = coop(pool.test_features), pt(f_va), pt(pool.test_features)
    rows.append(score(base, Method.COOP, "test", coop_test, y_test, prompt_epoch=_best_epoch(coop_hist)))
    rows.append(score(base, Method.PROMPT_TUNING, "test", pt_test, y_test, prompt_epoch=_best_epoch(pt_hist)))
    t_ft = fit_temperature(Outputs(pt_val, va.labels, "val"), settings, threshold=THRESHOLD_FINE_TUNED)
    fit = FewShotFit(prior, t_zs, t_ft, _best_epoch(pt_hist))
    temps = fit.columns()
    rows.append(score(base, Method.ENSEMBLE, "test", pt_test / t_ft.temperature + pool.zs_test / t_zs.temperature,
                      y_test, **temps))
    rows.append(score(base, Method.GLA, "test", gla_logits(pool.zs_test, pt_test, prior.log_prior,
                                                          zs_temperature=t_zs.temperature,
                                                          ft_temperature=t_ft.temperature), y_test, **temps))
    if k in run.eval_shots:
        learners = {Method.LINEAR_PROBE: probe, Method.COOP: coop, Method.PROMPT_TUNING: pt}
        rows += _shifted_rows(run, pool, base, learners, fit)
    return rows, fit


def _shifted_rows(run: _Run, pool: _Pool, base: dict, learners: dict, fit: FewShotFit) -> list[dict]:
    """Rows of the draw's models (``learners``: method -> a model of image features) on each
    shifted test set, logits projected onto its classes."""
    rows, bb, pt = [], run.bb, learners[Method.PROMPT_TUNING]
    t_zs, t_ft = fit.t_zs.temperature, fit.t_ft.temperature
    temps = fit.columns()
    for sname, sdata, sfeat in pool.shifted:
        sub = sdata.class_subset
        ys = project_labels(sdata.labels, sub)
        zs_s = zero_shot_logits(sfeat, pool.head, bb.logit_scale)
        with torch.no_grad():
            pt_s = pt(sfeat)
            models = {Method.ZERO_SHOT: zs_s, Method.LINEAR_PROBE: learners[Method.LINEAR_PROBE](sfeat),
                      Method.COOP: learners[Method.COOP](sfeat), Method.PROMPT_TUNING: pt_s,
                      Method.ENSEMBLE: pt_s / t_ft + zs_s / t_zs,
                      Method.GLA: gla_logits(zs_s, pt_s, fit.prior.log_prior, zs_temperature=t_zs,
                                             ft_temperature=t_ft)}
        for method, z in models.items():
            extra = temps if method in (Method.ENSEMBLE, Method.GLA) else {}
            rows.append(score({**base, "eval_set": sname}, method, f"test:{sname}", project_logits(z.float(), sub),
                              ys, **extra))
    return rows


@dataclass(frozen=True)
class _Draw:
    """One draw's train and val items, their features, and the seed."""

    train: _Items
    val: _Items
    train_features: torch.Tensor
    val_features: torch.Tensor
    seed: int


@dataclass(frozen=True)
class _Items:
    """Few-shot items by global index (train pool first, then val) with their labels."""

    index: torch.Tensor
    labels: torch.Tensor


def _indexed(data, offset: int):
    """The same labels with each item replaced by its global index (for sampling by index)."""
    return LabelledImages(torch.arange(len(data)) + offset, data.labels, data.classnames, data.templates,
                          name=data.name, split=data.split)


def _draw(name, entry, full, k, seed, config):
    """Global indices of one few-shot draw (train, val) and how it was drawn: a cached split
    file of CoOp or GLA when present, else the reference code's sampler."""
    n_train = len(full["train"])
    if entry.few_shot == "coop":
        tr, va, how = sample_few_shot(name, _indexed(full["train"], 0), _indexed(full["val"], n_train), k, seed,
                                      root=config.data_root, cached=_cached_split(full))
        return torch.as_tensor(tr.images).long(), torch.as_tensor(va.images).long(), how
    # GLA's ImageNet split draws train and val from the train pool and may match ImageNet-LT's
    # val list by path: sample the real items and map them back by path.
    tr, va, how = sample_few_shot(name, full["train"], full["val"], k, seed, root=config.data_root,
                                  cached=_cached_split(full))
    index = {p: i for i, p in enumerate(full["train"].images)}
    return (torch.tensor([index[p] for p in tr.images]), torch.tensor([index[p] for p in va.images]), how)


def _cached_split(full):
    """The hook that reads the reference code's cached files next to the dataset's images.

    First CoOp's / GLA's cached draw ``split_fewshot/shot_{k}-seed_{s}.pkl`` (read with
    :func:`gla.pickles.cached_few_shot_split`). Failing that, for GLA's ImageNet split
    (``few_shot="gla-imagenet"``), GLA's cached listing of the train folder
    ``imagenet/preprocessed.pkl`` (BeierZhu/GLA ``GLA.FS.public/datasets/imagenet.py``): the
    split is drawn as GLA draws it, on the train set put in that file's order
    (:func:`_preprocessed_imagenet_draw`). Without either file the hook gives ``None`` and
    the sampler draws on our (sorted) order.
    """
    def lookup(*, name, train, val, shots, seed, root):
        paths_tr, paths_va = full["train"].images, full["val"].images
        if isinstance(paths_tr, torch.Tensor) or not len(paths_tr):
            return None  # rendered images: no files, no cached split
        image_root = Path(os.path.commonpath([*paths_tr, *paths_va]))
        candidates = [image_root, *image_root.parents][:4]
        dataset_dir = next((d for d in candidates if (d / "split_fewshot").is_dir()), None)
        gla_imagenet = dataset_entry(name).few_shot == "gla-imagenet"
        if dataset_dir is not None:
            # GLA's ImageNet files draw val from the train pool too (its datasets/imagenet.py).
            val_pool = full["train"] if gla_imagenet else full["val"]
            got = cached_few_shot_split(dataset_dir, shots, seed, paths_tr, val_pool.images, image_root,
                                        train_labels=full["train"].labels.tolist(),
                                        val_labels=val_pool.labels.tolist())
            if got is not None:
                tr_idx, va_idx = got
                how = f"cached:{dataset_dir.name}/split_fewshot/shot_{shots}-seed_{seed}.pkl"
                if gla_imagenet and va_idx is not None:
                    return train.subset(tr_idx), train.subset(va_idx, split="val"), how
                if not gla_imagenet:  # CoOp's files; a train-only one gets its val drawn as CoOp does
                    va_idx = few_shot_indices(val.labels, min(shots, 4), seed) if va_idx is None else va_idx
                    return train.subset(tr_idx), val.subset(va_idx), how
                # A train-only ImageNet file (CoOp's) has no val drawn by GLA's rule: not GLA's split.
        if gla_imagenet:
            return _preprocessed_imagenet_draw(name, train, shots, seed, root, candidates)
        return None
    return lookup


def _preprocessed_imagenet_draw(name, train, shots, seed, root, candidates):
    """GLA's ImageNet few-shot draw on the train order of GLA's ``preprocessed.pkl``, if present.

    GLA (BeierZhu/GLA ``GLA.FS.public/datasets/imagenet.py``) lists ``images/train/<wnid>/``
    with ``os.listdir`` (unsorted within a folder), pickles the list as
    ``imagenet/preprocessed.pkl`` and draws its few-shot split from that list; our loader
    sorts. So the pickle's train records are matched one to one to ``train`` by their path
    below ``imagenet/images`` (``train/<wnid>/<file>``; labels must agree), ``train`` is
    put in the pickle's order and :func:`gla.data.sampling.imagenet_few_shot_split` draws
    on it with the usual seed semantics (ImageNet-LT's val list for ``shots >= 32``).

    Parameters
    ----------
    name : str
        The registry name (its sampler is ``"gla-imagenet"``).
    train : LabelledImages
        The full official ImageNet train set (``train_full``).
    shots, seed : int
        k and the run's seed.
    root : path or None
        Data root, for ImageNet-LT's val list when ``shots >= 32``.
    candidates : list of Path
        Folders that may hold ``preprocessed.pkl`` next to ``images/`` (the images' common
        folder and its parents).

    Returns
    -------
    (LabelledImages, LabelledImages, str) or None
        Train, val (items of ``train``) and ``how``, e.g.
        ``"gla-imagenet:order from imagenet/preprocessed.pkl"``; ``None`` when no candidate
        holds ``preprocessed.pkl`` beside an ``images/`` folder holding ``train``'s images,
        or when ``train`` is the many-shot split (the sampler then explains why it refuses it).

    Raises
    ------
    ValueError
        The pickle lists other images than ``train`` or other labels (see
        :func:`gla.pickles.match_listing`).
    """
    if isinstance(train.images, torch.Tensor) or not len(train.images) or train.meta.get("holdout_per_class", 0):
        return None
    first = Path(train.images[0])
    dataset_dir = next((d for d in candidates if (d / "preprocessed.pkl").is_file() and (d / "images").is_dir()
                        and (d / "images") in first.parents), None)
    if dataset_dir is None:
        return None
    path = dataset_dir / "preprocessed.pkl"
    stat = path.stat()  # the pickle holds 1.28M records and the protocol draws once per (shots, seed): read once
    key = (str(path), stat.st_size, stat.st_mtime_ns, dataset_identity(train)["items"])
    if _PREPROCESSED_ORDER.get("key") != key:
        _PREPROCESSED_ORDER.clear()
        order = preprocessed_train_order(dataset_dir, train.images, dataset_dir / "images",
                                         train_labels=train.labels.tolist())
        _PREPROCESSED_ORDER.update(key=key, order=order)
    listed = train.subset(_PREPROCESSED_ORDER["order"])
    tr, va, how = sample_few_shot(name, listed, None, shots, seed, root=root)  # GLA's rule, on GLA's order
    return tr, va, f"{how}:order from {dataset_dir.name}/preprocessed.pkl"


_PREPROCESSED_ORDER: dict = {}  # the last preprocessed.pkl's order, by file (size, mtime) and train set


def _pick(full, index: torch.Tensor):
    """The image dataset of global indices (train pool items, then val items)."""

    n_train = len(full["train"])
    parts = []
    for name, lo in (("train", 0), ("val", n_train)):
        sel = index[(index >= lo) & (index < lo + len(full[name]))] - lo
        if len(sel):
            parts.append(full[name].subset(sel))
    if len(parts) == 1:
        return parts[0]
    a, b = parts
    images = torch.cat([a.images, b.images]) if isinstance(a.images, torch.Tensor) else list(a.images) + list(b.images)
    return type(a)(images, torch.cat([a.labels, b.labels]), a.classnames, a.templates, name=a.name,
                   split=f"{a.split}+{b.split}", class_subset=a.class_subset, meta=a.meta, crop_border=a.crop_border)


def _best_epoch(history: list[dict]) -> int | None:
    for h in reversed(history):
        if "best_epoch" in h:
            return int(h["best_epoch"])
    return None


def _train(run: _Run, pool: _Pool, learner, draw: _Draw, select):
    """Train a prompt learner on one draw with the run's recipe (end to end on images, or on
    the cached features); returns the learner and its history."""
    prompts = run.prompts
    if prompts.trainer == "images":
        return train_prompts_end_to_end(learner, run.bb, _pick(pool.full, draw.train.index),
                                        _pick(pool.full, draw.val.index), epochs=prompts.epochs, lr=prompts.lr,
                                        batch_size=prompts.batch_size or 32,
                                        warmup_epochs=min(1, prompts.epochs - 1),  # 1 epoch (smoke): no warm-up
                                        select=select, seed=draw.seed, progress=run.config.progress)
    return train_prompts(learner, draw.train_features, draw.train.labels, draw.val_features, draw.val.labels,
                         epochs=prompts.epochs, lr=prompts.lr, batch_size=prompts.batch_size, seed=draw.seed,
                         select=select)
