"""One entry point from (model name, pretrained tag or path) to a usable backbone.

Real backbones come from open_clip's factory; the miniature world's tiny CLIP is an
open_clip model config shipped in ``gla/model_configs`` and registered with open_clip,
with a word-level tokenizer whose vocabulary travels in its checkpoint. Both are served by
:func:`load_backbone`, so notebooks switch between them by parameters alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
WORLD_PREFIX = "gla-world"
_registered = False


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


def list_backbones() -> list[str]:
    """Model names open_clip knows, the world's first."""
    import open_clip

    register_model_configs()
    names = open_clip.list_models()
    return sorted(n for n in names if n.startswith(WORLD_PREFIX)) + [n for n in names if not n.startswith(WORLD_PREFIX)]


def list_pretrained(name: str | None = None) -> list[tuple[str, str]]:
    """(model name, pretrained tag) pairs open_clip can download, optionally for one model."""
    import open_clip

    pairs = open_clip.list_pretrained()
    return [p for p in pairs if name is None or p[0] == name]


def _explain_missing_weights(name: str, pretrained: str, exc: Exception) -> RuntimeError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return RuntimeError(
        f"Could not load weights for model '{name}' with pretrained='{pretrained}': {exc}\n"
        "Weights come from the Hugging Face hub, from its local cache, or from a file path.\n"
        f"- With network access: run once, e.g. python -c \"import open_clip; "
        f"open_clip.create_model_and_transforms('{name}', pretrained='{pretrained}')\", to fill the cache.\n"
        "- Offline: set HF_HUB_OFFLINE=1 and HF_HOME (or pass cache_dir) to a cache that holds them"
        + (" (HF_HUB_OFFLINE=1 is set, so only the cache was searched)" if offline else "") + ".\n"
        "- Or pass a local checkpoint file as pretrained=/path/to/weights.pt (or .safetensors).\n"
        "Known tags for this model: "
        + (", ".join(t for _, t in list_pretrained(name)) or "none (check the model name)")
    )


def load_backbone(name: str, pretrained: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                  precision: str = "fp32", cache_dir: str | None = None) -> Backbone:
    """Build a backbone from an open_clip model name and a pretrained tag or checkpoint path.

    Parameters
    ----------
    name : str
        An open_clip model name (``ViT-B-16``, ``RN50-quickgelu``, ...) or a world model
        (``gla-world-tiny``).
    pretrained : str or path, optional
        An open_clip pretrained tag (``openai``, ``laion2b_s34b_b88k``, ...), a local
        checkpoint file, or None for random initialisation (tests only). For a world
        model it is the checkpoint path written by :func:`gla.world.pretrain`.
    device : str or torch.device
    precision : str
        open_clip precision (``fp32``, ``fp16``, ``bf16``, ``amp``).
    cache_dir : str, optional
        Hugging Face cache folder for downloaded weights.

    Notes
    -----
    OpenAI's weights were trained with QuickGELU; open_clip names such models
    ``*-quickgelu``. Asking for ``pretrained="openai"`` with a plain name is mapped to the
    ``-quickgelu`` model when one exists, so the activations match the weights.
    """
    import open_clip

    register_model_configs()
    device = torch.device(device)
    pretrained = "" if pretrained is None else str(pretrained)
    if not name.startswith(WORLD_PREFIX) and pretrained == "openai" and not name.endswith("-quickgelu"):
        if f"{name}-quickgelu" in open_clip.list_models():
            name = f"{name}-quickgelu"
    if name not in open_clip.list_models():
        raise ValueError(f"name: unknown model '{name}'; see gla.backbones.list_backbones() for the known names")
    suffixes = (".pt", ".pth", ".bin", ".safetensors")
    is_path = bool(pretrained) and (os.path.sep in pretrained or pretrained.endswith(suffixes))
    if is_path and not Path(pretrained).is_file():
        raise FileNotFoundError(f"pretrained: no checkpoint file at {pretrained}")
    metadata: dict = {}
    if name.startswith(WORLD_PREFIX):
        return _load_world_backbone(name, pretrained, device, precision)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained or None, device=device, precision=precision, cache_dir=cache_dir)
    except RuntimeError as exc:
        raise _explain_missing_weights(name, pretrained, exc) from exc
    model.eval()
    return Backbone(model, preprocess, open_clip.get_tokenizer(name), name, pretrained, device, metadata)


def _load_world_backbone(name: str, pretrained: str, device: torch.device, precision: str) -> Backbone:
    import logging

    import open_clip
    from torchvision import transforms

    from .world.concepts import WordTokenizer

    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: they come next
    try:
        model = open_clip.create_model(name, pretrained=None, device=device, precision=precision)
    finally:
        root_logger.setLevel(level)
    metadata: dict = {}
    vocabulary: list[str] = []
    if pretrained:
        ckpt = torch.load(pretrained, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "vocabulary" not in ckpt:
            raise ValueError(f"pretrained: {pretrained} is not a world checkpoint (expected keys "
                             "'state_dict' and 'vocabulary', as written by gla.world.pretrain)")
        model.load_state_dict(ckpt["state_dict"])
        vocabulary = list(ckpt["vocabulary"])
        metadata = {k: v for k, v in ckpt.items() if k != "state_dict"}
    else:  # random initialisation (tests): the default world's vocabulary
        from .world.concepts import World, WorldConfig

        vocabulary = World(WorldConfig()).vocabulary()
    model.eval()
    cfg = model.visual
    mean = getattr(cfg, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(cfg, "image_std", None) or open_clip.OPENAI_DATASET_STD
    preprocess = transforms.Normalize(mean, std)  # world images are already tensors in [0, 1]
    context = model.context_length if hasattr(model, "context_length") else 16
    return Backbone(model, preprocess, WordTokenizer(vocabulary, context), name, pretrained, device, metadata)
