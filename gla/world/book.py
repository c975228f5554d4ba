"""What the world adds to the book's notebooks, through the backbone provider's ``prepare``
hook: its CLIP pretrained (or reused), its tasks' options, its recipes, and the truths only
a generated world knows (the pretraining prior, how many images of each concept the CLIP
saw)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .concepts import World, WorldConfig
from .pretrain import SMOKE_PRETRAIN, PretrainConfig, corpus_counts, pretrain
from .tasks import TASKS

WORLD_NOTE = ("These numbers are measured in the miniature world that this project generates "
              "(a tiny CLIP pretrained on long-tailed synthetic data). They are the world's, not the paper's.")


@dataclass
class Prepared:
    """What a backbone provider resolves for a notebook (see :func:`gla.notebook.context`)."""

    pretrained: str
    dataset_options: dict[str, Any]
    recipe: Any
    prompts: Any
    note: str
    info: dict[str, Any] = field(default_factory=dict)


def prepare(pretrained: str | None, *, smoke: bool = False, cache_dir: str | os.PathLike = ".gla_cache",
            progress: bool = True, world_seed: int = 0, zipf_exponent: float | None = None) -> Prepared:
    """Resolve the world's CLIP for a notebook.

    ``pretrained="world"`` (or empty) pretrains, or reuses from the cache, the world's CLIP
    with the default recipe (the smoke recipe when ``smoke``); a path is used as is. The
    world's tasks get ``world`` (and ``scale=0.1`` in smoke mode); fine-tuning uses the
    world's recipe; prompt learning the cached-feature recipe, with 4 CoOp context vectors
    (the world's text tower reads 12 tokens; the book says so).
    """
    from ..protocols import PromptRecipe
    from .evaluate import world_finetune_config

    wcfg = WorldConfig(seed=world_seed)
    if zipf_exponent is not None:
        wcfg = replace(wcfg, zipf_exponent=zipf_exponent)
    default_recipe = pretrained in (None, "", "world") and not smoke
    if pretrained in (None, "", "world"):
        pcfg = replace(SMOKE_PRETRAIN if smoke else PretrainConfig(), seed=world_seed)
        pretrained = str(pretrain(wcfg, pcfg, cache_dir=Path(cache_dir), progress=progress))
    recipe = world_finetune_config()
    if smoke:
        recipe = replace(recipe, epochs=1, warmup_steps=5)
    options = {"world": wcfg, **({"scale": 0.1} if smoke else {})}
    info = {"world": wcfg,
            # measured for the default law and recipe only (not the smoke recipe, not a given file)
            "seed_spread": seed_spread() if default_recipe and wcfg == WorldConfig(seed=world_seed) else None,
            "true_log_prior": lambda dataset: true_log_prior(wcfg, dataset),
            "corpus_counts": lambda dataset: checkpoint_corpus_counts(pretrained, dataset)}
    return Prepared(str(pretrained), options, recipe, PromptRecipe(trainer="features", coop_n_ctx=4), WORLD_NOTE, info)


SEED_SPREAD_FILE = Path(__file__).resolve().parent / "seed_spread.json"


def seed_spread() -> dict[str, Any]:
    """How far the default world's headline numbers move across world seeds: ``values``
    (metric -> one value per seed of ``seeds``) and ``source`` (``seed_spread.json``, copied
    from the measurements in ``gla/world/README.md``)."""
    import json

    return json.loads(SEED_SPREAD_FILE.read_text())


def true_log_prior(world: WorldConfig, dataset: str) -> torch.Tensor | None:
    """The world's true pretraining log prior over a task's classes, when the task's
    classes are the world's concepts (else None: attribute groupings, concept subsets)."""
    if dataset not in TASKS:
        return None
    spec = TASKS[dataset]
    spec = TASKS[spec.parent] if spec.parent else spec
    if spec.classes != "concepts" or spec.concept_subset is not None:
        return None
    return World(world).log_prior


def checkpoint_corpus_counts(checkpoint: str | os.PathLike, dataset: str) -> torch.Tensor | None:
    """How many pretraining images of each class the world's CLIP saw (exactly, from the
    recipe stored in its checkpoint), when the task's classes are the world's concepts."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "pretrain_config" not in ckpt or "world_config" not in ckpt:
        raise ValueError(f"pretrained: {checkpoint} is not a world checkpoint with its recipe")
    wcfg = WorldConfig.from_dict(ckpt["world_config"])
    if true_log_prior(wcfg, dataset) is None:
        return None
    return corpus_counts(World(wcfg), PretrainConfig(**ckpt["pretrain_config"]))


def concepts_table(world: WorldConfig, checkpoint: str | os.PathLike):
    """The world's concepts as a table, most frequent in pretraining first: ``name``, the
    attributes, ``true_prior``, ``pretrain_images`` (what the CLIP of ``checkpoint`` saw,
    from its recipe) and ``third`` (head / medium / tail by the true prior, as in
    :func:`gla.metrics.prior_groups`)."""
    import pandas as pd

    from ..metrics import GROUP_NAMES, prior_groups

    w = World(world)
    counts = checkpoint_corpus_counts(checkpoint, "world-main")
    groups = prior_groups(w.log_prior)
    rows = [{"name": w.names[i], **w.attributes(i), "true_prior": float(w.prior[i]),
             "pretrain_images": int(counts[i]), "third": GROUP_NAMES["prior"][int(groups[i])]}
            for i in range(w.n_concepts)]
    return pd.DataFrame(rows).sort_values("true_prior", ascending=False)
