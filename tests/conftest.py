"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os

import pytest
import torch

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
