"""The world's CLIP ships with the package, as real CLIP's weights do (gla.world.shipped)."""

import json
from dataclasses import replace

import pytest

from gla.world import SMOKE_PRETRAIN, WorldConfig
from gla.world.presets import WorldPreset, get_preset
from gla.world.shipped import ship, shipped_checkpoint, shipped_checkpoints

SMOKE = WorldPreset("smoke-test", "the smoke recipe as a preset", pretrain=SMOKE_PRETRAIN)


def test_a_shipped_checkpoint_is_found_by_preset_and_seed_and_verified(smoke_checkpoint, tmp_path):
    entry = ship(smoke_checkpoint, SMOKE, 0, "gla world pretrain --smoke", folder=tmp_path)
    assert entry.file == "smoke-test-seed0.pt" and len(entry.sha256) == 64
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["command"] for e in manifest["checkpoints"]] == ["gla world pretrain --smoke"]
    assert shipped_checkpoints(tmp_path)[0] == entry
    assert shipped_checkpoint(SMOKE, 0, tmp_path) == tmp_path / "smoke-test-seed0.pt"
    assert shipped_checkpoint(SMOKE, 1, tmp_path) is None  # another seed: none ships
    other = replace(SMOKE, world=WorldConfig(style_share=0.1))
    assert shipped_checkpoint(other, 0, tmp_path) is None  # the preset changed: not that world
    # shipping again replaces the entry, it does not add one
    ship(smoke_checkpoint, SMOKE, 0, "again", folder=tmp_path)
    assert [e.command for e in shipped_checkpoints(tmp_path)] == ["again"]
    # a damaged file is refused with the command that regenerates it
    (tmp_path / "smoke-test-seed0.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="sha256.*again"):
        shipped_checkpoint(SMOKE, 0, tmp_path)


def test_only_a_checkpoint_of_the_preset_can_ship(smoke_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="not with preset 'photo-only'"):
        ship(smoke_checkpoint, get_preset("photo-only"), 0, "x", folder=tmp_path)
    assert shipped_checkpoints(tmp_path) == []
