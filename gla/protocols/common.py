"""What the protocols share: the rule that no choice sees test data, prior and temperature
fits under the protocol's settings, and the zero-shot and fine-tuned models of a backbone
with their caches.

Rule: the test split is never used to estimate the prior, choose a temperature, choose
alpha or choose an epoch. Every such choice goes through :func:`choose_on`, which raises
if it is handed test data, and the test suite checks each protocol for it.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import metrics
from ..adjust import log_prior_from_counts
from ..cache import atomic_save, cache_key, safe_load
from ..data import zero_shot_templates
from ..estimators import make_estimator
from ..features import backbone_identity, cached_features, dataset_identity
from ..finetune import FinetuneConfig, ImageClassifier, finetune, predict
from ..loading import resolve_precision
from ..pickles import load_module_state_dict, split_image_classifier_state
from ..prior_file import load_prior_file
from ..temperature import TemperatureFit
from ..temperature import fit_temperature as _fit_temperature
from ..version import __version__
from ..zeroshot import zero_shot_head, zero_shot_logits
from .config import ProtocolSettings, RunConfig
from .results import PriorFit

# The official code's thresholds (percentage points) for the confidence-matches-accuracy
# search: 0.1 for the zero-shot model (trainers/util.py), 1.0 for the fine-tuned one
# (trainers/gla.py).
THRESHOLD_ZERO_SHOT = 0.1
THRESHOLD_FINE_TUNED = 1.0


#: Part of the fine-tuned checkpoints' cache key ("v"): bump it when what a key names trains
#: or is saved differently (the training loop, the checkpoint's contents), so that old
#: checkpoints are not reused. 2: the recipe keyed by FinetuneConfig.identity (precision
#: resolved for the device, the seed).
FINETUNE_CACHE_FORMAT = 2


@dataclass
class Outputs:
    """Logits of one model on one split, with the labels and the split's name."""

    logits: torch.Tensor
    labels: torch.Tensor
    split: str


class TestSplitUsedError(RuntimeError):
    """Raised when a choice (prior, temperature, alpha, epoch) is handed test data."""


def choose_on(split: str, what: str) -> None:
    """Say that ``what`` is chosen on ``split``; raises :class:`TestSplitUsedError` for a test split."""
    if split == "test" or split.startswith("test"):
        raise TestSplitUsedError(f"{what} must be chosen on training or validation data, not on '{split}'")


def fit_prior(zs: Outputs, settings: ProtocolSettings = ProtocolSettings(), *, temperature: float = 1.0,
              temperature_converged: bool | None = None) -> PriorFit:
    """The zero-shot prior under ``settings``: read from ``settings.prior_file``, or
    estimated on non-test outputs divided by ``temperature`` with the settings' estimator
    (:attr:`ProtocolSettings.estimator_id`: under ``paper`` the official 1000-step solver,
    under ``exact`` the exact optimum, or any registered estimator of the model's prior)."""
    choose_on(zs.split, "the prior")
    if settings.prior_file:
        given = load_prior_file(settings.prior_file)
        if given.log_prior.numel() != zs.logits.shape[1]:
            raise ValueError(f"prior_file: {settings.prior_file} has {given.log_prior.numel()} values; the model has "
                             f"{zs.logits.shape[1]} classes")
        return PriorFit(given.log_prior.float(), f"file:{Path(settings.prior_file).name}", "", temperature,
                        temperature_converged, {"raw_sum": given.original_sum})
    est = make_estimator(settings.estimator_id).fit(zs.logits.double() / temperature, zs.labels)
    diag = {k: float(v) for k, v in est.diagnostics_.as_dict().items()}
    return PriorFit(est.log_prior_.float(), settings.estimator_id, zs.split, float(temperature),
                    temperature_converged, diag)


