"""Named worlds: a corpus, a pretraining recipe and a fine-tuning recipe that go together.

A preset is what a reader names to get a whole world (``gla world pretrain --preset
photo-only``, the book's ``world_preset`` parameter): the :class:`WorldConfig` (concepts,
prior, corpus, downstream label noise), the :class:`PretrainConfig` of its CLIP and the
:class:`gla.finetune.FinetuneConfig` its many-shot chapters fine-tune with. ``default`` is
the world the book runs on; the others stay reachable so that the book can show what each
property of the regime (:mod:`gla.world.regime`) does to GLA's claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..finetune import FinetuneConfig
from .concepts import WorldConfig
from .pretrain import PretrainConfig


def world_finetune_config() -> FinetuneConfig:
    """The end-to-end fine-tuning recipe of the world's many-shot tasks (tiny model, few images).

    WiSE-FT's recipe (lr 3e-5, 500 warm-up steps, batch 512) is for ViTs and millions of
    images; the world's model trains from a small learning rate poorly in few steps, so the
    world uses a larger rate with a short warm-up, and no augmentation (its 32-pixel
    images are rendered, not photographed: ``train_transform="none"``). Stated openly in
    the book.
    """
    return FinetuneConfig(epochs=10, lr=1e-3, batch_size=128, weight_decay=0.1, warmup_steps=50,
                          grad_clip=1.0, head_lr_mult=1.0, train_transform="none")


@dataclass(frozen=True)
class WorldPreset:
    """A named world (see the module docstring); ``seed`` fields are set per run."""

    name: str
    description: str
    world: WorldConfig = field(default_factory=WorldConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=world_finetune_config)
    model: str = "gla-world-tiny"

    def world_config(self, seed: int = 0) -> WorldConfig:
        return replace(self.world, seed=int(seed))

    def pretrain_config(self, seed: int = 0, *, threads: int | None = None) -> PretrainConfig:
        cfg = replace(self.pretrain, seed=int(seed))
        return replace(cfg, threads=int(threads)) if threads else cfg

    def describe(self) -> dict[str, Any]:
        """The preset as plain data (JSON), with the settings that differ from the defaults."""
        return {"name": self.name, "description": self.description, "model": self.model,
                "world": self.world.settings(), "pretrain": self.pretrain.settings(),
                "finetune": self.finetune.identity()}


PHOTO_ONLY = WorldPreset(
    "photo-only",
    "The first regime of the book: a photo-only corpus, clean downstream labels, fine-tuning at lr 1e-3.")

DEFAULT = WorldPreset(
    "default",
    "The world the book runs on: half of the pretraining corpus in other styles (drawings, renditions, "
    "clutter, resampled), captions that sometimes describe the instance, CLIP's logit scale held at 100; "
    "downstream, 200 training images per class with 20% of their labels flipped, fine-tuned for 20 epochs.",
    world=WorldConfig(style_share=0.5, instance_prob=0.5, label_noise=0.2, main_train_per_class=200),
    pretrain=PretrainConfig(steps=2000, fixed_logit_scale=100.0, threads=1),
    finetune=replace(world_finetune_config(), epochs=20))

PRESETS: dict[str, WorldPreset] = {p.name: p for p in (DEFAULT, PHOTO_ONLY)}


def get_preset(name: str) -> WorldPreset:
    """A preset by name, or a ``ValueError`` that lists them."""
    if name not in PRESETS:
        raise ValueError(f"world preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]
