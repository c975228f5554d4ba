"""The world as a plug-in (:mod:`gla.plugins`): its tasks, their templates, and its CLIP's
backbone provider, registered through the public registries.

Declared in ``pyproject.toml`` under the entry-point group ``gla.plugins``
(``world = "gla.world.plugin:register"``); :mod:`gla.data.registry` calls
:func:`register` the first time the registry is read. Each task of
:data:`gla.world.tasks.TASKS` becomes a dataset of kind ``"world"`` with the options
``world`` (a :class:`~gla.world.WorldConfig`, default ``WorldConfig()``), ``seed`` and
``scale`` (see :func:`gla.world.tasks.make_split`), and registers its prompt templates.
"""

from __future__ import annotations

from collections.abc import Callable

from ..data import DatasetEntry, LabelledImages, register_dataset, register_templates
from .tasks import TASKS

OPTIONS = ("world", "seed", "scale")


def task_loader(task: str) -> Callable[..., LabelledImages]:
    """The loader of one world task: ``loader(split, *, root, transform, world=None, seed=0, scale=1.0)``.

    ``root`` is accepted for the common signature and ignored (world tasks are rendered).
    """
    def load(split: str, *, root=None, transform: Callable | None = None, world=None, seed: int = 0,
             scale: float = 1.0) -> LabelledImages:
        from .concepts import World, WorldConfig
        from .tasks import make_split

        w = World(world if world is not None else WorldConfig())
        s = make_split(w, task, split, seed=seed, scale=scale)
        return LabelledImages(s.images, s.labels, s.classnames, TASKS[task].templates, name=task, split=split,
                              transform=transform, class_subset=s.class_subset,
                              meta={"concepts": s.concepts, "world": w})
    load.__name__ = f"load_{task.replace('-', '_')}"
    return load


def register() -> None:
    """Register every world task and its templates, and the provider of the world's CLIP
    (idempotent: re-registering replaces)."""
    from ..backbones import register_backbone_provider
    from ..plugins import register_command
    from .backbone import WORLD_MODELS, WORLD_PREFIX, load_world_backbone
    from .book import prepare
    from .cli import add_world_parser

    # The world's CLIP is the backbone used when none is named, and the book's shipped pages describe it.
    register_backbone_provider(WORLD_PREFIX, load_world_backbone, prepare, default_pretrained="world",
                               models=WORLD_MODELS, default=True, shipped_pages=True)
    register_command(add_world_parser)
    for name, spec in TASKS.items():
        register_dataset(DatasetEntry(name, task_loader(name), spec.splits, "world", spec.role, spec.description,
                                      options=OPTIONS, shift_of=spec.parent), replace=True)
        register_templates(name, zero_shot=spec.templates, prompt_tuning=spec.templates[0], replace=True)
