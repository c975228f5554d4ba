"""What the world adds to the book's notebooks, through the backbone provider's ``prepare``
hook: its CLIP pretrained (or reused), its tasks' options, its recipes, and the truths only
a generated world knows (the pretraining prior, how many images of each concept the CLIP
saw)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..backbones import PreparedBackbone, ProviderInfo
from .concepts import World, WorldConfig
from .pretrain import SMOKE_PRETRAIN, PretrainConfig, corpus_counts, pretrain
from .tasks import TASKS

WORLD_NOTE = ("These numbers are measured in the miniature world that this project generates "
              "(a tiny CLIP pretrained on long-tailed synthetic data). They are the world's, not the paper's.")


def prepare(pretrained: str | None, *, smoke: bool = False, cache_dir: str | os.PathLike = ".gla_cache",
            progress: bool = True, world_seed: int = 0, world_preset: str = "default",
            zipf_exponent: float | None = None) -> PreparedBackbone:
    """Resolve the world's CLIP for a notebook.

    ``pretrained="world"`` (or empty) takes the preset's CLIP for ``world_seed``: the
    checkpoint that ships with the package when one does (:mod:`gla.world.shipped`), else
    the one pretrained here with the preset's recipe (cached; the smoke recipe when
    ``smoke``); a path is used as is. The world's tasks get ``world`` (and ``scale=0.1`` in
    smoke mode); fine-tuning uses the preset's recipe; prompt learning the cached-feature
    recipe, with 4 CoOp context vectors (the world's text tower reads 12 tokens; the book
    says so).
    """
    from ..protocols import PromptRecipe
    from .presets import get_preset
    from .shipped import shipped_checkpoint

    preset = get_preset(world_preset)
    wcfg = preset.world_config(world_seed)
    if zipf_exponent is not None:
        wcfg = replace(wcfg, zipf_exponent=zipf_exponent)
    as_preset = wcfg == preset.world_config(world_seed)
    source = "given"
    if pretrained in (None, "", "world"):
        shipped = shipped_checkpoint(preset, world_seed) if as_preset and not smoke else None
        if shipped is not None:
            pretrained, source = str(shipped), "shipped"
        else:
            pcfg = replace(SMOKE_PRETRAIN, seed=world_seed) if smoke else preset.pretrain_config(world_seed)
            pretrained = str(pretrain(wcfg, pcfg, cache_dir=Path(cache_dir), progress=progress))
            source = "smoke" if smoke else "pretrained"
    recipe = preset.finetune
    if smoke:
        recipe = replace(recipe, epochs=1, warmup_steps=5)
    options = {"world": wcfg, **({"scale": 0.1} if smoke else {})}
    measured = source in ("shipped", "pretrained") and as_preset  # the regime was measured for this CLIP's recipe
    info = ProviderInfo(
        world=wcfg,
        # measured for the preset's own CLIP only (not the smoke recipe, not a given file)
        seed_spread=seed_spread(preset.name) if measured else None,
        properties=regime_holds(preset.name) if measured else None,
        true_log_prior=lambda dataset: true_log_prior(wcfg, dataset),
        corpus_counts=lambda dataset: checkpoint_corpus_counts(pretrained, dataset),
        details={"world_preset": preset.name, "checkpoint_source": source})
    return PreparedBackbone(str(pretrained), options, recipe, PromptRecipe(trainer="features", coop_n_ctx=4),
                            WORLD_NOTE, info)


# Seed-note metrics (gla.report.SPREAD_METRICS) and the regime measures they are read from.
SPREAD_FROM_REGIME = {"zero_shot": "top1_zero_shot", "debiased": "top1_debiased_zero_shot",
                      "fine_tuned": "top1_fine_tuned", "gla": "top1_gla", "ensemble": "top1_ensemble",
                      "wise_ft": "top1_wise_ft", "head_minus_tail": "zs_head_minus_tail_true",
                      "spearman_estimated_true": "spearman_estimated_true", "zero_shot_shifts": "ood_zero_shot",
                      "fine_tuned_shifts": "ood_fine_tuned", "gla_shifts": "ood_gla"}


def seed_spread(preset: str = "default") -> dict[str, Any] | None:
    """How far a preset's headline numbers move across world seeds, from its shipped regime
    measurements (``gla/world/regime.json``): ``seeds``, ``values`` (metric -> one value per
    seed) and ``source``; None when the preset was not measured."""
    from .regime import shipped_regimes

    doc = shipped_regimes().get(preset)
    if not doc:
        return None
    recs = doc["per_seed"]
    values = {k: [float(r[m]) for r in recs] for k, m in SPREAD_FROM_REGIME.items() if all(m in r for r in recs)}
    return {"seeds": [r["seed"] for r in recs], "values": values,
            "source": f"gla/world/regime.json (benchmarks/world_regime.py, {doc.get('measured', '')})"}


def regime_holds(preset: str = "default") -> dict[str, bool] | None:
    """Which of P1-P6 hold in every measured seed of a preset (``gla/world/regime.json``);
    None when the preset was not measured."""
    from .regime import shipped_regimes

    doc = shipped_regimes().get(preset)
    return None if not doc else {k: bool(v) for k, v in doc["holds_in_every_seed"].items()}


def true_log_prior(world: WorldConfig, dataset: str) -> torch.Tensor | None:
    """The world's true pretraining log prior over a task's classes, when the task's
    classes are the world's concepts (else None: attribute groupings, concept subsets)."""
    if dataset not in TASKS:
        return None
    spec = TASKS[dataset]
    spec = TASKS[spec.parent] if spec.parent else spec
    if spec.classes != "concepts" or spec.concept_subset is not None:
        return None
    return World(world).log_prior


