"""The miniature world: a long-tailed image-caption corpus, a tiny CLIP and downstream tasks.

Unlike the paper's setting, this world knows its true pretraining prior
(:attr:`World.prior`), so the estimator can be checked against the truth.

>>> from gla.world import World, WorldConfig, pretrain, PretrainConfig
>>> world = World(WorldConfig())                 # concepts, names, true prior
>>> ckpt = pretrain(WorldConfig(), PretrainConfig())  # cached by its settings
>>> # gla.backbones.load_backbone("gla-world-tiny", pretrained=ckpt)

The tasks are served by :func:`gla.data.load_dataset` (``world``, ``seed``, ``scale``
options): the world is a plug-in of :mod:`gla.data`, registered by
:func:`gla.world.plugin.register` (entry-point group ``gla.plugins``).
"""

from .concepts import ZERO_SHOT_TEMPLATES, WordTokenizer, World, WorldConfig
from .pretrain import SMOKE_PRETRAIN, STUDY_PRETRAIN, PretrainConfig, checkpoint_path, corpus_counts, pretrain
from .render import STYLES, Style, render
from .tasks import (
    FEW_SHOT_TASKS,
    LONG_TAIL_TASKS,
    MANY_SHOT_TASKS,
    SHIFTED_TASKS,
    TASKS,
    Split,
    TaskSpec,
    make_split,
    task_classes,
)

__all__ = [
    "FEW_SHOT_TASKS", "LONG_TAIL_TASKS", "MANY_SHOT_TASKS", "SHIFTED_TASKS", "SMOKE_PRETRAIN", "STUDY_PRETRAIN",
    "STYLES", "TASKS", "ZERO_SHOT_TEMPLATES", "PretrainConfig", "Split", "Style", "TaskSpec", "WordTokenizer",
    "World", "WorldConfig", "checkpoint_path", "corpus_counts", "make_split", "pretrain", "render", "task_classes",
]
