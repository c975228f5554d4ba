"""What the book's notebooks share: one call turns a notebook's parameters into a run
context (:func:`setup`).

A notebook's parameters name a backbone (an open_clip model and pretrained tag or path, or
a registered provider's model such as the miniature world's CLIP), a data root, cache and
output folders, a device, the protocol and a smoke switch. :func:`setup` resolves them
once: the backbone's provider may prepare it (the world pretrains or reuses its CLIP and
names its tasks' options), the fine-tuning and prompt recipes are chosen, warnings that
would clutter a page are silenced, the book's figure style is applied, and a sentence that
says whose numbers these are is shown.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import report
from .backbones import ProviderInfo, backbone_provider, backbone_providers, list_backbones, resolve_backbone
from .cache import default_cache_dir
from .finetune import FinetuneConfig
from .protocols import PAPER_PROMPTS, PromptRecipe, ProtocolSettings, RunConfig


@dataclass
class Context:
    """Resolved settings of one notebook run.

    Attributes
    ----------
    backbone, pretrained : str
        What the protocols load (``pretrained`` resolved by the provider, e.g. the world's
        checkpoint path).
    output_dir : Path or None
        Where tables and figures go (None: a run that writes none).
    smoke : bool
        A quick run with scaled-down data (tests).
    config : RunConfig
        Where and how to run.
    settings : ProtocolSettings
        The procedure (``paper`` or ``exact``, templates, source prior, a given prior).
    recipe : FinetuneConfig
        End-to-end fine-tuning recipe.
    prompts : PromptRecipe
        Few-shot prompt-learning recipe.
    note : str
        Whose numbers these are.
    info : ProviderInfo
        What the backbone's provider knows beyond the weights (the world's settings, its
        seed spread, the true prior); empty for an open_clip backbone.
    """

    backbone: str
    pretrained: str | None
    output_dir: Path | None
    smoke: bool
    config: RunConfig
    settings: ProtocolSettings = ProtocolSettings()
    recipe: FinetuneConfig = FinetuneConfig()
    prompts: PromptRecipe = PromptRecipe()
    note: str = ""
    info: ProviderInfo = ProviderInfo()

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_dir

    @property
    def world(self):
        """The settings of the generated world the backbone was pretrained on, when its
        provider says (:attr:`gla.backbones.ProviderInfo.world`; else None)."""
        return self.info.world

    @property
    def is_world(self) -> bool:
        """Whether the backbone was pretrained on a generated world whose settings are known."""
        return self.info.world is not None

    def recipe_with(self, epochs: int | None = None) -> FinetuneConfig:
        """The fine-tuning recipe, with another number of epochs when given (not in smoke mode)."""
        if epochs is None or self.smoke:
            return self.recipe
        return replace(self.recipe, epochs=int(epochs))

    def trim(self, *lists):
        """In smoke mode keep the first two entries of each list (datasets, shots) and the
        first of the last list (seeds); otherwise return them unchanged."""
        if not self.smoke:
            return lists
        *head, last = lists
        return tuple(list(x)[:2] for x in head) + (list(last)[:1],)

    @property
    def seed_spread(self) -> dict[str, Any] | None:
        """How far the headline numbers move across seeds, when the provider measured it
        (:attr:`gla.backbones.ProviderInfo.seed_spread`); None otherwise."""
        return self.info.seed_spread

    @property
    def properties(self) -> dict[str, bool] | None:
        """Which properties of real CLIP's regime the model was measured to have (the
        world's P1-P6, :attr:`gla.backbones.ProviderInfo.properties`); None otherwise."""
        return None if self.info.properties is None else dict(self.info.properties)

    def true_log_prior(self, dataset: str):
        """The true pretraining log prior over a dataset's classes, when the provider knows
        it (the world does; for a real backbone it is unknown: None)."""
        fn = self.info.true_log_prior
        return fn(dataset) if fn else None

    def corpus_counts(self, dataset: str):
        """Pretraining images per class, when the provider knows them (else None)."""
        fn = self.info.corpus_counts
        return fn(dataset) if fn else None

    def run(self) -> dict[str, Any]:
        """Keyword arguments of every protocol: ``settings`` and ``config``."""
        return {"settings": self.settings, "config": self.config}

    def runs(self, extra_backbones: Sequence[Sequence[Any]] = ()) -> list[tuple[str, str | None, dict[str, Any]]]:
        """The backbones of one table: this context's, then each of ``extra_backbones``.

        Parameters
        ----------
        extra_backbones : sequence
            ``[name, pretrained]`` or ``[name, pretrained, quick_gelu]`` entries (a
            notebook's ``extra_backbones`` parameter). An entry's ``quick_gelu`` says how its
            own weights were trained (None or absent: detected, see
            :func:`gla.backbones.resolve_model_name`); this context's does not carry over.

        Returns
        -------
        list of (str, str or None, dict)
            Model name, pretrained tag or path, and the protocol keyword arguments to run it
            with (:meth:`run`, with the entry's ``quick_gelu``).
        """
        out = [(self.backbone, self.pretrained, self.run())]
        for entry in extra_backbones:
            name, pretrained, quick_gelu = extra_backbone(entry)
            out.append((name, pretrained, {"settings": self.settings,
                                           "config": replace(self.config, quick_gelu=quick_gelu)}))
        return out


