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


def _regimes():
    """Two presets' regime records as benchmarks/world_regime.py writes them (made-up numbers)."""
    from gla.world.regime import PROPERTIES

    def rec(seed, zs, holds):
        m = {k: 1.0 for p in PROPERTIES for k in p.measures}
        m.update(seed=seed, zs_id=zs, top1_zero_shot=zs, top1_fine_tuned=zs + 12, checks={p.id: holds for p in PROPERTIES})
        return m

    def doc(recs):
        return {"per_seed": recs, "measured": "2026-12-04",
                "holds_in_every_seed": {p.id: all(r["checks"][p.id] for r in recs) for p in PROPERTIES}}

    return {"default": doc([rec(0, 60.0, True), rec(1, 58.0, True)]),
            "photo-only": doc([rec(0, 62.0, False), rec(1, 61.0, True)])}


def test_the_regime_table_sets_each_preset_and_seed_beside_real_clip():
    from gla.world.book import regime_sentence, regime_table

    t = regime_table(_regimes())
    assert list(t.columns[:2]) == ["property", "measure"]
    assert {"default, seed 0", "default, seed 1", "photo-only, seed 1", "default: holds", "CLIP ViT-B/16"} <= set(t)
    row = t.set_index("measure").loc["zs_id"]
    assert row["default, seed 1"] == 58.0 and row["CLIP ViT-B/16"] == pytest.approx(68.3)
    assert row["default: holds"] == "2 of 2" and row["photo-only: holds"] == "1 of 2"
    s = regime_sentence(_regimes())
    assert "`default` meets P1, P2, P3, P4, P5, P6 in all 2 seeds" in s
    assert "`photo-only` meets none in all 2 seeds and misses P1, P2" in s


def test_seed_spread_comes_from_the_shipped_regime(monkeypatch):
    import gla.world.regime as regime
    from gla.world.book import seed_spread

    monkeypatch.setattr(regime, "shipped_regimes", lambda *a, **k: _regimes())
    s = seed_spread("default")
    assert s["seeds"] == [0, 1] and s["values"]["zero_shot"] == [60.0, 58.0]
    assert s["values"]["fine_tuned"] == [72.0, 70.0]
    assert seed_spread("nope") is None


def test_the_checkpoint_sentence_says_where_the_clip_comes_from(tmp_path):
    from gla.world.book import checkpoint_sentence

    assert "ships with the package" in checkpoint_sentence(tmp_path / "default-seed0.pt", "shipped")
    assert "gla world pretrain --preset default --world-seed 0" in checkpoint_sentence("x.pt", "shipped")
    assert "pretrained here" in checkpoint_sentence("x.pt", "pretrained", "photo-only", 2)
    assert "--preset photo-only --world-seed 2" in checkpoint_sentence("x.pt", "pretrained", "photo-only", 2)
    assert "smoke" in checkpoint_sentence("x.pt", "smoke") and "mine.pt" in checkpoint_sentence("a/mine.pt", "given")


def test_gla_world_pretrain_ship_records_the_command_that_regenerates_it(smoke_checkpoint, tmp_path, monkeypatch, capsys):
    import gla.world.presets as presets
    import gla.world.shipped as shipped
    from gla.cli import main

    monkeypatch.setitem(presets.PRESETS, SMOKE.name, SMOKE)
    monkeypatch.setattr(shipped, "ship", lambda *a, **k: ship(*a, **k, folder=tmp_path / "pkg"))
    cache = smoke_checkpoint.parent.parent  # the checkpoint is cached there: nothing pretrains again
    argv = ["world", "pretrain", "--preset", SMOKE.name, "--world-seed", "0", "--ship", "--no-regime",
            "--cache-dir", str(cache)]
    assert main(argv) == 0
    assert "shipped as gla/world/checkpoints/smoke-test-seed0.pt" in capsys.readouterr().out
    (entry,) = shipped_checkpoints(tmp_path / "pkg")
    assert entry.command == "gla " + " ".join(argv) and entry.seed == 0
    assert (tmp_path / "pkg" / entry.file).read_bytes() == smoke_checkpoint.read_bytes()
    # another world (a changed setting) cannot ship under the preset's name
    assert main(argv + ["--style-share", "0.1"]) != 0
    assert "only a checkpoint of preset 'smoke-test' as it is can ship" in capsys.readouterr().err


