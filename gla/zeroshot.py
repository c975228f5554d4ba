"""Zero-shot heads and image features from a :class:`gla.backbones.Backbone`.

open_clip (the tokenizer's fallback) is imported where it is used, as in :mod:`gla.backbones`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from .backbones import Backbone
from .cache import atomic_save, cache_key, safe_load
from .data.templates import prompt_classname
from .features import backbone_identity
from .loading import autocast, resolve_precision

#: Part of the zero-shot heads' cache key ("v"): bump it when the head computed for the same
#: backbone, class names, templates and precision changes, so that old heads are not reused.
#: 2: "_" in class names became " " in every prompt.
HEAD_CACHE_FORMAT = 2


def zero_shot_head_path(backbone: Backbone, classnames: Sequence[str], templates: Sequence[str],
                        cache_dir: str | os.PathLike, *, precision: str | None = None) -> Path:
    """Where :func:`zero_shot_head` caches the head: keyed by the backbone's identity (model,
    weights, dtype), the class names in order, the templates and the autocast precision."""
    prec = resolve_precision(precision, backbone.device)
    key = cache_key({"backbone": backbone_identity(backbone), "classnames": list(classnames),
                     "templates": list(templates), "precision": prec, "v": HEAD_CACHE_FORMAT})
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone.name)  # e.g. hf-hub:org/model
    return Path(cache_dir) / "heads" / f"{stem}-{len(classnames)}-{key}.pt"


def zero_shot_head(backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], *,
                   batch_classes: int = 50, progress: bool = False, cache_dir: str | os.PathLike | None = None,
                   precision: str | None = None) -> torch.Tensor:
    """Zero-shot classifier weights ``(embed_dim, K)``: the normalised mean over templates of
    the normalised text embeddings of each class (open_clip's ``build_zero_shot_classifier``;
    the construction of GLA's many-shot ImageNet head, ``80 templates x 1000 classes``).

    Parameters
    ----------
    backbone : Backbone
    classnames : sequence of str
        One name per class, in label order (duplicates allowed: columns follow the order), as
        the dataset spells them: ``_`` becomes a space in the prompts
        (:func:`gla.data.prompt_classname`, as CoOp's ``trainers/zsclip.py`` and GLA's
        ``trainers/util.py`` do).
    templates : sequence of str
        Prompt templates with ``{}`` (CoOp style) or ``{c}`` for the class name.
    batch_classes : int
        Classes encoded per batch.
    progress : bool
        Show a progress bar.
    cache_dir : path, optional
        When given, the head is stored in ``cache_dir/heads/`` (:func:`zero_shot_head_path`)
        and read from there next time; a corrupt or mismatched file is rebuilt.
    precision : str, optional
        Autocast precision of the text encoder (``"fp32"``, ``"bf16"``, ``"fp16"``; None:
        fp32 on the CPU, fp16 on CUDA). Part of the cache key.

    Returns
    -------
    torch.Tensor
        ``(embed_dim, K)`` float32 on the backbone's device, unit-norm columns.
    """
    import open_clip

    if not classnames:
        raise ValueError("classnames: expected at least one class name")
    if not templates:
        raise ValueError("templates: expected at least one prompt template")
    fmt = [t.replace("{c}", "{}") for t in templates]
    if any("{}" not in t for t in fmt):
        raise ValueError(f"templates: every template needs a '{{}}' for the class name, got {list(templates)}")
    prec = resolve_precision(precision, backbone.device)
    path = None
    if cache_dir is not None:
        path = zero_shot_head_path(backbone, classnames, templates, cache_dir, precision=prec)
        saved = safe_load(path)
        if isinstance(saved, dict) and isinstance(saved.get("head"), torch.Tensor) \
                and saved["head"].ndim == 2 and saved["head"].shape[1] == len(classnames) \
                and saved.get("classnames") == list(classnames) and saved.get("templates") == list(templates):
            return saved["head"].to(backbone.device)
    with torch.no_grad(), autocast(prec, backbone.device):
        head = open_clip.build_zero_shot_classifier(
            backbone.model, tokenizer=backbone.tokenizer, classnames=[prompt_classname(c) for c in classnames],
            templates=[(lambda c, t=t: t.format(c)) for t in fmt], num_classes_per_batch=batch_classes,
            device=backbone.device, use_tqdm=progress)
    head = head.float()
    if path is not None:
        atomic_save({"head": head.cpu(), "classnames": list(classnames), "templates": list(templates),
                     "precision": prec, "model": backbone.name}, path)
    return head


def image_features(backbone: Backbone, images: torch.Tensor, *, batch_size: int = 512,
                   progress: bool = False, precision: str | None = None) -> torch.Tensor:
    """Normalised features ``(N, D)`` of a tensor of images in [0, 1] (the world's format), on
    the CPU, encoded under autocast at ``precision`` (None: fp32 on the CPU, fp16 on CUDA)."""
    prec = resolve_precision(precision, backbone.device)
    out = []
    for i in tqdm(range(0, images.shape[0], batch_size), disable=not progress, desc="features"):
        x = backbone.preprocess(images[i:i + batch_size])
        with autocast(prec, backbone.device):
            out.append(backbone.encode_images(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def zero_shot_logits(features: torch.Tensor, head: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """``logit_scale * features @ head`` (CLIP's fixed scale of 100 by default)."""
    return logit_scale * features.float() @ head.to(features.device).float()
