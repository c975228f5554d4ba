"""Contrastive pretraining of the world's tiny CLIP on its long-tailed corpus.

The corpus is streamed: step ``t`` draws its concepts from the true prior with a
generator seeded by ``(seed, t)``, renders them and writes their captions, so a run is
reproducible and can resume from any checkpoint. The result is cached under a key made
of every setting; a finished checkpoint is reused, an interrupted run resumes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..cache import atomic_save, cache_key, safe_load
from ..finetune import cosine_lr
from .concepts import INSTANCE_WORDS, WordTokenizer, World, WorldConfig
from .render import STYLES, render

WORLD_VERSION = 2  # bump when the generator changes what a seed produces
PRETRAIN_STYLES = ("sketch", "rendition", "clutter", "resample")  # the non-photo styles of the corpus


@dataclass(frozen=True)
class PretrainConfig:
    """Pretraining recipe of the world's CLIP.

    ``threads`` is recorded because a different thread count changes results slightly.
    ``fixed_logit_scale``: 0 (default) learns the logit scale as CLIP does (from 1 / 0.07,
    capped at 100); a positive number holds it at that value for the whole run.
    """

    model: str = "gla-world-tiny"
    steps: int = 1500
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 100
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 250
    fixed_logit_scale: float = 0.0

    def settings(self) -> dict:
        """The recipe as checkpoints and cache keys record it: settings added later appear
        only when they differ from their default, so earlier checkpoints keep their keys."""
        d = asdict(self)
        for name, default in _ADDED_LATER.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, settings: dict) -> "PretrainConfig":
        """The recipe as a checkpoint stores it (:meth:`settings`)."""
        return cls(**settings)


_ADDED_LATER = {"fixed_logit_scale": 0.0}
SMOKE_PRETRAIN = PretrainConfig(steps=150, batch_size=128, warmup=20, checkpoint_every=50)
# A shorter recipe for studies that pretrain many worlds (the Zipf-exponent sweep of the
# book's "Beyond the paper" part), so that they fit the book's time budget; one thread,
# as the sweep runs worlds side by side. The book says so wherever it is used.
STUDY_PRETRAIN = PretrainConfig(steps=200, batch_size=128, warmup=20, checkpoint_every=100, threads=1)


def _batch_concepts(world: World, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.multinomial(world.prior, batch_size, replacement=True, generator=g), g


def corpus_counts(world: World, cfg: "PretrainConfig") -> torch.Tensor:
    """How many pretraining images of each concept the recipe ``cfg`` draws (exactly the
    draws of :func:`batch`, without rendering): the world's own concept counts."""
    counts = torch.zeros(world.n_concepts, dtype=torch.long)
    for step in range(cfg.steps):
        counts += torch.bincount(_batch_concepts(world, step, cfg.batch_size, cfg.seed)[0],
                                 minlength=world.n_concepts)
    return counts


STYLE_WORDS = {"sketch": "sketch", "rendition": "drawing", "clutter": "cluttered"}  # as captions name them


def instance_words(params: dict[str, torch.Tensor], styles: list[str], prob: float, g: torch.Generator
                   ) -> list[list[str]]:
    """Words that describe each rendered image (:data:`gla.world.concepts.INSTANCE_WORDS`),
    each kept with probability ``prob``: size, horizontal and vertical position when off
    centre, a dark or light background, and the style when it is not a photo.

    Parameters
    ----------
    params : dict of (B,) tensors
        What :func:`gla.world.render.render` drew (``return_params=True``).
    styles : list of str
        Each image's style name.
    prob : float
        Probability of keeping each applicable word.
    g : torch.Generator
        Draws which words are kept.
    """
    keep = torch.rand(len(styles), 5, generator=g) < prob
    out = []
    for i, style in enumerate(styles):
        sc, x, y, bg = (float(params[k][i]) for k in ("scale", "x", "y", "background"))
        cand = ["small" if sc < 0.58 else "large" if sc > 0.68 else "",
                "left" if x < -0.1 else "right" if x > 0.1 else "",
                "top" if y < -0.1 else "bottom" if y > 0.1 else "",
                "dark" if bg < 0.42 else "light" if bg > 0.58 else "",
                STYLE_WORDS.get(style, "")]
        out.append([w for j, w in enumerate(cand) if w and keep[i, j]])
    assert all(w in INSTANCE_WORDS for ws in out for w in ws)
    return out


