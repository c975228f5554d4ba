"""One registry for every dataset: real readers, the world's tasks and other plug-ins.

Every loader has one signature, ``loader(split, *, root, transform, **options)``, and
returns a :class:`~gla.data.images.LabelledImages`. A dataset declares the options it
takes (:attr:`DatasetEntry.options`); anything else is an error that names them.

Plug-ins. Packages add datasets through the entry-point group ``gla.plugins``: each entry
point is a function called once, with no arguments, that calls :func:`register_dataset`
(and :func:`gla.data.templates.register_templates`). They are loaded lazily, the first
time the registry is read. The miniature world is such a plug-in
(``gla.world.plugin:register``); no core module imports :mod:`gla.world`. When the
package runs from a source tree whose installed metadata lacks the entry points, the
package's own plug-ins (:data:`BUILTIN_PLUGINS`) are loaded instead.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .images import LabelledImages

PLUGIN_GROUP = "gla.plugins"
#: Plug-ins shipped with the package (name -> "module:function"), loaded when the
#: installed distribution does not declare them (e.g. running from a source checkout).
BUILTIN_PLUGINS: dict[str, str] = {"world": "gla.world.plugin:register"}
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
    """

    name: str
    loader: Callable[..., LabelledImages]
    splits: tuple[str, ...]
    kind: str
    role: str = ""
    description: str = ""
    options: tuple[str, ...] = ()
    few_shot: str = "coop"

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
_state = {"readers": False, "plugins": False}


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


def _ensure_loaded() -> None:
    # Flags are set first (a plug-in may read the registry while registering) and reset on
    # failure, so an error surfaces again on the next call instead of leaving a partial registry.
    for key, load in (("readers", _import_readers), ("plugins", load_plugins)):
        if not _state[key]:
            _state[key] = True
            try:
                load()
            except BaseException:
                _state[key] = False
                raise


def _import_readers() -> None:
    for mod in READER_MODULES:
        importlib.import_module(mod)


def _plugin_entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=PLUGIN_GROUP))


def load_plugins() -> list[str]:
    """Call every plug-in's register function once (done lazily by the registry).

    Entry points of the group ``gla.plugins`` come first; a plug-in of
    :data:`BUILTIN_PLUGINS` that no installed distribution declares is loaded from the
    package itself. An error while importing or registering a plug-in is raised, with the
    plug-in named.

    Returns
    -------
    list of str
        ``"name=module:function"`` of the plug-ins loaded.
    """
    targets: dict[str, tuple[str, Callable[[], Any]]] = {}
    for ep in _plugin_entry_points():
        targets.setdefault(ep.name, (ep.value, ep.load))
    for name, value in BUILTIN_PLUGINS.items():
        if name not in targets:
            targets[name] = (value, lambda value=value: _resolve(value))
    loaded = []
    for name, (value, load) in targets.items():
        try:
            register = load()
        except Exception as exc:
            raise ImportError(f"gla plug-in '{name}' ({value}) could not be imported: {exc}") from exc
        register()
        loaded.append(f"{name}={value}")
    return loaded


def _resolve(value: str) -> Callable[[], Any]:
    module, _, attr = value.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def list_datasets(kind: str | None = None) -> list[str]:
    """Names of registered datasets, optionally of one ``kind`` (``"real"``, ``"world"``)."""
    _ensure_loaded()
    return [n for n, e in _REGISTRY.items() if kind is None or e.kind == kind]


def dataset_entry(name: str) -> DatasetEntry:
    """The registry entry of ``name``; an unknown name is an error listing the known ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown dataset '{name}'; known: {', '.join(_REGISTRY)}")
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