def fit_temperature(out: Outputs, settings: ProtocolSettings = ProtocolSettings(), *,
                    threshold: float = THRESHOLD_ZERO_SHOT) -> TemperatureFit:
    """Confidence-matches-accuracy temperature on non-test outputs (the protocol's search).

    Never raises for a target no temperature can meet (accuracy 1, or at chance): the
    result says ``converged=False`` and carries T = 1; the rows record it.
    """
    choose_on(out.split, "a temperature")
    return _fit_temperature(out.logits, out.labels, method=settings.temperature_method, thres=threshold,
                            fallback=1.0)


def choose_alpha(candidates: dict[float, Outputs]) -> float:
    """The WiSE-FT mixing weight with the best accuracy on non-test outputs."""
    best, best_acc = None, -1.0
    for a, out in candidates.items():
        choose_on(out.split, "alpha")
        acc = metrics.topk_accuracy(out.logits, out.labels)
        if acc > best_acc:
            best, best_acc = a, acc
    return best


def log_source_prior(train, dataset: str, settings: ProtocolSettings) -> tuple[torch.Tensor, str]:
    """``log p_s`` of a training split under ``settings`` and the name of its kind."""
    kind = settings.source_prior_for(dataset)
    counts = train.class_counts()
    if kind == "uniform":
        return torch.zeros(len(counts)), kind
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()[:5]
        raise ValueError(f"{dataset}: every class needs a training image for log p_s; classes {missing} have none")
    return log_prior_from_counts(counts), kind


def run_columns(backbone: str, pretrained: str | None, dataset: str, settings: ProtocolSettings, **extra: Any
                ) -> dict[str, Any]:
    """The columns every row of a run shares."""
    return {"backbone": backbone, "pretrained": str(pretrained or ""), "dataset": dataset, **settings.columns(),
            "gla_version": __version__, **extra}


def recipe_json(recipe: FinetuneConfig, config: RunConfig) -> str:
    """The fine-tuning recipe as it ran (precision resolved for the device), for the rows."""
    return json.dumps(recipe.identity(config.device), sort_keys=True)


def templates_of(data, style: str) -> list[str]:
    """Zero-shot templates of a dataset in the chosen style (the GLA code's or CoOp's)."""
    return zero_shot_templates(data.name, style=style)


class Models:
    """The zero-shot and fine-tuned classifiers of one backbone on one dataset, with caches."""

    def __init__(self, bb, train, templates: list[str], config: RunConfig):
        self.bb, self.config = bb, config
        self.head = cached_head(bb, train.classnames, templates, config)
        self.zero_shot = ImageClassifier(copy.deepcopy(bb.model), self.head, bb.logit_scale)

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_dir

    def features(self, data) -> torch.Tensor:
        return features(self.bb, data, self.config)

    def zs_outputs(self, data) -> Outputs:
        return Outputs(zero_shot_logits(self.features(data), self.head, self.bb.logit_scale), data.labels, data.split)

    def finetuned_path(self, train, recipe: FinetuneConfig) -> Path:
        key = cache_key({"backbone": backbone_identity(self.bb), "train": dataset_identity(train),
                         "recipe": recipe.identity(self.config.device), "head": float(self.head.sum()),
                         "v": FINETUNE_CACHE_FORMAT})
        return self.cache_dir / "finetune" / f"{train.name}-{recipe.loss}-{key}.pt"

    def given(self, path: str | os.PathLike) -> ImageClassifier:
        """A fine-tuned model from a file: this project's checkpoint or state dict, or a
        WiSE-FT checkpoint (a pickled ``ImageClassifier``, read without its code by
        :func:`gla.pickles.load_module_state_dict`)."""
        model = copy.deepcopy(self.zero_shot)
        model.load_state_dict(classifier_state(path, model))
        self.config.log(f"using the given fine-tuned model {path}")
        return model.eval()

    def finetuned(self, train, recipe: FinetuneConfig, log_source_prior: torch.Tensor | None = None
                  ) -> ImageClassifier:
        path = self.finetuned_path(train, recipe)
        model = copy.deepcopy(self.zero_shot)
        saved = safe_load(path)
        if isinstance(saved, dict) and "state_dict" in saved:
            self.config.log(f"{train.name}: reusing the fine-tuned checkpoint {path}")
            model.load_state_dict(saved["state_dict"])
            return model.eval()
        self.config.log(f"{train.name}: no fine-tuned checkpoint for this recipe at {path}; fine-tuning "
                        f"({recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.lr:g}, seed {recipe.seed})")
        data = train.with_transform(self.bb.preprocess)
        model, _ = finetune(model, data, recipe, device=self.config.device, log_source_prior=log_source_prior,
                            checkpoint=path, progress=self.config.progress)
        return model.eval()

    def outputs(self, model: ImageClassifier, data, tag: str) -> Outputs:
        precision = resolve_precision(self.config.precision, self.config.device)
        key = cache_key({"model": tag, "data": dataset_identity(data), "backbone": backbone_identity(self.bb),
                         "precision": precision})
        path = self.cache_dir / "logits" / f"{data.name}-{data.split}-{key}.pt"
        saved = safe_load(path)
        if isinstance(saved, torch.Tensor) and saved.shape[0] == len(data):
            return Outputs(saved, data.labels, data.split)
        logits, _ = predict(model, data.with_transform(self.bb.preprocess), device=self.config.device,
                            num_workers=self.config.num_workers, precision=precision)
        atomic_save(logits, path)
        return Outputs(logits, data.labels, data.split)


