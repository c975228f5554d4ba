"""Checks of names and paths before anything runs, shared by the command line
(:mod:`gla.cli`) and the book runner (:func:`check_parameters`, before any kernel starts).

Each check raises :class:`gla.errors.UsageError` with one message that names what is wrong
(the argument, the file, the dataset) and what was expected; nothing is computed, no model
is loaded and no kernel started. Dataset checks read each split's file listing, as the
loaders do, so a layout mistake is found here rather than after a fine-tune.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .backbones import (
    BackboneProvider,
    backbone_provider,
    is_checkpoint_path,
    provider_models,
    register_model_configs,
    resolve_model_name,
)
from .book_source import declared_parameters, parameter_defaults
from .data import dataset_entry, list_datasets, load_dataset
from .errors import UsageError, did_you_mean
from .hub import check_weights_reachable
from .notebook import extra_backbone, provider_options, provider_options_error


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Turn the library's input errors (``ValueError``, ``FileNotFoundError``,
    ``KeyError``) into :class:`UsageError` (exit status 2 on the command line)."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise UsageError(error_message(exc)) from exc


def error_message(exc: BaseException) -> str:
    """The one line a user reads for an error: a ``KeyError``'s text without quotes, a
    DataLoader worker's own last line, or the message."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    text = str(exc) or type(exc).__name__
    if "Original Traceback" in text:  # raised in a DataLoader worker: the worker's last line is the error
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1]
    return text


def check_backbone(name: str, pretrained: str | None, quick_gelu: bool | None = None, *, what: str = "") -> str:
    """Check a backbone before it is loaded; returns the model name that will be built.

    The registered providers are asked first: a name one of them serves must be a model it
    declares, with a ``pretrained`` value it declares (``""``, its default such as the
    world's ``"world"``, one of its tags) or an existing checkpoint file, and no
    ``quick_gelu``. Any other name must be a model open_clip knows, with a known tag of it,
    an existing checkpoint file or nothing. For a checkpoint file the activation is resolved
    (:func:`gla.backbones.resolve_model_name`: a state dict whose activation is not said is
    refused, naming the option that says it). For a tag whose weights must come from the
    local cache (``HF_HUB_OFFLINE`` set, or the hub unreachable) the cache must hold them
    (:func:`gla.hub.check_weights_reachable`).

    Parameters
    ----------
    name, pretrained : str
        The model and its weights.
    quick_gelu : bool, optional
        Whether the weights were trained with QuickGELU (None: detected).
    what : str
        Prefix of the message (e.g. a chapter's name); empty for the command line.

    Raises
    ------
    UsageError
        With one message naming what is wrong.
    """
    prefix = f"{what}: " if what else ""
    pretrained = "" if pretrained is None else str(pretrained)
    provider = backbone_provider(name)
    if provider is not None:
        _check_provider_backbone(provider, name, pretrained, quick_gelu, prefix)
        return name
    import open_clip  # about a second to import: only when an open_clip name is checked (see gla.backbones)

    register_model_configs()
    models = open_clip.list_models()
    if name not in models and f"{name}-quickgelu" not in models:
        served = provider_models()
        raise UsageError(f"{prefix}backbone: unknown model '{name}'{did_you_mean(name, served + models)}; the known "
                         "names are open_clip.list_models()" + (f" and the plug-ins' ({', '.join(served)})"
                                                                if served else ""))
    if is_checkpoint_path(pretrained) and not Path(pretrained).expanduser().is_file():
        raise UsageError(f"{prefix}pretrained: no checkpoint file at {pretrained}")
    try:
        resolved = resolve_model_name(name, pretrained, quick_gelu)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(f"{prefix}{exc}") from exc
    if not pretrained or is_checkpoint_path(pretrained):
        return resolved
    tags = {t for m in {resolved, name} for t in open_clip.list_pretrained_tags_by_model(m)}
    if pretrained not in tags:
        raise UsageError(f"{prefix}pretrained: '{pretrained}' is not a pretrained tag of {resolved} "
                         f"(known: {', '.join(sorted(tags)) or 'none'}) nor a checkpoint file")
    try:
        check_weights_reachable(resolved, pretrained)
    except RuntimeError as exc:
        raise UsageError(f"{prefix}{exc}") from exc
    return resolved


def _check_provider_backbone(provider: BackboneProvider, name: str, pretrained: str, quick_gelu: bool | None,
                             prefix: str) -> None:
    """The rules of :func:`check_backbone` for a model a registered provider serves."""
    if not provider.serves(name):
        raise UsageError(f"{prefix}backbone: unknown model '{name}'{did_you_mean(name, list(provider.models))}; the "
                         f"plug-in serving '{provider.prefix}*' declares {', '.join(provider.models)}")
    if is_checkpoint_path(pretrained):
        if not Path(pretrained).expanduser().is_file():
            raise UsageError(f"{prefix}pretrained: no checkpoint file at {pretrained}")
    elif pretrained not in provider.pretrained_values:
        values = ", ".join(f"'{v}'" for v in provider.pretrained_values if v)
        expected = f"{values} or a checkpoint file" if values else "a checkpoint file"
        raise UsageError(f"{prefix}pretrained: expected {expected} for {name}, got '{pretrained}'")
    if quick_gelu is not None:
        raise UsageError(f"{prefix}quick_gelu: the activation of an open_clip checkpoint file; {name} is not an "
                         "open_clip model: leave the option out")


