"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

# Deterministic, modest CPU use in CI (2 cores).
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def planted_logits(n_per_class: int, k: int, *, seed: int = 0, bias_scale: float = 1.5,
                   signal: float = 2.0):
    """Synthetic zero-shot logits ``signal * onehot + noise + log q_true`` on a balanced set.

    Returns ``(logits, labels, true_log_prior)``.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(k).repeat_interleave(n_per_class)
    raw = torch.randn(k, generator=g, dtype=torch.float64) * bias_scale
    true_lp = raw - torch.logsumexp(raw, 0)
    logits = torch.randn(labels.shape[0], k, generator=g, dtype=torch.float64)
    logits[torch.arange(labels.shape[0]), labels] += signal
    return logits + true_lp, labels, true_lp


@pytest.fixture
def planted():
    return planted_logits(200, 10, seed=0)


@pytest.fixture(scope="session")
def smoke_checkpoint(tmp_path_factory):
    """The world's CLIP pretrained with the smoke recipe (shared by the whole session)."""
    from gla.world import SMOKE_PRETRAIN, WorldConfig, pretrain

    return pretrain(WorldConfig(), SMOKE_PRETRAIN, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory):
    """Name of a tiny randomly initialised open_clip ViT (standard tokenizer, PIL preprocess)."""
    import json

    import open_clip

    d = tmp_path_factory.mktemp("model_configs")
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (d / "gla-test-tiny-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)
    return "gla-test-tiny-vit"


def _write_objectnet(root):
    """ObjectNet's own layout: image folders (one unmapped) and the four mapping files."""
    maps = root / "objectnet-1.0" / "mappings"
    maps.mkdir(parents=True)
    (maps / "folder_to_objectnet_label.json").write_text(json.dumps(
        {"fish_bowl": "Fish", "shark_toy": "Shark", "chair": "Chair"}))
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {"Fish": "goldfish; tench", "Shark": "great white shark"}))
    # 2012 ids are not the sorted-wnid order: 2012 id 0 is goldfish, 1 great white shark, 2 tench
    (maps / "imagenet_to_label_2012_v2").write_text("goldfish\ngreat white shark\ntench\n")
    (maps / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({"0": 2, "1": 0, "2": 1}))
    for folder, n in [("fish_bowl", 2), ("shark_toy", 1), ("chair", 3)]:
        for i in range(n):
            p = root / "objectnet-1.0" / "images" / folder / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            im = Image.new("RGB", (12, 12), (255, 0, 0))  # the red frame
            im.paste((0, 0, 200), (2, 2, 10, 10))
            im.save(p)
    return root


@pytest.fixture
def objectnet_fixture():
    """Writes an ObjectNet fixture (2 mapped classes over the first 3 ImageNet wnids) under a root."""
    return _write_objectnet