def checkpoint_corpus_counts(checkpoint: str | os.PathLike, dataset: str) -> torch.Tensor | None:
    """How many pretraining images of each class the world's CLIP saw (exactly, from the
    recipe stored in its checkpoint), when the task's classes are the world's concepts."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "pretrain_config" not in ckpt or "world_config" not in ckpt:
        raise ValueError(f"pretrained: {checkpoint} is not a world checkpoint with its recipe")
    wcfg = WorldConfig.from_dict(ckpt["world_config"])
    if true_log_prior(wcfg, dataset) is None:
        return None
    return corpus_counts(World(wcfg), PretrainConfig.from_dict(ckpt["pretrain_config"]))


def concepts_table(world: WorldConfig, checkpoint: str | os.PathLike):
    """The world's concepts as a table, most frequent in pretraining first: ``name``, the
    attributes, ``true_prior``, ``pretrain_images`` (what the CLIP of ``checkpoint`` saw,
    from its recipe) and ``third`` (head / medium / tail by the true prior, as in
    :func:`gla.metrics.prior_groups`)."""
    import pandas as pd

    from ..metrics import GROUP_NAMES, prior_groups

    w = World(world)
    counts = checkpoint_corpus_counts(checkpoint, "world-main")
    groups = prior_groups(w.log_prior)
    rows = [{"name": w.names[i], **w.attributes(i), "true_prior": float(w.prior[i]),
             "pretrain_images": int(counts[i]), "third": GROUP_NAMES["prior"][int(groups[i])]}
            for i in range(w.n_concepts)]
    return pd.DataFrame(rows).sort_values("true_prior", ascending=False)


def regime_table(regimes: dict[str, dict] | None = None, presets: tuple[str, ...] = ("default", "photo-only")):
    """The world's regime beside real CLIP's, one row per measure of P1-P6.

    Parameters
    ----------
    regimes : dict, optional
        Preset name -> record of ``benchmarks/world_regime.py`` (default: the shipped
        ``gla/world/regime.json``).
    presets : tuple of str
        The presets to show (those measured), in order.

    Returns
    -------
    pandas.DataFrame
        Columns ``property``, ``measure``, one column per preset and seed (``<preset>, seed s``),
        ``<preset>: holds`` (in how many seeds the property holds, e.g. ``3 of 3``) and
        ``CLIP ViT-B/16`` (computed from published numbers where they define the measure).
    """
    import pandas as pd

    from .regime import PROPERTIES, real_clip_measures, shipped_regimes

    regimes = shipped_regimes() if regimes is None else regimes
    shown = [p for p in presets if p in regimes]
    real = real_clip_measures()
    rows = []
    for prop in PROPERTIES:
        for measure in prop.measures:
            row = {"property": prop.id, "measure": measure}
            for name in shown:
                recs = regimes[name]["per_seed"]
                for r in recs:
                    row[f"{name}, seed {r['seed']}"] = float(r[measure])
                held = sum(bool(r["checks"][prop.id]) for r in recs)
                row[f"{name}: holds"] = f"{held} of {len(recs)}"
            row["CLIP ViT-B/16"] = real.get(measure, float("nan"))
            rows.append(row)
    return pd.DataFrame(rows)


def properties_table():
    """P1-P6 as a table: ``property``, ``statement`` (what holds in the world when it holds)
    and ``real CLIP`` (the published measurement it comes from), for a page to show before
    the regime's numbers."""
    import pandas as pd

    from .regime import PROPERTIES

    return pd.DataFrame([{"property": p.id, "statement": p.statement, "real CLIP": p.real_clip} for p in PROPERTIES])


def _measured(regimes: dict[str, dict] | None, presets: tuple[str, ...]) -> dict[str, dict]:
    """The measured ones of ``presets``, in order, from ``regimes`` (default: the shipped file)."""
    from .regime import shipped_regimes

    regimes = shipped_regimes() if regimes is None else regimes
    return {name: regimes[name] for name in presets if regimes.get(name)}


