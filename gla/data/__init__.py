"""Datasets: one registry, one loader signature, the readers, prompts and few-shot draws.

>>> from gla.data import list_datasets, load_dataset, sample_few_shot
>>> train = load_dataset("dtd", "train", root="/data")          # doctest: +SKIP
>>> load_dataset("world-main", "test", scale=0.1)                # the world, a plug-in  # doctest: +SKIP

Modules: :mod:`~gla.data.images` (:class:`LabelledImages`), :mod:`~gla.data.classes`
(class subsets and projections), :mod:`~gla.data.registry`, :mod:`~gla.data.templates`,
:mod:`~gla.data.sampling`, and the readers :mod:`~gla.data.imagenet`,
:mod:`~gla.data.coop`, :mod:`~gla.data.longtail`, :mod:`~gla.data.cifar`. The package
data ``published.json`` (published reference numbers) and ``imagenet_classes.json`` (the
ImageNet class table) live here too.
"""

from .classes import ClassGroups, ClassSubset, project_labels, project_log_prior, project_logits
from .images import ImageReadError, LabelledImages, PILTensorImages
from .registry import DatasetEntry, dataset_entry, list_datasets, load_dataset, register_dataset
from .sampling import balanced_holdout, few_shot_indices, few_shot_split, imagenet_few_shot_split, sample_few_shot
from .templates import (
    format_prompts,
    prompt_classname,
    prompt_tuning_template,
    register_templates,
    zero_shot_templates,
)


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet wnids, sorted (see :func:`gla.data.imagenet.imagenet_wnids`)."""
    # The ImageNet reader registers its datasets when imported; the registry imports the
    # readers on first use, in order (registry.ensure_loaded): import it only when called.
    from .imagenet import imagenet_wnids as _wnids

    return _wnids()


def imagenet_classnames(wnids: list[str] | None = None) -> list[str]:
    """OpenAI's CLIP names of ImageNet classes (see :func:`gla.data.imagenet.imagenet_classnames`)."""
    from .imagenet import imagenet_classnames as _names

    return _names(wnids)


__all__ = [
    "ClassGroups", "ClassSubset", "DatasetEntry", "ImageReadError", "LabelledImages", "PILTensorImages",
    "balanced_holdout", "dataset_entry", "few_shot_indices", "few_shot_split", "format_prompts",
    "imagenet_classnames", "imagenet_few_shot_split", "imagenet_wnids", "list_datasets", "load_dataset",
    "project_labels", "project_log_prior", "project_logits", "prompt_classname", "prompt_tuning_template",
    "register_dataset", "register_templates", "sample_few_shot", "zero_shot_templates",
]