def extra_backbone(entry: Any) -> tuple[str, str, bool | None]:
    """One entry of a notebook's ``extra_backbones`` as (name, pretrained, quick_gelu).

    Raises ``ValueError`` unless it is ``[name, pretrained]`` or ``[name, pretrained,
    quick_gelu]`` with strings and True, False or None.
    """
    ok = (isinstance(entry, (list, tuple)) and len(entry) in (2, 3) and isinstance(entry[0], str)
          and isinstance(entry[1], str) and (len(entry) == 2 or entry[2] is None or isinstance(entry[2], bool)))
    if not ok:
        raise ValueError(f"extra_backbones: expected [name, pretrained] or [name, pretrained, quick_gelu] entries "
                         f"(quick_gelu true, false or null), got {entry!r}")
    return entry[0], entry[1], entry[2] if len(entry) == 3 else None


def real_note(backbone: str, pretrained: str | None) -> str:
    return (f"These numbers are measured here with {backbone} ({pretrained}); published numbers, where a source "
            "exists, are shown beside them.")


def quiet() -> None:
    """Silence messages that would clutter a page: tqdm's notebook warning, open_clip's
    note about random initialisation (weights are loaded right after), and library
    warnings of the plotting stack."""
    warnings.filterwarnings("ignore", message="IProgress not found")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.getLogger("root").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    os.environ.setdefault("TQDM_DISABLE", "1")


def context(backbone: str | None = None, pretrained: str | None = None, *, smoke: bool = False,
            cache_dir: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = "results",
            device: str = "cpu", data_root: str | None = None, protocol: str = "paper", templates: str = "gla",
            prior_file: str | None = None, source_prior: str | None = None, estimator: str | None = None,
            precision: str | None = None, num_workers: int | None = None, quick_gelu: bool | None = None,
            progress: bool = True, **provider_options: Any) -> Context:
    """Resolve a notebook's parameters into a :class:`Context` (no display).

    ``backbone`` None takes the registered default backbone and, with ``pretrained`` None,
    its weights (:func:`gla.backbones.default_backbone`: the world's CLIP when the world's
    plug-in is installed). A backbone served by a registered provider is resolved by the
    provider's ``prepare`` (the world pretrains or reuses its CLIP and brings its recipes);
    for an open_clip backbone the few-shot prompt recipe follows ``protocol``: GLA's
    end-to-end recipe (:data:`gla.protocols.PAPER_PROMPTS`) under ``"paper"``, the
    cached-feature recipe under ``"exact"``.

    ``cache_dir`` defaults to ``GLA_CACHE_DIR`` or ``.gla_cache``. ``output_dir`` is
    created (None: the run writes no tables, e.g. ``gla finetune``; ``output_dir`` is then
    None). ``estimator`` is the prior's estimator id (:class:`gla.protocols.ProtocolSettings`).
    ``quick_gelu`` says whether an open_clip checkpoint file's weights were trained with
    QuickGELU (:attr:`gla.protocols.RunConfig.quick_gelu`). ``provider_options`` go to the
    backbone's provider (the world takes ``world_seed`` and ``zipf_exponent``).

    Raises
    ------
    ValueError
        A setting the protocol settings or the run configuration refuse (the message names
        the parameter), provider options for an open_clip backbone, or no backbone named
        and none registered as the default.
    """
    backbone, pretrained = resolve_backbone(backbone, pretrained)
    cache = Path(cache_dir or default_cache_dir()).resolve()
    out = None if output_dir is None else Path(output_dir).resolve()
    settings = ProtocolSettings(protocol=protocol, templates=templates, source_prior=source_prior,
                                prior_file=prior_file, estimator=estimator)
    provider = backbone_provider(backbone)
    if provider is not None and quick_gelu is not None:
        raise ValueError(f"quick_gelu: the activation of an open_clip checkpoint file; {backbone} is not an open_clip "
                         "model: leave quick_gelu out (None)")
    if provider is None and provider_options:
        raise ValueError(provider_options_error(backbone, provider_options))
    if provider is not None and provider.prepare is not None:
        prepared = provider.prepare(pretrained, smoke=smoke, cache_dir=cache, progress=progress, **provider_options)
        config = RunConfig(cache_dir=cache, data_root=data_root, device=device, precision=precision,
                           num_workers=num_workers, progress=progress, dataset_options=prepared.dataset_options)
        ctx = Context(backbone, prepared.pretrained, out, smoke, config, settings, prepared.recipe,
                      prepared.prompts, prepared.note, prepared.info)
    else:
        recipe = FinetuneConfig()
        # protocol "paper": the official few-shot recipe, through the image encoder (GPU-sized);
        # "exact": ours, on cached image features with AdamW (the protocol's other improvements).
        prompts = PAPER_PROMPTS if settings.protocol == "paper" else PromptRecipe()
        if smoke:
            recipe = replace(recipe, epochs=1, warmup_steps=1)
            prompts = replace(prompts, epochs=1, batch_size=32)
        config = RunConfig(cache_dir=cache, data_root=data_root, device=device, precision=precision,
                           num_workers=num_workers, quick_gelu=quick_gelu, progress=progress)
        ctx = Context(backbone, pretrained, out, smoke, config, settings, recipe, prompts,
                      real_note(backbone, pretrained))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    return ctx