def prior_theory_finding(regimes: dict[str, dict] | None = None,
                         presets: tuple[str, ...] = ("default", "photo-only")) -> str:
    """What the world's measured regimes say about where the estimated prior comes from
    (markdown, for chapter 10's theory section): per preset, the spread of the exact
    estimate (max/min over seeds) and its rank correlation with the true pretraining prior,
    with a verb chosen from the correlation (at least 0.3: follows; within 0.3 of 0: does
    not follow; -0.3 or less: runs against)."""
    regimes = _measured(regimes, presets)
    parts = []
    for name, doc in regimes.items():
        recs = doc["per_seed"]
        seeds = ", ".join(str(r["seed"]) for r in recs)
        spread = [float(r["prior_max_min"]) for r in recs]
        rho = [float(r["spearman_estimated_true"]) for r in recs]
        mean = sum(rho) / len(rho)
        verb = "follows" if mean >= 0.3 else "runs against" if mean <= -0.3 else "does not follow"
        parts.append(f"in preset `{name}` (seeds {seeds}) the estimated prior's max/min is {min(spread):.1f} to "
                     f"{max(spread):.1f} and its rank correlation with the true prior {min(rho):+.2f} to "
                     f"{max(rho):+.2f}: the estimate {verb} pretraining frequency")
    if not parts:
        return "No regime measurement ships with this package."
    first = next(iter(regimes.values()))["per_seed"]
    spread = min(float(r["prior_max_min"]) for r in first)
    rho = sum(float(r["spearman_estimated_true"]) for r in first) / len(first)
    if spread < 10:
        reading = "The first world's estimate is nearly flat: there is little bias in its logits to remove."
    elif rho >= 0.3:
        reading = ("There is a bias in the first world's logits to remove, and it follows pretraining frequency, as "
                   "the paper assumes.")
    else:
        reading = ("There is a bias in the first world's logits to remove, but it is not pretraining frequency: the "
                   "estimate absorbs whatever the model over-predicts, which the next section takes apart class by "
                   "class.")
    return "Measured over seeds (`gla/world/regime.json`): " + "; ".join(parts) + ". " + reading


def checkpoint_sentence(checkpoint: str | os.PathLike, source: str, preset: str = "default", seed: int = 0) -> str:
    """One sentence (markdown) that says which CLIP a chapter runs on and how to regenerate it.

    Parameters
    ----------
    checkpoint : path
        The checkpoint the chapter loaded.
    source : str
        ``"shipped"`` (the package's checkpoint), ``"pretrained"`` (pretrained or reused
        here), ``"smoke"`` (the smoke recipe) or ``"given"`` (a file passed by the user).
    preset, seed : str, int
        The world preset and seed it belongs to.
    """
    from .shipped import shipped_checkpoints

    regenerate = f"`gla world pretrain --preset {preset} --world-seed {seed}`"
    if source == "shipped":
        entry = next((e for e in shipped_checkpoints() if e.preset == preset and e.seed == seed), None)
        made = f", made on {entry.made} with torch {entry.torch} by `{entry.command}`" if entry else ""
        digest = f" (sha256 `{entry.sha256[:16]}…`)" if entry else ""
        return (f"The CLIP is the checkpoint that ships with the package, `gla/world/checkpoints/"
                f"{Path(checkpoint).name}`{digest}{made}, as real CLIP's weights ship with their release: the book "
                f"does not retrain it. {regenerate} regenerates it and reports how far its regime (P1-P6 below) "
                "lies from the shipped one's.")
    if source == "pretrained":
        return (f"The CLIP was pretrained here with preset `{preset}`'s recipe (or reused from the cache): no "
                f"checkpoint of this preset and seed ships with the package. {regenerate} makes the same one.")
    if source == "smoke":
        return ("The CLIP is the smoke recipe's (a few hundred steps, for tests): its numbers only show that the "
                "chapter runs.")
    return f"The CLIP is the checkpoint given as `pretrained`: `{Path(checkpoint).name}`."


def regime_sentence(regimes: dict[str, dict] | None = None, presets: tuple[str, ...] = ("default", "photo-only")
                    ) -> str:
    """Which of P1-P6 hold in every measured seed of each preset, as one sentence (markdown)."""
    from .regime import PROPERTIES

    parts = []
    for name, doc in _measured(regimes, presets).items():
        held = [p.id for p in PROPERTIES if doc["holds_in_every_seed"][p.id]]
        missed = [p.id for p in PROPERTIES if not doc["holds_in_every_seed"][p.id]]
        n = len(doc["per_seed"])
        parts.append(f"preset `{name}` meets {', '.join(held) or 'none'} in all {n} seeds"
                     + (f" and misses {', '.join(missed)} in at least one" if missed else ""))
    return ("Of the six properties, " + "; ".join(parts) + ".") if parts else \
        "No regime measurement ships with this package."
