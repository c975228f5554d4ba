"""Zero-shot heads and image features from a :class:`gla.backbones.Backbone`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .backbones import Backbone


def zero_shot_head(backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], *,
                   batch_classes: int = 50, progress: bool = False) -> torch.Tensor:
    """Zero-shot classifier weights ``(embed_dim, K)``: the normalised mean over templates of
    the normalised text embeddings of each class (open_clip's ``build_zero_shot_classifier``).

    Templates use ``{}`` for the class name (CoOp style; ``{c}`` is accepted too).
    """
    import open_clip

    if not classnames:
        raise ValueError("classnames: expected at least one class name")
    if not templates:
        raise ValueError("templates: expected at least one prompt template")
    fmt = [t.replace("{c}", "{}") for t in templates]
    if any("{}" not in t for t in fmt):
        raise ValueError(f"templates: every template needs a '{{}}' for the class name, got {list(templates)}")
    with torch.no_grad():
        head = open_clip.build_zero_shot_classifier(
            backbone.model, tokenizer=backbone.tokenizer, classnames=list(classnames),
            templates=[(lambda c, t=t: t.format(c)) for t in fmt], num_classes_per_batch=batch_classes,
            device=backbone.device, use_tqdm=progress)
    return head.float()


def image_features(backbone: Backbone, images: torch.Tensor, *, batch_size: int = 512,
                   progress: bool = False) -> torch.Tensor:
    """Normalised features of a tensor of images in [0, 1] (the world's format), on the CPU."""
    from tqdm import tqdm

    out = []
    for i in tqdm(range(0, images.shape[0], batch_size), disable=not progress, desc="features"):
        x = backbone.preprocess(images[i:i + batch_size])
        out.append(backbone.encode_images(x).cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def zero_shot_logits(features: torch.Tensor, head: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """``logit_scale * features @ head`` (CLIP's fixed scale of 100 by default)."""
    return logit_scale * features.float() @ head.to(features.device).float()
