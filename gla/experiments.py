"""Experiment entry points: the paper's many-shot, few-shot and long-tail protocols.

Each function takes a backbone (open_clip name + pretrained tag or path, or the world's
CLIP) and dataset names from :mod:`gla.datasets`, runs every model the paper compares,
and returns a tidy ``pandas.DataFrame`` (one row per method x dataset x split x shots x
seed, metrics as columns) that :func:`save_results` writes as CSV and JSON.

Rule: the test split is never used to estimate the prior, choose a temperature, choose
alpha or choose an epoch. Every such choice goes through :func:`_choose_on`, which raises
if it is handed test data, and the test suite checks each entry point for it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import metrics
from .adjust import debias, ensemble_logits, gla_logits, interpolate_state_dicts, log_prior_from_counts, logit_adjust
from .backbones import Backbone, load_backbone
from .cache import atomic_save, atomic_write_text, cache_key, safe_load
from .datasets import LabelledImages, few_shot_split, load_dataset
from .features import backbone_identity, cached_features, dataset_identity
from .finetune import FinetuneConfig, ImageClassifier, finetune, linear_probe, predict
from .prior import PriorEstimator
from .prompt_learning import CoOp, PromptResiduals, train_prompts
from .real_datasets import project_labels, project_log_prior, project_logits
from .temperature import search_temperature
from .zeroshot import zero_shot_head, zero_shot_logits


@dataclass
class Outputs:
    """Logits of one model on one split, with the labels and the split's name."""

    logits: torch.Tensor
    labels: torch.Tensor
    split: str


class TestSplitUsedError(RuntimeError):
    """Raised when a choice (prior, temperature, alpha, epoch) is handed test data."""


def _choose_on(split: str, what: str) -> None:
    if split == "test" or split.startswith("test"):
        raise TestSplitUsedError(f"{what} must be chosen on training or validation data, not on '{split}'")


def fit_prior(zs: Outputs, **settings: Any) -> PriorEstimator:
    """Estimate the zero-shot prior on non-test outputs."""
    _choose_on(zs.split, "the prior")
    return PriorEstimator(**settings).fit(zs.logits, zs.labels)


def fit_temperature(out: Outputs, fallback: float = 1.0) -> tuple[float, bool]:
    """Confidence-matches-accuracy temperature on non-test outputs.

    Returns ``(T, searched)``; when accuracy is 1 (or at chance) no temperature matches and
    ``fallback`` is returned with ``searched=False``.
    """
    _choose_on(out.split, "a temperature")
    try:
        return search_temperature(out.logits, out.labels), True
    except ValueError:
        return fallback, False


def choose_alpha(candidates: dict[float, Outputs]) -> float:
    """The WiSE-FT mixing weight with the best accuracy on non-test outputs."""
    best, best_acc = None, -1.0
    for a, out in candidates.items():
        _choose_on(out.split, "alpha")
        acc = metrics.topk_accuracy(out.logits, out.labels)
        if acc > best_acc:
            best, best_acc = a, acc
    return best