def batch(world: World, step: int, batch_size: int, seed: int, tokenizer: WordTokenizer):
    """The corpus' batch number ``step``: (images in [0, 1], token ids, concept ids)."""
    concepts, g = _batch_concepts(world, step, batch_size, seed)
    other = torch.rand(batch_size, generator=g) < world.config.style_share
    style_idx = torch.where(other, torch.randint(1, len(PRETRAIN_STYLES) + 1, (batch_size,), generator=g), 0)
    images = torch.empty(batch_size, 3, world.config.image_size, world.config.image_size)
    describe = world.config.instance_prob > 0
    params = {k: torch.empty(batch_size) for k in ("x", "y", "scale", "background")} if describe else {}
    for s in torch.unique(style_idx).tolist():
        rows = torch.nonzero(style_idx == s).flatten()
        c = concepts[rows]
        style = STYLES["photo"] if s == 0 else STYLES[PRETRAIN_STYLES[s - 1]]
        drawn = render(world.shapes[c], world.colours[c], world.patterns[c], size=world.config.image_size,
                       style=style, generator=g, return_params=describe)
        if describe:
            drawn, p = drawn
            for k in params:
                params[k][rows] = p[k].float()
        images[rows] = drawn
    details = None
    if describe:  # a generator of its own, so that the corpus without details draws what it always drew
        styles = ["photo" if s == 0 else PRETRAIN_STYLES[s - 1] for s in style_idx.tolist()]
        details = instance_words(params, styles, world.config.instance_prob,
                                 torch.Generator().manual_seed(seed * 1_000_003 + step + 500_009))
    texts = tokenizer(world.captions(concepts, g, details))
    return images, texts, concepts


def checkpoint_path(world_cfg: WorldConfig, cfg: PretrainConfig, cache_dir: str | os.PathLike) -> Path:
    key = cache_key({"world": world_cfg.corpus_settings(), "pretrain": cfg.settings(), "version": WORLD_VERSION})
    return Path(cache_dir) / "world" / f"clip-{key}.pt"


def pretrain(world_cfg: WorldConfig = WorldConfig(), cfg: PretrainConfig = PretrainConfig(), *,
             cache_dir: str | os.PathLike = ".gla_cache", progress: bool = True,
             stop_after: int | None = None) -> Path:
    """Pretrain (or reuse) the world's CLIP; returns the checkpoint path.

    ``stop_after`` ends the run after that many steps, leaving a resumable partial
    checkpoint (its path is returned); the next call resumes from it. An interrupted run
    (Ctrl-C, a killed job) resumes from its last partial checkpoint the same way.

    The checkpoint is a dict with ``state_dict``, ``vocabulary``, the two configs and
    ``timing`` (seconds, images per second, threads); it loads with
    ``gla.backbones.load_backbone(cfg.model, pretrained=path)``.
    """
    import open_clip
    from tqdm import tqdm

    from ..backbones import register_model_configs

    final = checkpoint_path(world_cfg, cfg, cache_dir)
    done = safe_load(final)
    if done is not None and "state_dict" in done:
        return final
    partial_path = final.with_suffix(".partial.pt")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    register_model_configs()
    world = World(world_cfg)
    vocabulary = world.vocabulary()
    tokenizer = world.tokenizer()
    model = open_clip.create_model(cfg.model)
    if cfg.fixed_logit_scale:
        if not 0 < cfg.fixed_logit_scale <= 100:
            raise ValueError(f"fixed_logit_scale: expected 0 (learned) or a scale in (0, 100], "
                             f"got {cfg.fixed_logit_scale}")
        with torch.no_grad():
            model.logit_scale.fill_(math.log(cfg.fixed_logit_scale))
        model.logit_scale.requires_grad_(False)
    mean = torch.tensor(model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std or open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit_scale" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "logit_scale" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    loss_fn = open_clip.ClipLoss()
    start, elapsed = 0, 0.0
    state = safe_load(partial_path)
    if state is not None and "model" in state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, elapsed = int(state["step"]), float(state["elapsed"])
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="world CLIP pretraining",
               disable=not progress)
    loss_val = float("nan")
    for step in bar:
        if stop_after is not None and step >= stop_after:
            atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                         "elapsed": elapsed + time.perf_counter() - t0}, partial_path)
            return partial_path
        images, texts, _ = batch(world, step, cfg.batch_size, cfg.seed, tokenizer)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr)
        img_f, txt_f, scale = model((images - mean) / std, texts)[:3]
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        loss_val = float(loss.detach())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss_val:.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1,
                         "elapsed": elapsed + time.perf_counter() - t0}, partial_path)
    seconds = elapsed + time.perf_counter() - t0
    model.eval()
    atomic_save({
        "state_dict": model.state_dict(),
        "vocabulary": vocabulary,
        **({"pieces": tokenizer.pieces} if tokenizer.pieces else {}),
        "model": cfg.model,
        "world_config": world_cfg.corpus_settings(),
        "pretrain_config": cfg.settings(),
        "timing": {"seconds": seconds, "images_per_second": cfg.steps * cfg.batch_size / max(seconds, 1e-9),
                   "threads": cfg.threads, "resumed_from_step": start},
        "final_loss": loss_val,
        "world_version": WORLD_VERSION,
    }, final)
    if partial_path.exists():
        partial_path.unlink()
    return final
