"""Deprecated shim: the readers moved to :mod:`gla.data` (this module will be removed)."""

from .data.classes import ClassGroups, ClassSubset, project_labels, project_log_prior, project_logits  # noqa: F401
from .data.cifar import CIFAR_LAYOUT, load_cifar100  # noqa: F401
from .data.coop import AIRCRAFT_LAYOUT, COOP, load_coop, load_fgvc_aircraft  # noqa: F401
from .data.images import PILTensorImages as _TensorImages  # noqa: F401
from .data.imagenet import (  # noqa: F401
    IMAGENET_LAYOUT,
    OBJECTNET_LAYOUT,
    SHIFT_LAYOUTS,
    imagenet_classnames,
    imagenet_wnids,
    load_imagenet,
    load_imagenet_shift,
    load_objectnet,
    objectnet_mapping,
)
from .data.longtail import LT, load_lt  # noqa: F401
from .data.templates import zero_shot_templates as templates_for  # noqa: F401