def save_results(df: pd.DataFrame, out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write a results table as ``<name>.csv`` and ``<name>.json`` (records), atomically."""
    out = Path(out_dir)
    csv = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    js = atomic_write_text(out / f"{name}.json", df.to_json(orient="records", indent=1))
    return csv, js


def _load(name: str, split: str, root, world, extra: dict | None = None) -> LabelledImages:
    """Load a split; world tasks get the world config, real datasets the data root."""
    kw = {"world": world} if name.startswith("world-") else {"root": root}
    return load_dataset(name, split, **kw, **(extra or {}))


def _rows(base: dict, method: str, split: str, logits: torch.Tensor, labels: torch.Tensor,
          group_prior: torch.Tensor | None = None, train_counts: torch.Tensor | None = None, **extra) -> dict:
    row = {**base, "method": method, "split": split, **extra,
           "top1": metrics.topk_accuracy(logits, labels),
           "top5": metrics.topk_accuracy(logits, labels, k=min(5, logits.shape[1]))}
    if group_prior is not None and len(group_prior) >= 3:  # head / medium / tail need three classes
        row.update({k: v for k, v in metrics.accuracy_by_prior_group(logits, labels, group_prior).items()
                    if k != "all"})
    if train_counts is not None:
        g = metrics.accuracy_by_count_group(logits, labels, train_counts)
        row.update({"many": g["many"], "medium": g["medium"], "few": g["few"], "mean_per_class": g["all"]})
    row["ece"] = metrics.expected_calibration_error(logits, labels)[0]
    return row


class _Models:
    """Zero-shot and fine-tuned classifiers of one backbone on one dataset, with caches."""

    def __init__(self, bb: Backbone, train: LabelledImages, cache_dir: Path, device, progress: bool):
        self.bb, self.cache_dir, self.device, self.progress = bb, cache_dir, device, progress
        self.head = zero_shot_head(bb, train.classnames, train.templates)
        self.zero_shot = ImageClassifier(copy.deepcopy(bb.model), self.head, bb.logit_scale)

    def zs_outputs(self, data: LabelledImages) -> Outputs:
        f = cached_features(self.bb, data, cache_dir=self.cache_dir, progress=self.progress)
        return Outputs(zero_shot_logits(f, self.head, self.bb.logit_scale), data.labels, data.split)

    def finetuned_path(self, train: LabelledImages, recipe: FinetuneConfig) -> Path:
        key = cache_key({"backbone": backbone_identity(self.bb), "train": dataset_identity(train),
                         "recipe": asdict(recipe), "head": float(self.head.sum()), "v": 1})
        return self.cache_dir / "finetune" / f"{train.name}-{recipe.loss}-{key}.pt"

    def finetuned(self, train: LabelledImages, recipe: FinetuneConfig,
                  log_source_prior: torch.Tensor | None = None) -> ImageClassifier:
        path = self.finetuned_path(train, recipe)
        model = copy.deepcopy(self.zero_shot)
        saved = safe_load(path)
        if isinstance(saved, dict) and "state_dict" in saved:
            model.load_state_dict(saved["state_dict"])
            return model.eval()
        data = LabelledImages(train.images, train.labels, train.classnames, train.templates, name=train.name,
                              split=train.split, transform=self.bb.preprocess)
        model, _ = finetune(model, data, recipe, device=self.device, log_source_prior=log_source_prior,
                            checkpoint=path, progress=self.progress)
        return model.eval()

    def outputs(self, model: ImageClassifier, data: LabelledImages, tag: str) -> Outputs:
        key = cache_key({"model": tag, "data": dataset_identity(data), "backbone": backbone_identity(self.bb)})
        path = self.cache_dir / "logits" / f"{data.name}-{data.split}-{key}.pt"
        saved = safe_load(path)
        if isinstance(saved, torch.Tensor) and saved.shape[0] == len(data):
            return Outputs(saved, data.labels, data.split)
        ds = LabelledImages(data.images, data.labels, data.classnames, data.templates, transform=self.bb.preprocess)
        logits, _ = predict(model, ds, device=self.device)
        atomic_save(logits, path)
        return Outputs(logits, data.labels, data.split)


def _state_tag(model: torch.nn.Module) -> str:
    return cache_key({k: float(v.float().sum()) for k, v in model.state_dict().items() if v.is_floating_point()})


def run_many_shot(backbone: str, pretrained: str | None, dataset: str, *, shifted: Sequence[str] = (),
                  root: str | None = None, world=None, cache_dir: str | os.PathLike = ".gla_cache",
                  device: str = "cpu", recipe: FinetuneConfig = FinetuneConfig(),
                  alphas: Sequence[float] = tuple(i / 10 for i in range(11)), seed: int = 0,
                  dataset_kwargs: dict | None = None, progress: bool = True,
                  return_outputs: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """The many-shot protocol (the paper's ImageNet table and distribution shifts).

    With ``return_outputs`` also returns ``{"logits": {eval_set: {method: (N, K)}},
    "labels": {eval_set: (N,)}, "log_prior": log q, "classnames": [...],
    "train_counts": (K,)}`` for per-class analyses (logits projected for subset sets).

    Models: zero-shot, debiased zero-shot, end-to-end fine-tuned, WiSE-FT at alpha 0.5 and
    at the alpha chosen on val, the output ensemble, and GLA. Rows for ``test`` and each
    shifted test set; a WiSE-FT sweep over ``alphas`` on val and test (``method ==
    "WiSE-FT sweep"``). Head / medium / tail by the estimated prior (the paper's grouping).
    """
    torch.manual_seed(seed)
    cache = Path(cache_dir)
    bb = load_backbone(backbone, pretrained, device=device)
    train, val, test = (_load(dataset, s, root, world, dataset_kwargs) for s in ("train", "val", "test"))
    m = _Models(bb, train, cache, device, progress)
    ft = m.finetuned(train, recipe)
    zs_val, zs_test = m.zs_outputs(val), m.zs_outputs(test)
    fit = fit_prior(zs_val)
    log_q = fit.log_prior_
    log_ps = log_prior_from_counts(train.class_counts().clamp_min(1))
    base = {"backbone": backbone, "pretrained": str(pretrained or ""), "dataset": dataset, "shots": "all",
            "seed": seed}
    sd0, sd1 = m.zero_shot.state_dict(), ft.state_dict()
    ft_tag = f"ft-{_state_tag(ft)}"
    wise = copy.deepcopy(ft)

    def wise_outputs(alpha: float, data: LabelledImages) -> Outputs:
        wise.load_state_dict(interpolate_state_dicts(sd0, sd1, alpha))
        return m.outputs(wise, data, f"wise-{alpha}-{ft_tag}")

    sweep_val = {a: wise_outputs(a, val) for a in alphas}
    best_alpha = choose_alpha(sweep_val)
    rows = []
    outputs: dict[str, Any] = {"logits": {}, "labels": {}, "log_prior": log_q, "classnames": train.classnames,
                               "train_counts": train.class_counts(), "prior_fit": fit,
                               "val": {"zero-shot": zs_val.logits, "labels": val.labels,
                                       "fine-tuned": m.outputs(ft, val, ft_tag).logits}}
    eval_sets = [(dataset, test)] + [(s, _load(s, "test", root, world, dataset_kwargs)) for s in shifted]
    for name, data in eval_sets:
        zs = zs_test if data is test else m.zs_outputs(data)
        fto = m.outputs(ft, data, ft_tag)
        subset = data.class_subset
        def proj(z, s=subset):
            return project_logits(z, s)

        labels = project_labels(data.labels, subset)
        lq = project_log_prior(log_q, subset)
        split = "test" if name == dataset else f"test:{name}"
        b = {**base, "eval_set": name}
        models = {
            "zero-shot": zs.logits, "zero-shot - log q": debias(zs.logits, log_q),
            "fine-tuned": fto.logits,
            "WiSE-FT (alpha=0.5)": wise_outputs(0.5, data).logits,
            f"WiSE-FT (alpha={best_alpha:g}, val)": wise_outputs(best_alpha, data).logits,
            "ensemble": ensemble_logits(zs.logits, fto.logits),
            "GLA": gla_logits(zs.logits, fto.logits, log_q, log_source_prior=log_ps),
        }
        outputs["logits"][name] = {k: proj(v.float()) for k, v in models.items()}
        outputs["labels"][name] = labels
        for method, z in models.items():
            rows.append(_rows(b, method, split, proj(z.float()), labels, group_prior=lq))
    for a in alphas:
        rows.append(_rows({**base, "eval_set": dataset}, "WiSE-FT sweep", "val", sweep_val[a].logits,
                          val.labels, alpha=a))
        rows.append(_rows({**base, "eval_set": dataset}, "WiSE-FT sweep", "test", wise_outputs(a, test).logits,
                          test.labels, alpha=a))
    df = pd.DataFrame(rows)
    df["prior_objective"] = fit.objective_
    df["prior_grad_norm"] = fit.grad_norm_
    return (df, outputs) if return_outputs else df


def run_few_shot(backbone: str, pretrained: str | None, datasets: Sequence[str], *,
                 shots: Sequence[int] = (1, 2, 4, 8, 16), seeds: Sequence[int] = (1, 2, 3),
                 root: str | None = None, world=None, cache_dir: str | os.PathLike = ".gla_cache",
                 device: str = "cpu", epochs: int = 40, lr: float = 2e-3, coop_n_ctx: int = 4,
                 template: str | None = None, dataset_kwargs: dict | None = None,
                 shifted: dict[str, Sequence[str]] | None = None, shifted_shots: Sequence[int] | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """The few-shot protocol: zero-shot, linear probe, CoOp, prompt tuning (PT), the plain
    ensemble of PT and zero-shot, and GLA ``f_pt / T_ft + f_zs / T_zs - log q``.

    The prior is estimated on the few-shot train + val images when ``shots < 20``, on val
    otherwise (GLA_NOTES section 3); ``T_zs`` is searched on the same images, ``T_ft`` on
    val; prompt-learning epochs are chosen on val. Image features are computed once per
    split and cached, so only the text side trains.

    ``shifted`` maps a dataset to shifted test sets (e.g. ``{"imagenet": ["imagenet_v2",
    ...]}``); the models trained with ``shifted_shots`` (default: the most shots) are also
    evaluated there (rows with ``split == "test:<set>"``).
    """
    cache = Path(cache_dir)
    bb = load_backbone(backbone, pretrained, device=device)
    rows = []
    for name in datasets:
        full = {s: _load(name, s, root, world, dataset_kwargs) for s in ("train", "val", "test")}
        feats = {s: cached_features(bb, d, cache_dir=cache, progress=progress) for s, d in full.items()}
        head = zero_shot_head(bb, full["train"].classnames, full["train"].templates)
        tpl = template or full["train"].templates[0]
        zs_test = zero_shot_logits(feats["test"], head, bb.logit_scale)
        y_test = full["test"].labels
        extra_sets = []
        for sname in (shifted or {}).get(name, ()):
            sdata = _load(sname, "test", root, world, dataset_kwargs)
            extra_sets.append((sname, sdata, cached_features(bb, sdata, cache_dir=cache, progress=progress)))
        eval_shots = set(shifted_shots or [max(shots)])
        for k in shots:
            for seed in seeds:
                torch.manual_seed(seed)
                tr, va = few_shot_split(_indexed(full["train"]), _indexed(full["val"]), k, seed)
                itr, iva = tr.images, va.images  # indices into the full splits
                f_tr, f_va = feats["train"][itr], feats["val"][iva]
                base = {"backbone": backbone, "pretrained": str(pretrained or ""), "dataset": name, "shots": k,
                        "seed": seed, "eval_set": name}
                rows.append(_rows(base, "zero-shot", "test", zs_test, y_test))
                probe, _ = linear_probe(f_tr, tr.labels, head.T * bb.logit_scale, val_features=f_va,
                                        val_labels=va.labels, seed=seed)
                with torch.no_grad():
                    rows.append(_rows(base, "linear probe", "test", probe(feats["test"]), y_test))
                trained = {}
                for method, learner in [("CoOp", CoOp(bb, full["train"].classnames, tpl, n_ctx=coop_n_ctx)),
                                        ("prompt tuning", PromptResiduals(bb, full["train"].classnames, tpl))]:
                    learner, _ = train_prompts(learner, f_tr, tr.labels, f_va, va.labels, epochs=epochs, lr=lr,
                                               seed=seed)
                    with torch.no_grad():
                        trained[method] = learner
                        rows.append(_rows(base, method, "test", learner(feats["test"]), y_test))
                pt = trained["prompt tuning"]
                with torch.no_grad():
                    pt_val, pt_test = pt(f_va), pt(feats["test"])
                est_split = "train+val" if k < 20 else "val"
                f_est = torch.cat([f_tr, f_va]) if k < 20 else f_va
                y_est = torch.cat([tr.labels, va.labels]) if k < 20 else va.labels
                zs_est = Outputs(zero_shot_logits(f_est, head, bb.logit_scale), y_est, est_split)
                t_zs, _ = fit_temperature(zs_est)
                t_ft, _ = fit_temperature(Outputs(pt_val, va.labels, "val"))
                fit = fit_prior(zs_est, temperature=t_zs)
                rows.append(_rows(base, "ensemble", "test", pt_test / t_ft + zs_test / t_zs, y_test,
                                  t_zs=t_zs, t_ft=t_ft))
                rows.append(_rows(base, "GLA", "test",
                                  gla_logits(zs_test, pt_test, fit.log_prior_, zs_temperature=t_zs,
                                             ft_temperature=t_ft).float(), y_test, t_zs=t_zs, t_ft=t_ft))
                if k not in eval_shots:
                    continue
                for sname, sdata, sfeat in extra_sets:
                    sub = sdata.class_subset
                    ys = project_labels(sdata.labels, sub)
                    zs_s = zero_shot_logits(sfeat, head, bb.logit_scale)
                    with torch.no_grad():
                        pt_s = pt(sfeat)
                        models = {"zero-shot": zs_s, "linear probe": probe(sfeat), "CoOp": trained["CoOp"](sfeat),
                                  "prompt tuning": pt_s, "ensemble": pt_s / t_ft + zs_s / t_zs,
                                  "GLA": gla_logits(zs_s, pt_s, fit.log_prior_, zs_temperature=t_zs,
                                                    ft_temperature=t_ft).float()}
                    for method, z in models.items():
                        rows.append(_rows({**base, "eval_set": sname}, method, f"test:{sname}",
                                          project_logits(z.float(), sub), ys))
    return pd.DataFrame(rows)


def _indexed(data: LabelledImages) -> LabelledImages:
    """The same labels with each item replaced by its index (for sampling by index)."""
    return LabelledImages(torch.arange(len(data)), data.labels, data.classnames, data.templates, name=data.name,
                          split=data.split)


def _source_log_prior(train: LabelledImages, dataset: str) -> torch.Tensor:
    """``log p_s`` of a training split (the long-tail protocol's source prior)."""
    counts = train.class_counts()
    if (counts == 0).any():
        raise ValueError(f"{dataset}: every class needs at least one training image for log p_s")
    return log_prior_from_counts(counts)


def zero_shot_split(backbone: str, pretrained: str | None, dataset: str, split: str, *, root: str | None = None,
                    world=None, cache_dir: str | os.PathLike = ".gla_cache", device: str = "cpu",
                    dataset_kwargs: dict | None = None, progress: bool = True) -> dict:
    """The zero-shot model on one split: ``{"head": (D, K), "features": (N, D), "logits":
    (N, K), "labels": (N,), "classnames": [...]}`` (features from the cache). For analyses
    (the book's studies); the labels of a test split are returned for scoring only."""
    bb = load_backbone(backbone, pretrained, device=device)
    data = _load(dataset, split, root, world, dataset_kwargs)
    train = data if split == "train" else _load(dataset, "train", root, world, dataset_kwargs)
    head = zero_shot_head(bb, train.classnames, train.templates)
    feats = cached_features(bb, data, cache_dir=Path(cache_dir), progress=progress)
    return {"head": head, "features": feats, "logits": zero_shot_logits(feats, head, bb.logit_scale),
            "labels": data.labels, "classnames": train.classnames}


def finetune_to_cache(backbone: str, pretrained: str | None, dataset: str, *, loss: str = "ce",
                      root: str | None = None, world=None, cache_dir: str | os.PathLike = ".gla_cache",
                      device: str = "cpu", recipe: FinetuneConfig = FinetuneConfig(),
                      dataset_kwargs: dict | None = None, progress: bool = True) -> Path:
    """Fine-tune on ``dataset``'s train split into the cache the protocols read.

    The checkpoint lands where :func:`run_many_shot` (``loss="ce"``) and
    :func:`run_long_tail` (``"ce"`` and ``"la"``) look for it, so a multi-GPU run
    (``torchrun --nproc_per_node 8 -m gla finetune ...``) followed by ``gla run ...``
    reuses it. ``recipe.batch_size`` is the global batch, split over the processes.
    Returns the checkpoint path (already present: nothing is trained).
    """
    from .finetune import distributed_from_env

    if loss not in ("ce", "la"):
        raise ValueError(f"loss: expected 'ce' or 'la', got {loss!r}")
    with distributed_from_env(device) as dev:
        bb = load_backbone(backbone, pretrained, device=dev)
        train = _load(dataset, "train", root, world, dataset_kwargs)
        m = _Models(bb, train, Path(cache_dir), dev, progress)
        cfg = FinetuneConfig(**{**asdict(recipe), "loss": loss})
        m.finetuned(train, cfg, log_source_prior=_source_log_prior(train, dataset) if loss == "la" else None)
        return m.finetuned_path(train, cfg)


def run_long_tail(backbone: str, pretrained: str | None, dataset: str, *, root: str | None = None, world=None,
                  cache_dir: str | os.PathLike = ".gla_cache", device: str = "cpu",
                  recipe: FinetuneConfig = FinetuneConfig(), seed: int = 0, dataset_kwargs: dict | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """The long-tail protocol: zero-shot, fine-tuned with cross-entropy (CE), CE with post-hoc
    logit adjustment (CE - log p_s), fine-tuned with the logit-adjusted loss (LA loss),
    WiSE-FT (alpha 0.5, CE model), and GLA (zero-shot + CE model, both priors removed).
    Many / medium / few / all by training counts (mean of per-class accuracies)."""
    torch.manual_seed(seed)
    cache = Path(cache_dir)
    bb = load_backbone(backbone, pretrained, device=device)
    train, val, test = (_load(dataset, s, root, world, dataset_kwargs) for s in ("train", "val", "test"))
    log_ps = _source_log_prior(train, dataset)
    m = _Models(bb, train, cache, device, progress)
    ft_ce = m.finetuned(train, recipe)
    ft_la = m.finetuned(train, FinetuneConfig(**{**asdict(recipe), "loss": "la"}), log_source_prior=log_ps)
    zs_val, zs_test = m.zs_outputs(val), m.zs_outputs(test)
    fit = fit_prior(zs_val)
    ce = m.outputs(ft_ce, test, f"ft-{_state_tag(ft_ce)}").logits
    la = m.outputs(ft_la, test, f"ft-{_state_tag(ft_la)}").logits
    wise = copy.deepcopy(ft_ce)
    wise.load_state_dict(interpolate_state_dicts(m.zero_shot.state_dict(), ft_ce.state_dict(), 0.5))
    wise_logits = m.outputs(wise, test, f"wise-0.5-{_state_tag(ft_ce)}").logits
    base = {"backbone": backbone, "pretrained": str(pretrained or ""), "dataset": dataset, "shots": "all",
            "seed": seed, "eval_set": dataset}
    models = {
        "zero-shot": zs_test.logits, "zero-shot - log q": debias(zs_test.logits, fit.log_prior_),
        "fine-tuned (CE)": ce, "fine-tuned (CE) - log p_s": logit_adjust(ce, log_ps),
        "fine-tuned (LA loss)": la, "WiSE-FT (alpha=0.5)": wise_logits,
        "GLA": gla_logits(zs_test.logits, ce, fit.log_prior_, log_source_prior=log_ps),
    }
    return pd.DataFrame([_rows(base, k, "test", v.float(), test.labels, train_counts=train.class_counts())
                         for k, v in models.items()])


def run_estimation_ablation(outputs: dict, *, sizes: Sequence[int] = (1, 2, 4, 8, 16), seeds: Sequence[int] = (1, 2, 3),
                            dataset: str = "", backbone: str = "",
                            true_log_prior: torch.Tensor | None = None) -> pd.DataFrame:
    """How the prior estimate depends on the estimation set: images per class and the
    temperature search.

    Takes :func:`run_many_shot`'s ``outputs`` (``return_outputs=True``): subsamples
    ``k`` validation images per class by seed, estimates ``q`` with and without the
    temperature search, and scores debiased zero-shot and GLA on the test split. Rows
    carry the estimate's distance to the full-validation estimate (mean absolute
    difference of the normalised log priors) and, with ``true_log_prior``, ``mae_true``:
    the mean absolute difference of the centred estimated and true log priors.
    """
    from .datasets import few_shot_indices

    zs_val, y_val = outputs["val"]["zero-shot"], outputs["val"]["labels"]
    name = dataset or next(iter(outputs["logits"]))
    zs_test, ft_test = outputs["logits"][name]["zero-shot"], outputs["logits"][name]["fine-tuned"]
    y_test = outputs["labels"][name]
    log_ps = log_prior_from_counts(outputs["train_counts"].clamp_min(1))
    full = {t: fit_prior(Outputs(zs_val, y_val, "val"), temperature=t).log_prior_ for t in (1.0, "search")}
    rows = []
    per_class = int(torch.bincount(y_val).min())
    for k in [s for s in sizes if s <= per_class] + ([per_class] if per_class not in sizes else []):
        for seed in seeds:
            idx = torch.tensor(few_shot_indices(y_val, k, seed))
            for temp in (1.0, "search"):
                fit = fit_prior(Outputs(zs_val[idx], y_val[idx], "val"), temperature=temp)
                lq = fit.log_prior_
                rows.append({
                    "backbone": backbone, "dataset": name, "per_class": k, "seed": seed,
                    "temperature": "searched" if temp == "search" else "1 (none)", "T": fit.temperature_,
                    "debiased_top1": metrics.topk_accuracy(debias(zs_test, lq, temperature=fit.temperature_), y_test),
                    "gla_top1": metrics.topk_accuracy(gla_logits(zs_test, ft_test, lq, log_source_prior=log_ps,
                                                                 zs_temperature=fit.temperature_), y_test),
                    "distance_to_full": float((lq - full[temp]).abs().mean()),
                    **({} if true_log_prior is None else
                       {"mae_true": float(((lq - lq.mean()) - (true_log_prior - true_log_prior.mean())).abs().mean())}),
                })
    return pd.DataFrame(rows)
