"""Deprecated shim: the datasets moved to :mod:`gla.data` (this module will be removed).

``register`` is :func:`gla.data.register_dataset`, which refuses duplicates.
"""

from .data import (  # noqa: F401
    ClassGroups,
    ClassSubset,
    DatasetEntry,
    LabelledImages,
    PILTensorImages,
    balanced_holdout,
    dataset_entry,
    few_shot_indices,
    few_shot_split,
    imagenet_few_shot_split,
    list_datasets,
    load_dataset,
    sample_few_shot,
)
from .data import register_dataset as register  # noqa: F401
from .data.registry import _REGISTRY as REGISTRY  # noqa: F401