def classifier_state(path: str | os.PathLike, model: ImageClassifier) -> dict[str, torch.Tensor]:
    """The state dict of :class:`gla.finetune.ImageClassifier` held by a fine-tuned model
    file: this project's checkpoint (``{"state_dict": ...}``), a plain state dict, or a
    WiSE-FT checkpoint (``image_encoder.model.visual.*`` and ``classification_head.*``; WiSE-FT's
    head acts on normalised features with CLIP's scale folded in, as this project's does)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"finetuned: no fine-tuned model file at {path}")
    state = load_module_state_dict(path)
    expected = model.state_dict()
    if "classification_head.weight" in state:
        try:
            clip_state, weight, bias = split_image_classifier_state(state)
        except ValueError as exc:
            raise ValueError(f"finetuned: {path} is not a fine-tuned model of this backbone and dataset: "
                             f"{exc}") from exc
        state = {f"image_encoder.{k[len('visual.'):]}": v for k, v in clip_state.items() if k.startswith("visual.")}
        state.update({"head.weight": weight, "head.bias": bias})
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or wrong:
        what = f"missing {missing[:3]}" if missing else f"shapes differ for {wrong[:3]}"
        raise ValueError(f"finetuned: {path} is not a fine-tuned model of this backbone and dataset ({what}; "
                         f"expected the keys of an image encoder plus a {tuple(expected['head.weight'].shape)} head)")
    return {k: state[k] for k in expected}


def features(bb, data, config: RunConfig) -> torch.Tensor:
    """Image features of a dataset with a backbone, from the cache (the run's workers and precision)."""
    return cached_features(bb, data, cache_dir=config.cache_dir, progress=config.progress,
                           num_workers=config.num_workers, precision=config.precision)


def cached_head(bb, classnames, templates, config: RunConfig) -> torch.Tensor:
    """The zero-shot head of ``classnames`` under ``templates``, from the run's cache."""
    return zero_shot_head(bb, classnames, templates, cache_dir=config.cache_dir, precision=config.precision)


def state_tag(model: torch.nn.Module) -> str:
    """A short key of a model's weights (for logits caches)."""
    return cache_key({k: float(v.float().sum()) for k, v in model.state_dict().items() if v.is_floating_point()})


def seeded(recipe: FinetuneConfig, seed: int) -> FinetuneConfig:
    """The recipe with the run's seed (so that seeds give different fine-tuned models)."""
    return replace(recipe, seed=int(seed))
