"""gla.notebook.context: what a notebook's parameters resolve to."""

from __future__ import annotations

from dataclasses import replace

from gla.notebook import context
from gla.protocols import PAPER_PROMPTS, PromptRecipe


def test_a_real_backbone_gets_the_protocols_prompt_recipe(tiny_openclip, tmp_path):
    """protocol "paper": GLA's few-shot recipe through the image encoder (its ImageNet
    configs: SGD, 50 epochs, augmentation); "exact": ours on cached features."""
    paper = context(tiny_openclip, "", cache_dir=tmp_path, output_dir=tmp_path / "out")
    assert paper.prompts == PAPER_PROMPTS and paper.prompts.trainer == "images"
    assert paper.settings.protocol == "paper" and paper.seed_spread is None and not paper.is_world
    assert tiny_openclip in paper.note and "world" not in paper.note
    exact = context(tiny_openclip, "", protocol="exact", cache_dir=tmp_path, output_dir=tmp_path / "out")
    assert exact.prompts == PromptRecipe() and exact.prompts.trainer == "features"
    smoke = context(tiny_openclip, "", smoke=True, cache_dir=tmp_path, output_dir=tmp_path / "out")
    assert smoke.prompts == replace(PAPER_PROMPTS, epochs=1, batch_size=32) and smoke.recipe.epochs == 1


def test_the_world_brings_its_truths_and_its_seed_spread(smoke_checkpoint, tmp_path, monkeypatch):
    ctx = context("gla-world-tiny", str(smoke_checkpoint), smoke=True, cache_dir=tmp_path, output_dir=tmp_path / "o")
    assert ctx.is_world and "miniature world" in ctx.note
    assert ctx.true_log_prior("world-main").shape == (100,)
    assert ctx.seed_spread is None  # the spread was measured for the default recipe, not the smoke one
    # The default recipe's CLIP (its pretraining replaced by the smoke checkpoint, for time).
    import gla.world.book as world_book

    monkeypatch.setattr(world_book, "pretrain", lambda *a, **k: smoke_checkpoint)
    default = context("gla-world-tiny", "world", cache_dir=tmp_path, output_dir=tmp_path / "o")
    assert default.seed_spread["seeds"] == [0, 1, 2] and {"zero_shot", "fine_tuned"} <= set(default.seed_spread["values"])
    other_law = context("gla-world-tiny", "world", zipf_exponent=2.0, cache_dir=tmp_path, output_dir=tmp_path / "o")
    assert other_law.seed_spread is None  # measured for the default law only


def test_world_options_on_an_open_clip_backbone_say_what_to_write(tiny_openclip, tmp_path):
    """Chapter 00 on a real backbone: the message says which models take world_seed and
    what to pass instead (it used to say 'options of another backbone provider')."""
    import pytest

    with pytest.raises(ValueError) as info:
        context(tiny_openclip, "", world_seed=0, cache_dir=tmp_path, output_dir=tmp_path / "out")
    text = str(info.value)
    assert text.startswith(f"world_seed is an option of the models named gla-world*, and {tiny_openclip}")
    assert "pass backbone='gla-world-tiny', pretrained='world'" in text
    assert "{backbone: gla-world-tiny, pretrained: world}" in text
    assert not (tmp_path / "out").exists()  # refused before anything is made