def test_the_default_world_ships_its_seed_0_clip():
    path = shipped_checkpoint("default", 0)
    assert path is not None and path.name == "default-seed0.pt"
    (entry,) = [e for e in shipped_checkpoints() if e.preset == "default" and e.seed == 0]
    assert entry.command == "gla world pretrain --preset default --world-seed 0 --ship"


def test_a_regenerated_checkpoint_is_compared_property_by_property(smoke_checkpoint, tmp_path, monkeypatch, capsys):
    """gla world pretrain after pretraining: P1-P6 of the new checkpoint beside the shipped
    one's; --strict fails when a property is lost (the scheduled workflow's check)."""
    import gla.world.presets as presets
    import gla.world.regime as regime
    import gla.world.shipped as shipped
    from gla.cli import main
    from gla.world.regime import PROPERTIES

    other = tmp_path / "other.pt"
    other.write_bytes(smoke_checkpoint.read_bytes())  # the same bytes first: no measuring at all
    monkeypatch.setitem(presets.PRESETS, SMOKE.name, SMOKE)
    monkeypatch.setattr(shipped, "shipped_checkpoint", lambda *a, **k: other)
    argv = ["world", "pretrain", "--preset", SMOKE.name, "--cache-dir", str(smoke_checkpoint.parent.parent), "--quiet"]
    assert main(argv) == 0 and "byte for byte the shipped one" in capsys.readouterr().out

    other.write_bytes(b"another file")
    measures = {m: 1.0 for p in PROPERTIES for m in p.measures}
    ref = {**measures, "checks": {p.id: True for p in PROPERTIES}}
    new = {**measures, "zs_id": 40.0, "checks": {**ref["checks"], "P1": False}}
    monkeypatch.setattr(regime, "measure_regime", lambda *a, **k: new)
    monkeypatch.setattr(regime, "shipped_regime", lambda *a, **k: ref)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "P1 does not hold (shipped: holds): zs_id 40.00 (shipped 1.00, +39.00)" in out
    assert "P2 holds (shipped: holds)" in out
    assert main(argv + ["--strict"]) == 1
    assert "--strict: P1 held for the shipped checkpoint" in capsys.readouterr().err


def test_the_prior_theory_finding_reads_spread_and_correlation_per_preset():
    from gla.world.book import prior_theory_finding

    regimes = _regimes()
    for doc, rhos in zip(regimes.values(), [(-0.5, -0.4), (0.1, 0.2)]):
        for r, rho in zip(doc["per_seed"], rhos):
            r.update(prior_max_min=20.0 + 10 * rho, spearman_estimated_true=rho)
    text = prior_theory_finding(regimes)
    assert "preset `default` (seeds 0, 1) the estimated prior's max/min is 15.0 to 16.0" in text
    assert "rank correlation with the true prior -0.50 to -0.40: the estimate runs against pretraining frequency" in text
    assert "`photo-only` (seeds 0, 1)" in text and "+0.10 to +0.20: the estimate does not follow" in text
    assert text.endswith("but it is not pretraining frequency: the estimate absorbs whatever the model over-predicts, "
                         "which the next section takes apart class by class.")
    for r in regimes["default"]["per_seed"]:
        r.update(prior_max_min=5.0)
    assert prior_theory_finding(regimes).endswith("there is little bias in its logits to remove.")
    for r in regimes["default"]["per_seed"]:
        r.update(prior_max_min=30.0, spearman_estimated_true=0.5)
    assert prior_theory_finding(regimes).endswith("it follows pretraining frequency, as the paper assumes.")
    assert prior_theory_finding({}) == "No regime measurement ships with this package."