def check_datasets(names: Sequence[str], splits: Sequence[str] | None, data_root: str | None, what: str = "datasets",
                   checked: set | None = None) -> None:
    """Check dataset names and, for real datasets, their files under the data root.

    Every name must be registered (a near miss, in any case, is suggested) with the
    needed ``splits`` (None: every split it has); every split of a real dataset is
    loaded once, which reads its file listing (world tasks need no data root).
    ``checked`` (a set shared by several calls) skips (name, split, root) triples
    already checked.

    Raises
    ------
    UsageError
        Naming the dataset, the option or parameter (``what``) and what was expected.
    """
    known = list_datasets()
    for n in names:
        if not isinstance(n, str) or n not in known:
            raise UsageError(f"{what}: unknown dataset {n!r}{did_you_mean(str(n), known)}; 'gla datasets' lists the "
                             f"{len(known)} known names")
        missing = [s for s in splits or () if s not in dataset_entry(n).splits]
        if missing:
            raise UsageError(f"{what}: dataset '{n}' has the splits {', '.join(dataset_entry(n).splits)}; this "
                             f"needs {', '.join(splits)}")
    real = [n for n in names if dataset_entry(n).kind == "real"]
    if not real:
        return
    root = data_root or os.environ.get("GLA_DATA_ROOT")
    if not root:
        raise UsageError(f"{what}: {', '.join(real)} are read from disk: pass --data-root or set GLA_DATA_ROOT "
                         "('gla datasets' shows the expected layouts)")
    if not Path(root).is_dir():
        raise UsageError(f"{what}: data root: no folder at {root}")
    checked = set() if checked is None else checked
    for n in real:
        for s in splits or dataset_entry(n).splits:
            if (n, s, str(root)) in checked:
                continue
            try:
                load_dataset(n, s, root=root)
            except (ValueError, FileNotFoundError, KeyError) as exc:
                raise UsageError(f"{what}: {error_message(exc)}") from exc
            checked.add((n, s, str(root)))


def check_files(paths: Iterable[tuple[str, str | None]], what: str = "") -> None:
    """Raise :class:`UsageError` for the first ``(parameter, path)`` whose file is missing
    (None or empty paths are skipped)."""
    prefix = f"{what}: " if what else ""
    for key, p in paths:
        if p and not Path(str(p)).expanduser().is_file():
            raise UsageError(f"{prefix}{key}: no file at {p}")


# Parameters that name datasets, and the input files a notebook reads (outputs of the run,
# such as few_shot_csv and results_root, are not checked).
DATASET_PARAMETERS = ("dataset", "datasets", "shifted", "few_shot_dataset")
INPUT_FILES = ("counts_file", "prior_file")
# A dataset parameter's value that lets the notebook choose (see chapter 09).
CHOSEN_BY_THE_NOTEBOOK = ("default",)


def _dataset_names(value: Any) -> list[str]:
    if value is None or value in CHOSEN_BY_THE_NOTEBOOK:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [n for v in value.values() for n in _dataset_names(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _dataset_names(v)]
    return [value]  # not a name: check_datasets says what was expected


def check_parameters(plan: Mapping[str, tuple[Path, Mapping[str, Any]]]) -> None:
    """Check every name and path the notebooks of ``plan`` (stem -> (source, parameters))
    receive, before any kernel starts.

    For each notebook, over its parameters and the defaults of its ``parameters`` cell:
    the backbone and its weights, with the activation of a checkpoint file
    (:func:`check_backbone`; fully for notebooks that declare ``quick_gelu``,
    which load an open_clip model, the name and file alone for the others), each of
    ``extra_backbones``, options of a provider's models (the world's ``world_seed``) given
    to an open_clip backbone, the data root, every dataset name and each split's layout
    under the data root (:func:`check_datasets`), and the input files
    (``counts_file``, ``prior_file``).

    Raises
    ------
    gla.errors.UsageError
        The first problem, with the chapter, the parameter and what to write instead.
    """
    datasets_checked: set = set()
    for stem, (src, nb_params) in plan.items():
        declared = set(declared_parameters(src))
        p = {**parameter_defaults(src), **nb_params}
        backbone, pretrained = p.get("backbone"), p.get("pretrained")
        root = p.get("data_root")
        if root and not Path(str(root)).expanduser().is_dir():
            raise UsageError(f"{stem}: data_root: no folder at {root}")
        if isinstance(backbone, str):
            served = backbone_provider(backbone) is not None
            options = sorted(provider_options() & declared) if not served else []
            if options:
                raise UsageError(f"{stem}: {provider_options_error(backbone, options, chapter=stem)}")
            if "quick_gelu" in declared:
                check_backbone(backbone, pretrained, p.get("quick_gelu"), what=stem)
            elif isinstance(pretrained, str) and is_checkpoint_path(pretrained):
                check_files([("pretrained", pretrained)], stem)
        for i, entry in enumerate(p.get("extra_backbones") or []):
            try:
                name, weights, quick_gelu = extra_backbone(entry)
            except ValueError as exc:
                raise UsageError(f"{stem}: {exc}") from exc
            check_backbone(name, weights, quick_gelu, what=f"{stem}: extra_backbones[{i}]")
        for key in DATASET_PARAMETERS:
            if key in p:
                check_datasets(_dataset_names(p[key]), None, root, what=f"{stem}: {key}", checked=datasets_checked)
        check_files([(k, p.get(k)) for k in INPUT_FILES], stem)
