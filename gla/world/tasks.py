"""Downstream tasks of the miniature world, in the roles of the paper's datasets.

Each task is data: a :class:`TaskSpec` says which classes it has (concepts, or attribute
groups such as "striped things"), how they are rendered, how many images each split
holds, and which prompt templates its zero-shot head uses. :func:`make_split` renders a
split deterministically from (world, task, split). The world is a plug-in of
:mod:`gla.data`: :mod:`gla.world.plugin` registers every task by name, like the real
datasets (``gla.data.load_dataset("world-main", "test", world=..., seed=..., scale=...)``).

Roles (paper dataset -> world task):

- ImageNet -> ``world-main`` (all concepts, balanced); ImageNet-V2/-Sketch/-R/-A/ObjectNet
  -> ``world-main-{resample,sketch,rendition,adversarial,clutter}`` (test only; rendition and
  adversarial use a class subset, like ImageNet-R/-A's 200 classes);
- CIFAR-100, Stanford Cars, SUN397 -> ``world-small`` (small objects in clutter),
  ``world-colour-shape`` (fine-grained attribute pairs), ``world-pattern-colour``;
- the 11 few-shot datasets -> ``world-main``, ``world-shapes``, ``world-colours``,
  ``world-patterns``, ``world-colour-shape``, ``world-pattern-shape``, ``world-sketch``,
  ``world-rendition``, ``world-clutter``, ``world-head``, ``world-tail``;
- ImageNet-LT, Places365-LT -> ``world-lt``, ``world-lt-clutter`` (long-tailed training
  counts from 250 down to 4 per class, balanced val and test).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .concepts import World
from .render import COLOURS, PATTERNS, SHAPES, STYLES

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskSpec:
    """A downstream task (see the module docstring).

    ``classes`` is ``"concepts"`` (one class per concept, named by the concept name) or an
    attribute grouping: ``"shape"``, ``"colour"``, ``"pattern"``, ``"colour-shape"``,
    ``"pattern-shape"``, ``"pattern-colour"``. ``concept_subset`` restricts the concepts
    (``"head"``/``"tail"``: the half with the largest/smallest true prior).
    ``per_class`` gives images per class for train, val and test; ``long_tail`` replaces
    the train counts by a Pareto-like profile. ``class_subset`` marks test sets that, like
    ImageNet-R/-A, cover only some classes of their parent task (``every``: keep every
    n-th class).
    """

    name: str
    role: str
    classes: str = "concepts"
    style: str = "photo"
    per_class: tuple[int, int, int] = (100, 20, 50)
    concept_subset: str | None = None
    long_tail: tuple[int, int] | None = None  # (max, min) train images per class
    splits: tuple[str, ...] = SPLITS
    parent: str | None = None  # shifted test sets: the task whose classes they share
    class_subset_every: int | None = None
    templates: tuple[str, ...] = ("a photo of a {}.", "a {}.", "this is a {}.")
    description: str = ""
    seed_offset: int = field(default=0)
    main: bool = False  # the ImageNet role: its train split takes the world's downstream settings


ATTR_TEMPLATES = ("a photo of a {}.", "a {}.", "a {} thing.")
TASKS: dict[str, TaskSpec] = {}


def _add(spec: TaskSpec) -> None:
    TASKS[spec.name] = spec


_add(TaskSpec("world-main", "ImageNet", main=True,
              description="all concepts, balanced, photo style (training labels with the world's label noise)"))
for _style, _role, _every in [("resample", "ImageNet-V2", None), ("sketch", "ImageNet-Sketch", None),
                              ("rendition", "ImageNet-R", 2), ("adversarial", "ImageNet-A", 2),
                              ("clutter", "ObjectNet", None)]:
    _add(TaskSpec(f"world-main-{_style}", _role, style=_style, splits=("test",), parent="world-main",
                  class_subset_every=_every, description=f"world-main's classes in the {_style} style"))
_add(TaskSpec("world-small", "CIFAR-100", style="clutter", per_class=(50, 20, 50),
              description="all concepts as small objects in heavy clutter"))
_add(TaskSpec("world-colour-shape", "Stanford Cars", classes="colour-shape", templates=ATTR_TEMPLATES,
              per_class=(50, 20, 50),
              description="fine-grained: colour and shape pairs"))
_add(TaskSpec("world-pattern-colour", "SUN397", classes="pattern-colour", templates=ATTR_TEMPLATES,
              per_class=(50, 20, 50),
              description="pattern and colour pairs"))
_add(TaskSpec("world-shapes", "few-shot", classes="shape", templates=ATTR_TEMPLATES, per_class=(64, 16, 100)))
_add(TaskSpec("world-colours", "few-shot", classes="colour", templates=ATTR_TEMPLATES, per_class=(64, 16, 100)))
_add(TaskSpec("world-patterns", "few-shot", classes="pattern", templates=ATTR_TEMPLATES, per_class=(64, 16, 100)))
_add(TaskSpec("world-pattern-shape", "few-shot", classes="pattern-shape", templates=ATTR_TEMPLATES))
_add(TaskSpec("world-sketch", "few-shot", style="sketch", description="concepts drawn as sketches"))
_add(TaskSpec("world-rendition", "few-shot", style="rendition"))
_add(TaskSpec("world-clutter", "few-shot", style="clutter"))
_add(TaskSpec("world-head", "few-shot", concept_subset="head", description="the more frequent half of the concepts"))
_add(TaskSpec("world-tail", "few-shot", concept_subset="tail", description="the rarer half of the concepts"))
_add(TaskSpec("world-lt", "ImageNet-LT", long_tail=(250, 4), per_class=(0, 20, 50),
              description="long-tailed training counts, balanced val/test"))
_add(TaskSpec("world-lt-clutter", "Places365-LT", style="clutter", long_tail=(250, 4), per_class=(0, 20, 50),
              seed_offset=7, description="long-tailed, cluttered scenes"))

FEW_SHOT_TASKS = ("world-main", "world-shapes", "world-colours", "world-patterns", "world-colour-shape",
                  "world-pattern-shape", "world-sketch", "world-rendition", "world-clutter", "world-head",
                  "world-tail")
SHIFTED_TASKS = tuple(f"world-main-{s}" for s in ("resample", "sketch", "rendition", "adversarial", "clutter"))
MANY_SHOT_TASKS = ("world-small", "world-colour-shape", "world-pattern-colour")
LONG_TAIL_TASKS = ("world-lt", "world-lt-clutter")


@dataclass
class TaskClasses:
    """Classes of a task: names and, for each concept of the world, its class (or -1)."""

    names: list[str]
    concept_to_class: torch.Tensor  # (n_concepts,) long, -1 when the concept is not used


def task_classes(world: World, spec: TaskSpec) -> TaskClasses:
    """Class names and the concept-to-class map of a task."""
    if spec.parent is not None:
        return task_classes(world, TASKS[spec.parent])
    k = world.n_concepts
    colour_names = list(COLOURS)
    attrs = {
        "shape": [SHAPES[int(s)] for s in world.shapes],
        "colour": [colour_names[int(c)] for c in world.colours],
        "pattern": [PATTERNS[int(p)] for p in world.patterns],
    }
    keep = torch.ones(k, dtype=torch.bool)
    if spec.concept_subset in ("head", "tail"):
        order = torch.argsort(world.prior, descending=True)
        half = order[: k // 2] if spec.concept_subset == "head" else order[k // 2:]
        keep[:] = False
        keep[half] = True
    if spec.classes == "concepts":
        label_of = [world.names[i] for i in range(k)]
    else:
        parts = spec.classes.split("-")
        if any(p not in attrs for p in parts):
            raise ValueError(f"classes: unknown grouping '{spec.classes}'")
        label_of = [" ".join(attrs[p][i] for p in parts) for i in range(k)]
    names: list[str] = []
    index: dict[str, int] = {}
    c2c = torch.full((k,), -1, dtype=torch.long)
    for i in range(k):
        if not keep[i]:
            continue
        if label_of[i] not in index:
            index[label_of[i]] = len(names)
            names.append(label_of[i])
        c2c[i] = index[label_of[i]]
    return TaskClasses(names, c2c)


def class_counts(spec: TaskSpec, split: str, n_classes: int, seed: int) -> torch.Tensor:
    """Images per class of a split (long-tailed train counts are in a random class order)."""
    i = SPLITS.index(split)
    if split == "train" and spec.long_tail is not None:
        hi, lo = spec.long_tail
        ranks = torch.arange(n_classes, dtype=torch.float64) / max(1, n_classes - 1)
        counts = (hi * (lo / hi) ** ranks).round().long()  # geometric: hi down to lo
        g = torch.Generator().manual_seed(10_007 * seed + 17 + spec.seed_offset)
        return counts[torch.randperm(n_classes, generator=g)]
    return torch.full((n_classes,), spec.per_class[i], dtype=torch.long)


def flip_labels(labels: torch.Tensor, n_classes: int, share: float, g: torch.Generator) -> torch.Tensor:
    """``labels`` with a random ``share`` of them (rounded) replaced by another class, drawn
    uniformly among the other ``n_classes - 1`` (symmetric label noise)."""
    n_flip = round(share * len(labels))
    out = labels.clone()
    if n_flip == 0 or n_classes < 2:
        return out
    rows = torch.randperm(len(labels), generator=g)[:n_flip]
    out[rows] = (labels[rows] + torch.randint(1, n_classes, (n_flip,), generator=g)) % n_classes
    return out


@dataclass
class Split:
    """A rendered split: images in [0, 1], labels, class names, and per-image concepts."""

    images: torch.Tensor  # (N, 3, S, S) float32
    labels: torch.Tensor  # (N,) long
    classnames: list[str]
    concepts: torch.Tensor  # (N,) long, the world concept of each image
    task: TaskSpec
    split: str
    class_subset: torch.Tensor | None = None  # classes of the parent task covered


def make_split(world: World, task: str | TaskSpec, split: str, *, seed: int = 0, scale: float = 1.0,
               batch: int = 1024) -> Split:
    """Render one split of a task deterministically from (world, task, split, seed).

    ``scale`` multiplies every class's image count (rounded, at least 1): a quick version
    of a task for smoke runs and tests.
    """
    spec = TASKS[task] if isinstance(task, str) else task
    if split not in spec.splits:
        raise ValueError(f"split: task '{spec.name}' has splits {spec.splits}, not '{split}'")
    cls = task_classes(world, spec)
    n_classes = len(cls.names)
    if split == "train" and spec.main and world.config.main_train_per_class:
        spec = replace(spec, per_class=(world.config.main_train_per_class, *spec.per_class[1:]))
    counts = class_counts(spec, split, n_classes, seed)
    if scale != 1.0:
        if scale <= 0:
            raise ValueError(f"scale: expected a positive number, got {scale}")
        counts = torch.where(counts > 0, (counts.double() * scale).round().long().clamp_min(1), counts)
    class_subset = None
    if spec.class_subset_every:
        class_subset = torch.arange(0, n_classes, spec.class_subset_every)
        mask = torch.zeros(n_classes, dtype=torch.bool)
        mask[class_subset] = True
        counts = counts * mask
    name_seed = sum(ord(ch) * (i + 1) for i, ch in enumerate(spec.name))
    g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + 7919 * SPLITS.index(split) + name_seed
                                      + world.config.seed * 104_729)
    # Each image of class c shows one of the concepts of c, drawn uniformly.
    labels = torch.repeat_interleave(torch.arange(n_classes), counts)
    concepts = torch.empty_like(labels)
    for c in range(n_classes):
        members = torch.nonzero(cls.concept_to_class == c).flatten()
        idx = labels == c
        concepts[idx] = members[torch.randint(0, len(members), (int(idx.sum()),), generator=g)]
    style = STYLES[spec.style]
    from .render import render

    chunks = [render(world.shapes[concepts[i:i + batch]], world.colours[concepts[i:i + batch]],
                     world.patterns[concepts[i:i + batch]], size=world.config.image_size, style=style, generator=g)
              for i in range(0, len(labels), batch)]
    images = torch.cat(chunks) if chunks else torch.empty(0, 3, world.config.image_size, world.config.image_size)
    if split == "train" and spec.main and world.config.label_noise > 0:
        labels = flip_labels(labels, n_classes, world.config.label_noise,
                              torch.Generator().manual_seed(1_000_003 * (seed + 1) + name_seed + 31))
    return Split(images, labels, cls.names, concepts, spec, split, class_subset)
