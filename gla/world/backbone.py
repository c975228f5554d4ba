"""The miniature world's CLIP as a :class:`gla.backbones.Backbone`.

The world's model is an open_clip model config shipped in ``gla/model_configs``
(``gla-world-tiny``) with a word-level tokenizer whose vocabulary travels in the
checkpoint written by :func:`gla.world.pretrain`. The core does not import the world:
this loader is registered for the name prefix ``gla-world`` with
:func:`gla.backbones.register_backbone_provider`.
"""

from __future__ import annotations

import logging

import torch

from ..backbones import Backbone, register_model_configs

WORLD_PREFIX = "gla-world"  # the world's model names (gla/model_configs/gla-world-*.json)
WORLD_MODELS = ("gla-world-tiny",)  # the models of gla/model_configs/, the default first


def load_world_backbone(name: str, pretrained: str | None, device: str | torch.device = "cpu",
                        precision: str = "fp32") -> Backbone:
    """Build the world's CLIP ``name`` from a world checkpoint, or randomly initialised.

    Parameters
    ----------
    name : str
        A world model config name (``gla-world-tiny``).
    pretrained : str, optional
        A checkpoint written by :func:`gla.world.pretrain` (keys ``state_dict`` and
        ``vocabulary``); ``""`` or None for random initialisation with the default world's
        vocabulary (tests).
    device : str or torch.device
    precision : str
        open_clip weight precision (``fp32``, ``fp16``, ``bf16``).

    Returns
    -------
    Backbone
        Its ``preprocess`` normalises tensor images in [0, 1] (the world renders tensors);
        ``metadata`` holds the checkpoint's other entries (settings and measurements).
    """
    import open_clip
    from torchvision import transforms

    from .concepts import WordTokenizer

    register_model_configs()
    if name not in open_clip.list_models():
        raise ValueError(f"name: unknown world model '{name}'; world configs: "
                         f"{[n for n in open_clip.list_models() if n.startswith('gla-world')]}")
    device = torch.device(device)
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: they come next
    try:
        model = open_clip.create_model(name, pretrained=None, device=device, precision=precision)
    finally:
        root_logger.setLevel(level)
    metadata: dict = {}
    pretrained = str(pretrained or "")
    if pretrained:
        ckpt = torch.load(pretrained, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "vocabulary" not in ckpt:
            raise ValueError(f"pretrained: {pretrained} is not a world checkpoint (expected keys "
                             "'state_dict' and 'vocabulary', as written by gla.world.pretrain)")
        model.load_state_dict(ckpt["state_dict"])
        vocabulary = list(ckpt["vocabulary"])
        metadata = {k: v for k, v in ckpt.items() if k != "state_dict"}
    else:  # random initialisation (tests): the default world's vocabulary
        from .concepts import World, WorldConfig

        vocabulary = World(WorldConfig()).vocabulary()
    model.eval()
    cfg = model.visual
    mean = getattr(cfg, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(cfg, "image_std", None) or open_clip.OPENAI_DATASET_STD
    preprocess = transforms.Normalize(mean, std)  # world images are already tensors in [0, 1]
    context = model.context_length if hasattr(model, "context_length") else 16
    pieces = metadata.get("pieces")
    return Backbone(model, preprocess, WordTokenizer(vocabulary, context, pieces=pieces), name, pretrained, device,
                    metadata)
