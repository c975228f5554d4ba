"""One entry point from (model name, pretrained tag or path) to a usable backbone.

Real backbones come from open_clip's factory. Other families plug in with
:func:`register_backbone_provider`: names that start with a registered prefix go to that
provider's loader. The miniature world's tiny CLIP is one (prefix ``gla-world``, loader
:func:`gla.world.backbone.load_world_backbone`, registered by the world's plug-in). All are
served by :func:`load_backbone`, so notebooks switch between them by parameters alone.

Local checkpoint files: OpenAI's released files are TorchScript archives and their models
use QuickGELU; :func:`checkpoint_format` tells them from plain state dicts, and
:func:`resolve_model_name` picks the ``-quickgelu`` model for them. For a state dict, whose
origin cannot be read from the file, the user says which activation its weights were
trained with: ``quick_gelu`` here, :data:`ACTIVATION_OPTION` at every entry point.

open_clip is imported inside the functions that use it: it takes about a second to import
(with torchvision), and ``import gla``, ``gla --help`` and the world's backbone need neither.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .hub import check_weights_reachable, explain_missing_weights, hub_offline
from .plugins import ensure_plugins

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
#: How each entry point that loads a model takes the activation of a checkpoint file's weights.
ACTIVATION_OPTION = {"gelu": "--no-quick-gelu on the command line (gla run, gla finetune), quick_gelu: false in the "
                             "book's parameter file or a notebook's parameters, quick_gelu=False in Python",
                     "quickgelu": "--quick-gelu, quick_gelu: true or quick_gelu=True"}
_registered = False
BackboneLoader = Callable[[str, str, torch.device, str], "Backbone"]


@dataclass(frozen=True)
class ProviderInfo:
    """What a backbone's provider knows beyond the weights, for the notebooks that use it
    (:attr:`gla.notebook.Context.info`). Every field may be absent (None): an open_clip
    backbone has none of them.

    Attributes
    ----------
    world : object, optional
        The settings of the generated world the provider's models were pretrained on
        (the miniature world's ``WorldConfig``); None for models of real data.
    seed_spread : dict, optional
        How far the headline numbers move across seeds, when the provider measured it:
        ``seeds``, ``values`` (metric -> one value per seed) and ``source``.
    true_log_prior : callable, optional
        ``true_log_prior(dataset) -> (K,) tensor or None``: the true pretraining log prior
        over a dataset's classes, where the provider knows it.
    corpus_counts : callable, optional
        ``corpus_counts(dataset) -> (K,) tensor or None``: pretraining images per class.
    properties : mapping, optional
        Which properties of real CLIP's regime the provider's model was measured to have
        (property id -> whether it holds in every measured seed; the world's P1-P6,
        :mod:`gla.world.regime`), so that a claim that needs a missing one can say so
        (:func:`gla.claims.check_claims`); None when not measured (real backbones are CLIP).
    details : mapping
        Anything else the provider records about the weights it chose (the world's preset
        and where its checkpoint came from), for display.
    """

    world: Any = None
    seed_spread: Mapping[str, Any] | None = None
    true_log_prior: Callable[[str], Any] | None = None
    corpus_counts: Callable[[str], Any] | None = None
    properties: Mapping[str, bool] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedBackbone:
    """What a provider's ``prepare`` resolves for a notebook (see :func:`gla.notebook.context`).

    Attributes
    ----------
    pretrained : str
        The weights to load (e.g. the world's checkpoint path).
    dataset_options : mapping
        Options for the datasets that declare them (the world's ``world`` and ``scale``).
    recipe : gla.finetune.FinetuneConfig
        The end-to-end fine-tuning recipe for these models.
    prompts : gla.protocols.PromptRecipe
        The few-shot prompt-learning recipe.
    note : str
        Whose numbers these are (shown under a chapter's first cell).
    info : ProviderInfo
        What the provider knows beyond the weights.
    """

    pretrained: str
    dataset_options: Mapping[str, Any]
    recipe: Any
    prompts: Any
    note: str
    info: ProviderInfo = ProviderInfo()


@dataclass(frozen=True)
class BackboneProvider:
    """A registered source of backbones other than open_clip's factory.

    Everything the core needs to know about these models is declared here, so no core
    module names them: which names and ``pretrained`` values they take, whether they are
    the backbone used when none is named, and whether the book's shipped pages describe a
    run on them.

    Attributes
    ----------
    prefix : str
        Model names starting with it are served by ``load``.
    load : callable
        ``load(name, pretrained, device, precision) -> Backbone``.
    prepare : callable, optional
        Called by :func:`gla.notebook.context` to resolve a notebook's ``pretrained`` (e.g.
        the world pretrains or reuses its CLIP); returns a :class:`PreparedBackbone`. Its
        keyword parameters beyond ``smoke``, ``cache_dir`` and ``progress`` are the options
        its models take.
    default_pretrained : str
        The ``pretrained`` value that asks for the default weights (the world's
        ``"world"``); ``""`` (random initialisation or ``prepare``'s choice) is always taken.
    models : tuple of str
        The model names served (the first is the default model); empty: any name with the
        prefix.
    tags : tuple of str
        Other ``pretrained`` values the loader takes besides checkpoint files.
    default : bool
        These models are the backbone used when none is named (``gla run``, ``gla finetune``,
        :func:`gla.notebook.setup`): the first of ``models`` with ``default_pretrained``.
    shipped_pages : bool
        The pages shipped in ``book/`` describe a book run on these models (the world's);
        for other models the book writes its own pages (:mod:`gla.pages`).
    """

    prefix: str
    load: BackboneLoader
    prepare: Callable[..., PreparedBackbone] | None = None
    default_pretrained: str = ""
    models: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    default: bool = False
    shipped_pages: bool = False

    @property
    def pretrained_values(self) -> tuple[str, ...]:
        """The ``pretrained`` values taken besides checkpoint files (``""`` first)."""
        return tuple(dict.fromkeys(("", self.default_pretrained, *self.tags)))

    def serves(self, name: str) -> bool:
        """Whether ``name`` is one of this provider's models."""
        return name.startswith(self.prefix) and (not self.models or name in self.models)


_providers: dict[str, BackboneProvider] = {}


def register_backbone_provider(prefix: str, loader: BackboneLoader, prepare: Callable[..., Any] | None = None,
                               default_pretrained: str = "", *, models: Sequence[str] = (), tags: Sequence[str] = (),
                               default: bool = False, shipped_pages: bool = False) -> None:
    """Serve model names starting with ``prefix`` by ``loader`` instead of open_clip.

    Parameters
    ----------
    prefix : str
        Non-empty name prefix (``"gla-world"``). Registering a prefix again replaces its
        loader; the longest matching prefix wins.
    loader : callable
        ``loader(name, pretrained, device, precision) -> Backbone`` where ``pretrained`` is
        a string (``""`` for random initialisation), ``device`` a ``torch.device`` and
        ``precision`` open_clip's weight precision (``"fp32"``, ...).
    prepare : callable, optional
        Resolves a notebook's parameters for these models (see :class:`BackboneProvider`).
    default_pretrained : str, optional
        The ``pretrained`` value that gives these models their default weights.
    models : sequence of str, optional
        The model names served, each starting with ``prefix`` (empty: any such name).
    tags : sequence of str, optional
        Other ``pretrained`` values the loader takes besides checkpoint files.
    default : bool, optional
        These models are the backbone used when none is named (needs ``models``; when
        several providers declare it, none is the default and a backbone must be named).
    shipped_pages : bool, optional
        The book's shipped pages describe a run on these models.

    Raises
    ------
    ValueError
        An empty prefix, a model name outside the prefix, or ``default`` without ``models``.
    TypeError
        A loader that is not callable.
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"prefix: expected a non-empty model-name prefix, got {prefix!r}")
    if not callable(loader):
        raise TypeError(f"loader: expected a callable (name, pretrained, device, precision) -> Backbone, "
                        f"got {loader!r}")
    strangers = [m for m in models if not (isinstance(m, str) and m.startswith(prefix))]
    if strangers:
        raise ValueError(f"models: every name must start with the prefix '{prefix}', got {strangers}")
    if default and not models:
        raise ValueError("default: the default backbone is the first of models; name the models served")
    _providers[prefix] = BackboneProvider(prefix, loader, prepare, default_pretrained, tuple(models), tuple(tags),
                                          default, shipped_pages)


def backbone_providers() -> dict[str, BackboneProvider]:
    """The registered name prefixes and their providers (open_clip serves every other name)."""
    ensure_plugins()
    return dict(_providers)


def backbone_provider(name: str) -> BackboneProvider | None:
    """The provider serving a model name (None: open_clip's factory)."""
    ensure_plugins()
    matches = [p for p in _providers if name.startswith(p)]
    return _providers[max(matches, key=len)] if matches else None


def default_backbone() -> tuple[str, str] | None:
    """The backbone used when none is named: (model name, pretrained) of the one provider
    registered as the default (the world's ``("gla-world-tiny", "world")``), or None when no
    plug-in, or more than one, declares a default (then a backbone must be named)."""
    found = [p for p in backbone_providers().values() if p.default]
    return (found[0].models[0], found[0].default_pretrained) if len(found) == 1 else None


def resolve_backbone(name: str | None, pretrained: str | None, *, option: str = "backbone") -> tuple[str, str | None]:
    """``(name, pretrained)`` with the registered default filled in where ``name`` is None
    (``pretrained`` None then takes the default's weights).

    Raises
    ------
    ValueError
        ``name`` is None and no plug-in declares a default backbone (the message names
        ``option``, the parameter or command-line option to give).
    """
    if name is not None:
        return name, pretrained
    found = default_backbone()
    if found is None:
        declared = [p.models[0] for p in backbone_providers().values() if p.default]
        why = (f"several plug-ins declare one ({', '.join(declared)})" if declared else "no plug-in declares one")
        raise ValueError(f"{option}: no default backbone is registered ({why}); name a model and its weights, e.g. "
                         "the open_clip model ViT-B-16 with pretrained 'openai'")
    return found[0], found[1] if pretrained is None else pretrained

#: How a provider names its models in the book's tables: prefix -> ``label(name, pretrained)``.
_labels: dict[str, Callable[[str, str], str | None]] = {}


def register_backbone_label(prefix: str, label: Callable[[str, str], str | None]) -> None:
    """Name the models whose names start with ``prefix`` in tables and pages.

    Parameters
    ----------
    prefix : str
        Non-empty model-name prefix (``"gla-world"``); registering it again replaces its
        label, and the longest matching prefix wins.
    label : callable
        ``label(name, pretrained) -> str | None``: the reader's name of the model ``name``
        with the weights ``pretrained`` (a tag, a checkpoint path or ``""``), or None to
        leave it to the default rule (:func:`gla.report.model_label`).
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"prefix: expected a non-empty model-name prefix, got {prefix!r}")
    if not callable(label):
        raise TypeError(f"label: expected a callable (name, pretrained) -> str or None, got {label!r}")
    _labels[prefix] = label


def backbone_label(name: str, pretrained: str) -> str | None:
    """The label a registered provider gives ``name`` with ``pretrained`` (None: no label
    registered for the name, or the provider leaves it to the default rule)."""
    ensure_plugins()
    matches = [p for p in _labels if name.startswith(p)]
    return _labels[max(matches, key=len)](name, pretrained) if matches else None


#: File endings that mark a ``pretrained`` value as a checkpoint file, not a tag.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def is_checkpoint_path(pretrained: str | None) -> bool:
    """Whether a ``pretrained`` value names a checkpoint file (it holds a path separator or
    ends like a checkpoint, :data:`CHECKPOINT_SUFFIXES`) rather than a pretrained tag."""
    return bool(pretrained) and ("/" in pretrained or os.sep in pretrained or pretrained.endswith(CHECKPOINT_SUFFIXES))


def checkpoint_format(path: str | os.PathLike) -> str:
    """What kind of checkpoint file ``path`` is, from its layout alone (nothing is unpickled).

    Returns
    -------
    str
        ``"torchscript"`` (a TorchScript archive, e.g. OpenAI's released CLIP files: a zip
        with a ``code/`` folder or ``constants.pkl``), ``"state_dict"`` (a ``torch.save``
        zip), ``"safetensors"``, or ``"unknown"`` (e.g. a legacy non-zip pickle).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return "safetensors"
    if not zipfile.is_zipfile(path):
        return "unknown"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    parts = [n.split("/") for n in names]
    if any(len(p) > 2 and p[1] == "code" for p in parts) or any(n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "state_dict"
    return "unknown"


def register_model_configs() -> None:
    """Register the package's model configs (the world's CLIP) with open_clip, once."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


@dataclass
class Backbone:
    """A CLIP-like model with what is needed to use it.

    Attributes
    ----------
    model : torch.nn.Module
        The open_clip model (``encode_image``, ``encode_text``, ``logit_scale``).
    preprocess : callable
        Image transform for evaluation (PIL image or, for the world, a tensor in [0, 1]).
    tokenizer : callable
        ``tokenizer(list_of_str) -> (B, context_length)`` long tensor.
    name, pretrained : str
        What was asked for; ``pretrained`` is the tag, the path, or ``""`` (random init).
    device : torch.device
    metadata : dict
        Extra information stored with a world checkpoint (its settings and measurements).
    """

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    name: str
    pretrained: str
    device: torch.device
    metadata: dict

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features of a preprocessed batch."""
        f = self.model.encode_image(images.to(self.device))
        return torch.nn.functional.normalize(f.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text features."""
        f = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
        return torch.nn.functional.normalize(f.float(), dim=-1)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


def provider_models() -> list[str]:
    """The model names registered providers declare (:attr:`BackboneProvider.models`), the
    default backbone's first."""
    providers = sorted(backbone_providers().values(), key=lambda p: not p.default)
    return list(dict.fromkeys(m for p in providers for m in p.models))


def list_backbones() -> list[str]:
    """Every model name a backbone can be built from: those registered providers serve
    first (their declared models, then open_clip configs under their prefixes), then the
    rest of open_clip's."""
    import open_clip

    register_model_configs()
    names = open_clip.list_models()
    prefixes = tuple(backbone_providers())
    served = provider_models() + sorted(n for n in names if n.startswith(prefixes))
    return list(dict.fromkeys(served)) + [n for n in names if not n.startswith(prefixes)]


def load_backbone(name: str, pretrained: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                  precision: str = "fp32", cache_dir: str | None = None,
                  quick_gelu: bool | None = None) -> Backbone:
    """Build a backbone from an open_clip model name and a pretrained tag or checkpoint path.

    Parameters
    ----------
    name : str
        An open_clip model name (``ViT-B-16``, ``RN50-quickgelu``, ...) or a name served by
        a registered provider (:func:`register_backbone_provider`, e.g. ``gla-world-tiny``).
    pretrained : str or path, optional
        An open_clip pretrained tag (``openai``, ``laion2b_s34b_b88k``, ...), a local
        checkpoint file, or None for random initialisation (tests only). For a world
        model it is the checkpoint path written by :func:`gla.world.pretrain`.
    device : str or torch.device
    precision : str
        open_clip precision (``fp32``, ``fp16``, ``bf16``, ``amp``).
    cache_dir : str, optional
        Hugging Face cache folder for downloaded weights.
    quick_gelu : bool, optional
        Whether the weights were trained with QuickGELU (OpenAI's were); see
        :func:`resolve_model_name` (None decides from the weights where it can).

    Returns
    -------
    Backbone

    Raises
    ------
    ValueError
        Unknown name, a state dict whose activation is not said (:func:`resolve_model_name`),
        or a checkpoint of another architecture (the message names the file, the model and
        what was expected).
    FileNotFoundError
        ``pretrained`` looks like a path and no file is there.
    RuntimeError
        Weights that cannot be found (with advice on the cache and offline use), at once
        when the hub cannot be reached (:func:`gla.hub.check_weights_reachable`); weights in the
        cache are then read from it without asking the hub.

    Notes
    -----
    OpenAI's weights were trained with QuickGELU; open_clip names such models
    ``*-quickgelu`` and builds plain names with GELU, which silently degrades OpenAI
    weights. Hence the rules for ``quick_gelu`` above.
    """
    import open_clip

    device = torch.device(device)
    pretrained = "" if pretrained is None else str(pretrained)
    provider = backbone_provider(name)
    if provider is not None:
        return provider.load(name, pretrained, device, precision)
    name = resolve_model_name(name, pretrained, quick_gelu)
    is_path = is_checkpoint_path(pretrained)
    if is_path:
        pretrained = str(Path(pretrained).expanduser())
    fmt = checkpoint_format(pretrained) if is_path else None
    cache_only = bool(pretrained) and not is_path and check_weights_reachable(name, pretrained, cache_dir)
    try:
        if fmt == "torchscript":
            model, preprocess = _from_torchscript(name, pretrained, device, precision)
        else:
            with hub_offline(cache_only):
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=pretrained or None, device=device, precision=precision, cache_dir=cache_dir)
    except (AssertionError, KeyError, RuntimeError) as exc:
        if is_path and (not isinstance(exc, RuntimeError) or _is_shape_error(exc)):
            raise _wrong_architecture(name, pretrained, exc) from exc
        if isinstance(exc, RuntimeError):
            raise explain_missing_weights(name, pretrained, exc) from exc
        raise
    model.eval()
    return Backbone(model, preprocess, open_clip.get_tokenizer(name), name, pretrained, device, {})


def resolve_model_name(name: str, pretrained: str | os.PathLike | None = None, quick_gelu: bool | None = None) -> str:
    """The open_clip model name whose activation matches the weights (nothing is loaded).

    ViT-B-32, ViT-B-16, RN50 and others exist with GELU (the plain name) and with
    QuickGELU (``<name>-quickgelu``); OpenAI's weights were trained with QuickGELU, most
    others (LAION, DataComp) with GELU, and the wrong one silently degrades the model.

    Parameters
    ----------
    name : str
        An open_clip model name, or one served by a registered provider (returned as is).
    pretrained : str or path, optional
        A pretrained tag, a checkpoint file, or None / ``""`` (random initialisation).
    quick_gelu : bool, optional
        Whether the weights were trained with QuickGELU. None decides from the weights:
        the tag ``openai`` and TorchScript files (OpenAI's release format) get the
        ``-quickgelu`` twin; another tag keeps ``name``; a state-dict file with a plain name
        whose twin exists is refused, since its origin cannot be read from it. True or
        False is obeyed.

    Returns
    -------
    str
        ``name`` or its ``-quickgelu`` twin.

    Raises
    ------
    ValueError
        An unknown name, a state dict whose activation is not said (the message names
        :data:`ACTIVATION_OPTION`), ``quick_gelu`` contradicting the name, or True for a
        model without a QuickGELU twin.
    FileNotFoundError
        ``pretrained`` looks like a path and no file is there.
    """
    import open_clip

    if quick_gelu is not None and not isinstance(quick_gelu, bool):
        raise ValueError(f"quick_gelu: expected True, False or None (decide from the weights), got {quick_gelu!r}")
    if backbone_provider(name) is not None:
        return name
    register_model_configs()
    known = open_clip.list_models()
    pretrained = "" if pretrained is None else str(pretrained)
    fmt = None
    if is_checkpoint_path(pretrained):
        if not Path(pretrained).expanduser().is_file():
            raise FileNotFoundError(f"pretrained: no checkpoint file at {pretrained}")
        fmt = checkpoint_format(Path(pretrained).expanduser())
    resolved = _choose_activation(name, pretrained, fmt, quick_gelu, known)
    if resolved not in known:
        raise ValueError(f"name: unknown model '{resolved}'; see gla.backbones.list_backbones() for the known names")
    return resolved


def _choose_activation(name: str, pretrained: str, fmt: str | None, quick_gelu: bool | None,
                       known: list[str]) -> str:
    """The model name whose activation matches the weights (see :func:`resolve_model_name`)."""
    is_qg = name.endswith("-quickgelu")
    base = name[: -len("-quickgelu")] if is_qg else name
    twin = f"{base}-quickgelu"
    if quick_gelu is True:
        if not is_qg and twin not in known:
            raise ValueError(f"quick_gelu: True ({ACTIVATION_OPTION['quickgelu']}), but open_clip has no '{twin}' "
                             f"model to build '{name}' with QuickGELU")
        return twin
    if quick_gelu is False:
        if is_qg:
            raise ValueError(f"quick_gelu: False (GELU) contradicts the model name '{name}' (QuickGELU); for GELU "
                             f"weights use the model '{base}', for QuickGELU ones leave the activation option out")
        return name
    if is_qg or twin not in known:
        return name
    if pretrained == "openai" or fmt == "torchscript":
        return twin
    if fmt is not None:  # a state dict (or other file): its origin cannot be read from it
        raise ValueError(
            f"pretrained: cannot tell whether {pretrained} holds OpenAI's weights (trained with QuickGELU) or "
            f"weights trained with GELU (LAION, DataComp, ...), and model '{name}' would use GELU. Say which. "
            f"For OpenAI's weights: the model name '{twin}' ({ACTIVATION_OPTION['quickgelu']}). "
            f"For GELU weights: {ACTIVATION_OPTION['gelu']}.")
    return name


def _from_torchscript(name: str, path: str, device: torch.device, precision: str):
    """Build ``name`` and load the state dict of a TorchScript archive (OpenAI's format) into it."""
    import warnings

    import open_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; OpenAI's files need it
        archive = torch.jit.load(path, map_location="cpu")
    state = {k: v for k, v in archive.state_dict().items()
             if k not in ("input_resolution", "context_length", "vocab_size")}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: they come next
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device="cpu",
                                                                     precision="fp32")
    finally:
        root.setLevel(level)
    buffers = {k for k, _ in model.named_buffers()}  # scripted modules also save non-persistent buffers
    state = {k: v for k, v in state.items() if k not in buffers or k in model.state_dict()}
    model.load_state_dict(state)
    if precision in ("fp16", "bf16"):
        open_clip.convert_weights_to_lp(model, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
    return model.to(device), preprocess


def _is_shape_error(exc: Exception) -> bool:
    text = str(exc)
    return "size mismatch" in text or "Missing key" in text or "Unexpected key" in text or "state_dict" in text


def _wrong_architecture(name: str, path: str, exc: Exception) -> ValueError:
    import open_clip

    cfg = open_clip.get_model_config(name) or {}
    vis, txt = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    expected = (f"embed_dim {cfg.get('embed_dim')}, vision width {vis.get('width')} / layers {vis.get('layers')}, "
                f"text width {txt.get('width')} / layers {txt.get('layers')}")
    return ValueError(
        f"pretrained: the checkpoint {path} does not fit model '{name}' (expected the weights of a '{name}': "
        f"{expected}); it holds another architecture. Pass the model name it was trained as. "
        f"Detail: {type(exc).__name__}: {str(exc)[:500]}")
