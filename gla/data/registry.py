"""One registry for every dataset: real readers, the world's tasks and other plug-ins.

Every loader has one signature, ``loader(split, *, root, transform, **options)``, and
returns a :class:`~gla.data.images.LabelledImages`. A dataset declares the options it
takes (:attr:`DatasetEntry.options`); anything else is an error that names them.

Plug-ins (:mod:`gla.plugins`) add datasets by calling :func:`register_dataset` (and
:func:`gla.data.templates.register_templates`); they are loaded lazily, the first time the
registry is read. The miniature world is such a plug-in; no core module imports it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import did_you_mean
from ..plugins import ensure_plugins
from .images import LabelledImages

#: Modules that register the real datasets (imported on first use; errors surface).
READER_MODULES = ("gla.data.imagenet", "gla.data.coop", "gla.data.longtail", "gla.data.cifar")

FEW_SHOT_STYLES = ("coop", "gla-imagenet")


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    Parameters
    ----------
    name : str
        Registry name (``imagenet``, ``dtd``, ``world-main``, ...).
    loader : callable
        ``loader(split, *, root, transform, **options) -> LabelledImages``.
    splits : tuple of str
        The splits it serves.
    kind : str
        ``"real"`` (read from a data root) or ``"world"`` (rendered), or a plug-in's own kind.
    role : str
        What it stands for (the paper's dataset name).
    description : str
        One line for listings.
    options : tuple of str
        Keyword options the loader accepts besides ``root`` and ``transform``.
    few_shot : str
        How few-shot splits are drawn (:func:`gla.data.sampling.sample_few_shot`):
        ``"coop"`` (Dassl's draw, CoOp) or ``"gla-imagenet"`` (GLA's ImageNet split).
    layout : str
        The files a real dataset's reader expects under the data root (shown by
        ``gla datasets`` and in layout errors).
    shift_of : str, optional
        For a shifted test set: the dataset whose classes (and model) it shares
        (``imagenet`` for ImageNet-V2, ``world-main`` for ``world-main-sketch``).
    """

    name: str
    loader: Callable[..., LabelledImages]
    splits: tuple[str, ...]
    kind: str
    role: str = ""
    description: str = ""
    options: tuple[str, ...] = ()
    few_shot: str = "coop"
    layout: str = ""
    shift_of: str | None = None

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        if not callable(self.loader):
            raise TypeError(f"loader: expected a callable for dataset '{self.name}', got {type(self.loader).__name__}")
        if isinstance(self.splits, str) or not self.splits:
            raise ValueError(f"splits: expected a non-empty tuple of split names for '{self.name}'")
        if isinstance(self.options, str):
            raise ValueError(f"options: expected a tuple of option names for '{self.name}', got a string")
        if self.few_shot not in FEW_SHOT_STYLES:
            raise ValueError(f"few_shot: expected one of {FEW_SHOT_STYLES} for '{self.name}', got '{self.few_shot}'")
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "options", tuple(self.options))


_REGISTRY: dict[str, DatasetEntry] = {}
_state = {"readers": False}


def register_dataset(entry: DatasetEntry, *, replace: bool = False) -> DatasetEntry:
    """Add a dataset to the registry.

    Parameters
    ----------
    entry : DatasetEntry
        The dataset.
    replace : bool
        Allow replacing an entry of the same name (default: a duplicate is an error).

    Returns
    -------
    DatasetEntry
        ``entry``.
    """
    if not isinstance(entry, DatasetEntry):
        raise TypeError(f"entry: expected a DatasetEntry, got {type(entry).__name__}")
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"register_dataset: a dataset named '{entry.name}' is already registered "
                         f"(kind '{_REGISTRY[entry.name].kind}'); pass replace=True to replace it")
    _REGISTRY[entry.name] = entry
    return entry


def ensure_loaded() -> None:
    """Import the built-in dataset readers and load the plug-ins, once: after it, the
    registries of datasets and templates are complete."""
    # Flags are set first (a plug-in may read the registry while registering) and reset on
    # failure, so an error surfaces again on the next call instead of leaving a partial registry.
    if not _state["readers"]:
        _state["readers"] = True
        try:
            _import_readers()
        except BaseException:
            _state["readers"] = False
            raise
    ensure_plugins()


def _import_readers() -> None:
    for mod in READER_MODULES:
        importlib.import_module(mod)


def list_datasets(kind: str | None = None) -> list[str]:
    """Names of registered datasets, optionally of one ``kind`` (``"real"``, ``"world"``)."""
    ensure_loaded()
    return [n for n, e in _REGISTRY.items() if kind is None or e.kind == kind]


def dataset_entry(name: str) -> DatasetEntry:
    """The registry entry of ``name``; an unknown name is an error listing the known ones."""
    ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown dataset '{name}'{did_you_mean(str(name), _REGISTRY)}; known: "
                         f"{', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def data_root(name: str, root: str | os.PathLike | None) -> str | os.PathLike:
    """``root``, or the ``GLA_DATA_ROOT`` environment variable; an error naming both when neither is set."""
    root = root or os.environ.get("GLA_DATA_ROOT")
    if not root:
        raise ValueError(f"root: dataset '{name}' is read from disk; pass root=... or set GLA_DATA_ROOT")
    return root


def load_dataset(name: str, split: str, *, root: str | os.PathLike | None = None, transform: Callable | None = None,
                 **options: Any) -> LabelledImages:
    """Load one split of a registered dataset.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`.
    split : str
        One of the dataset's splits (``dataset_entry(name).splits``).
    root : path, optional
        Data root of datasets read from disk (default: the ``GLA_DATA_ROOT`` environment
        variable; datasets that need none ignore it).
    transform : callable, optional
        Applied to each image (a backbone's ``preprocess``).
    **options
        The dataset's own options (``dataset_entry(name).options``; world tasks take
        ``world``, ``seed`` and ``scale``). Any other keyword is an error.

    Returns
    -------
    LabelledImages
    """
    entry = dataset_entry(name)
    if split not in entry.splits:
        raise ValueError(f"split: dataset '{name}' has splits {entry.splits}, not '{split}'")
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        accepted = ", ".join(entry.options) if entry.options else "none"
        raise TypeError(f"load_dataset: dataset '{name}' does not take the option(s) {', '.join(unknown)}; "
                        f"it accepts: {accepted} (besides root and transform)")
    if root is None:
        root = os.environ.get("GLA_DATA_ROOT") or None
    return entry.loader(split, root=root, transform=transform, **options)