_NOT_OPTIONS = ("pretrained", "smoke", "cache_dir", "progress")


def _options_of(provider) -> set[str]:
    if provider.prepare is None:
        return set()
    return set(inspect.signature(provider.prepare).parameters) - set(_NOT_OPTIONS)


def provider_options() -> set[str]:
    """The options that registered providers' models take (the world's ``world_seed`` and
    ``zipf_exponent``): the keyword parameters of their ``prepare``."""
    return {o for p in backbone_providers().values() for o in _options_of(p)}


def provider_options_error(backbone: str, options: Mapping[str, Any] | Sequence[str], chapter: str = "") -> str:
    """What to write when options of a provider's models (the world's ``world_seed``) reach
    an open_clip backbone: which models take them, and the parameters that select one
    (for ``chapter``, the override of a book parameter file)."""
    names = sorted(options)
    takers = [p for p in backbone_providers().values() if set(names) <= _options_of(p)]
    if not takers:
        return f"{', '.join(names)}: no backbone takes these options; leave them out"
    p = takers[0]
    model = p.models[0] if p.models else next((n for n in list_backbones() if n.startswith(p.prefix)), p.prefix)
    yaml = f"{{backbone: {model}" + (f", pretrained: {p.default_pretrained}}}" if p.default_pretrained else "}")
    python = f"backbone='{model}'" + (f", pretrained='{p.default_pretrained}'" if p.default_pretrained else "")
    verb = "are options" if len(names) > 1 else "is an option"
    if chapter:
        return (f"{', '.join(names)} {verb} of the models named {p.prefix}*, and {backbone}, an open_clip model, "
                f"takes none: to run this chapter on {model}, write under 'notebooks:' in the parameter file  "
                f"{chapter}: {yaml}  (or leave the chapter out with --only)")
    return (f"{', '.join(names)} {verb} of the models named {p.prefix}*, and {backbone}, an open_clip model, "
            f"takes none: to run this notebook on {model}, pass {python} (in a book parameter file, the chapter's "
            f"override under 'notebooks:': {yaml})")


def setup(backbone: str | None = None, pretrained: str | None = None, **params: Any) -> Context:
    """One call that sets a notebook up: quiet output, the book's figure style, the run
    context, and the sentence that says whose numbers these are (shown on the page).

    Takes the notebook's parameters (see :func:`context`); returns the :class:`Context`.
    """
    quiet()
    report.use_book_style()
    ctx = context(backbone, pretrained, progress=params.pop("progress", False), **params)
    try:  # IPython is there in a notebook's kernel only
        from IPython.display import Markdown, display

        display(Markdown(f"*{ctx.note}*"))
    except ImportError:  # outside IPython
        print(ctx.note)
    return ctx
