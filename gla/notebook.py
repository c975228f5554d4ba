"""What the book's notebooks share: turning papermill parameters into a run context.

A notebook's parameters name a backbone (an open_clip model and pretrained tag or path,
or the world's CLIP), datasets, a data root, cache and output folders, shots, seeds, a
device and a smoke switch. :func:`context` resolves them once: it pretrains (or reuses)
the world's CLIP when asked for, picks the fine-tuning recipe, and scales the world's
tasks down in smoke mode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .backbones import WORLD_PREFIX
from .finetune import FinetuneConfig

WORLD_NOTE = ("These numbers are measured in the miniature world that this project generates "
              "(a tiny CLIP pretrained on long-tailed synthetic data). They are the world's, not the paper's.")


@dataclass
class Context:
    """Resolved settings of one notebook run."""

    backbone: str
    pretrained: str | None
    cache_dir: Path
    output_dir: Path
    device: str
    smoke: bool
    data_root: str | None
    world: object | None = None  # gla.world.WorldConfig for world backbones
    dataset_kwargs: dict = field(default_factory=dict)
    recipe: FinetuneConfig = FinetuneConfig()

    @property
    def is_world(self) -> bool:
        return self.world is not None

    @property
    def note(self) -> str:
        """A sentence that says whose numbers these are."""
        if self.is_world:
            return WORLD_NOTE
        return (f"These numbers are measured here with {self.backbone} ({self.pretrained}); published numbers, "
                "where a source exists, are shown beside them.")

    def recipe_with(self, epochs: int | None = None) -> FinetuneConfig:
        """The fine-tuning recipe, with another number of epochs when given (not in smoke mode)."""
        if epochs is None or self.smoke:
            return self.recipe
        return replace(self.recipe, epochs=int(epochs))

    def kwargs(self) -> dict:
        """Keyword arguments every experiment entry point takes."""
        return {"root": self.data_root, "world": self.world, "cache_dir": self.cache_dir, "device": self.device,
                "dataset_kwargs": self.dataset_kwargs}


def context(backbone: str = "gla-world-tiny", pretrained: str | None = "world", *, smoke: bool = False,
            cache_dir: str | os.PathLike | None = None, output_dir: str | os.PathLike = "results",
            device: str = "cpu", data_root: str | None = None, world_seed: int = 0,
            zipf_exponent: float | None = None, progress: bool = True) -> Context:
    """Resolve a notebook's parameters.

    ``pretrained="world"`` with a world backbone pretrains (or reuses from the cache) the
    world's CLIP with the default recipe, or the smoke recipe when ``smoke``.
    ``cache_dir`` defaults to ``GLA_CACHE_DIR`` or ``.gla_cache``.
    """
    from .world import SMOKE_PRETRAIN, PretrainConfig, WorldConfig, pretrain
    from .world.evaluate import world_finetune_config

    cache = Path(cache_dir or os.environ.get("GLA_CACHE_DIR", ".gla_cache")).resolve()
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if backbone.startswith(WORLD_PREFIX):
        wcfg = WorldConfig(seed=world_seed)
        if zipf_exponent is not None:
            wcfg = replace(wcfg, zipf_exponent=zipf_exponent)
        if pretrained in (None, "", "world"):
            pcfg = replace(SMOKE_PRETRAIN if smoke else PretrainConfig(), seed=world_seed)
            pretrained = str(pretrain(wcfg, pcfg, cache_dir=cache, progress=progress))
        recipe = world_finetune_config()
        if smoke:
            recipe = replace(recipe, epochs=1, warmup_steps=5)
        return Context(backbone, pretrained, cache, out, device, smoke, data_root, wcfg,
                       {"scale": 0.1} if smoke else {}, recipe)
    recipe = FinetuneConfig()
    if smoke:
        recipe = replace(recipe, epochs=1, warmup_steps=1)
    return Context(backbone, pretrained, cache, out, device, smoke, data_root, None, {}, recipe)


def trim(ctx: Context, *lists):
    """In smoke mode keep the first two entries of each list (datasets, shots) and the
    first of the last list (seeds); otherwise return them unchanged."""
    if not ctx.smoke:
        return lists
    *head, last = lists
    return tuple(list(x)[:2] for x in head) + (list(last)[:1],)


def true_log_prior(ctx: Context, dataset: str):
    """The world's true pretraining log prior over a task's classes, when the task's
    classes are the world's concepts (else None: real data, or attribute groupings)."""
    if not ctx.is_world:
        return None
    from .world import TASKS, World

    spec = TASKS[dataset]
    spec = TASKS[spec.parent] if spec.parent else spec
    if spec.classes != "concepts" or spec.concept_subset is not None:
        return None
    return World(ctx.world).log_prior


def world_corpus_counts(ctx: Context, dataset: str):
    """How many pretraining images of each class the world's CLIP saw (exactly, from the
    recipe stored in its checkpoint), when the task's classes are the world's concepts;
    else None (real data, attribute groupings)."""
    if true_log_prior(ctx, dataset) is None:
        return None
    import torch

    from .world import PretrainConfig, World, WorldConfig, corpus_counts

    ckpt = torch.load(ctx.pretrained, map_location="cpu", weights_only=False)
    if "pretrain_config" not in ckpt or "world_config" not in ckpt:
        raise ValueError(f"pretrained: {ctx.pretrained} is not a world checkpoint with its recipe")
    return corpus_counts(World(WorldConfig.from_dict(ckpt["world_config"])), PretrainConfig(**ckpt["pretrain_config"]))


def world_concepts(ctx: Context):
    """The world's concepts as a table, most frequent in pretraining first: ``name``, the
    attributes, ``true_prior``, ``pretrain_images`` (what the CLIP of ``ctx`` saw, from its
    checkpoint's recipe) and ``third`` (head / medium / tail by the true prior, as in
    :func:`gla.metrics.prior_groups`)."""
    import pandas as pd

    from .metrics import GROUP_NAMES, prior_groups
    from .world import World

    world = World(ctx.world)
    counts = world_corpus_counts(ctx, "world-main")
    groups = prior_groups(world.log_prior)
    rows = [{"name": world.names[i], **world.attributes(i), "true_prior": float(world.prior[i]),
             "pretrain_images": int(counts[i]), "third": GROUP_NAMES["prior"][int(groups[i])]}
            for i in range(world.n_concepts)]
    return pd.DataFrame(rows).sort_values("true_prior", ascending=False)
