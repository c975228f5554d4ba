"""Plug-ins: packages that extend gla's registries (datasets, templates, backbones, CLI).

A plug-in is a function listed under the entry-point group ``gla.plugins`` of its
distribution's ``pyproject.toml``; it is called once, with no arguments, the first time a
registry is read, and registers what it brings through the public registries
(:func:`gla.data.register_dataset`, :func:`gla.data.register_templates`,
:func:`gla.backbones.register_backbone_provider`). The miniature world is such a plug-in
(``world = "gla.world.plugin:register"``); no core module imports :mod:`gla.world`. When
the package runs from a source tree whose installed metadata lacks the entry points, the
package's own plug-ins (:data:`BUILTIN_PLUGINS`) are loaded instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

PLUGIN_GROUP = "gla.plugins"
#: Plug-ins shipped with the package (name -> "module:function"), loaded when the
#: installed distribution does not declare them (e.g. running from a source checkout).
BUILTIN_PLUGINS: dict[str, str] = {"world": "gla.world.plugin:register", "world-labels": "gla.world_labels:register"}
_state = {"loaded": False}
_commands: list[Callable[..., Any]] = []


def register_command(add_parser: Callable[..., Any]) -> None:
    """Add a ``gla`` subcommand: ``add_parser(subparsers, **parser_kwargs)`` is called when
    the command line is built (the world adds ``gla world``)."""
    if add_parser not in _commands:
        _commands.append(add_parser)


def plugin_commands() -> list[Callable[..., Any]]:
    """The subcommands registered by plug-ins."""
    ensure_plugins()
    return list(_commands)


def _plugin_entry_points() -> list[Any]:
    return list(importlib.metadata.entry_points(group=PLUGIN_GROUP))


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



def ensure_plugins() -> None:
    """Load the plug-ins once (every registry calls this before it is read). A failure is
    raised, and raised again on the next call rather than leaving a partial registry."""
    if _state["loaded"]:
        return
    _state["loaded"] = True
    try:
        load_plugins()
    except BaseException:
        _state["loaded"] = False
        raise
