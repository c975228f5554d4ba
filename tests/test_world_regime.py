"""The world's regime against real CLIP (P1-P6, ``gla.world.regime``), its presets and the
downstream label noise."""

from dataclasses import replace

import pytest
import torch

from gla import protocols as pr
from gla.protocols import Method
from gla.world import SHIFTED_TASKS, World, WorldConfig, make_split
from gla.world.presets import PRESETS, get_preset
from gla.world.regime import (
    PROPERTIES,
    real_clip_measures,
    regime_checks,
    regime_measures,
    summarise,
)


def test_real_clip_measures_come_from_the_published_records():
    # VRF (NeurIPS 2024) Table 2, CLIP ViT-B/16: zero-shot 68.3 / fine-tuned 81.3 on ImageNet;
    # zero-shot wins on Sketch, A, R and ObjectNet, fine-tuned on V2.
    m = real_clip_measures()
    assert m["ft_minus_zs"] == pytest.approx(13.0)
    assert m["zs_wins"] == 4
    assert m["zs_ood_ratio"] == pytest.approx((61.9 + 48.3 + 50.1 + 77.6 + 54.2) / 5 / 68.3)
    assert m["ft_ood_ratio"] == pytest.approx((70.6 + 45.1 + 36.6 + 65.6 + 50.5) / 5 / 81.3)
    assert m["ratio_gap"] == pytest.approx(0.195, abs=1e-3)
    # real CLIP meets the properties it defines (those that need only published numbers)
    assert 55 <= m["zs_id"] <= 72 and 10 <= m["ft_minus_zs"] <= 16 and m["ratio_gap"] >= 0.10
    with pytest.raises(KeyError, match="no published"):
        real_clip_measures("RN50", "openai")


def _passing() -> dict:
    return {"zs_id": 60.0, "ft_minus_zs": 12.0, "zs_wins": 3, "ratio_gap": 0.12, "wise_val_gain_id": 0.6,
            "wise_half_gain_ood": 3.5, "prior_max_min": 12.0, "zs_head_minus_tail": 15.0, "ft_head_minus_tail": -4.0,
            "spearman_zs_acc_true": 0.35}


@pytest.mark.parametrize("key, value, broken", [
    ("zs_id", 54.9, "P1"), ("zs_id", 72.5, "P1"), ("ft_minus_zs", 16.5, "P2"), ("ft_minus_zs", 9.0, "P2"),
    ("zs_wins", 2, "P3"), ("ratio_gap", 0.09, "P3"), ("wise_val_gain_id", 0.4, "P4"),
    ("wise_half_gain_ood", 2.9, "P4"), ("prior_max_min", 9.0, "P5"), ("zs_head_minus_tail", 9.0, "P5"),
    ("ft_head_minus_tail", 5.5, "P5"), ("ft_head_minus_tail", -5.5, "P5"), ("spearman_zs_acc_true", 0.29, "P6"),
])
def test_each_threshold_of_each_property(key, value, broken):
    assert all(regime_checks(_passing()).values())
    checks = regime_checks({**_passing(), key: value})
    assert [p for p, ok in checks.items() if not ok] == [broken]
    assert [p.id for p in PROPERTIES] == ["P1", "P2", "P3", "P4", "P5", "P6"]


def test_summarise_gives_mean_and_sample_std():
    s = summarise([{"a": 1.0, "b": "x"}, {"a": 3.0, "b": "y"}])
    assert s == {"a": {"mean": 2.0, "std": pytest.approx(2 ** 0.5)}}


def test_regime_measures_read_the_many_shot_run(smoke_checkpoint, tmp_path):
    world = WorldConfig()
    config = pr.RunConfig(cache_dir=tmp_path, progress=False, dataset_options={"world": world, "scale": 0.1})
    recipe = get_preset("default").finetune
    res = pr.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main", shifted=SHIFTED_TASKS,
                           recipe=replace(recipe, epochs=1, warmup_steps=2), alphas=(0.0, 0.5, 1.0), config=config)
    m = regime_measures(res, World(world).log_prior)
    t = res.table.set_index(["eval_set", "split", "method"])
    assert m["zs_id"] == pytest.approx(t.loc[("world-main", "test", Method.ZERO_SHOT), "top1"] * 100)
    assert m["ft_minus_zs"] == pytest.approx(m["ft_id"] - m["zs_id"])
    zs = [t.loc[(s, f"test:{s}", Method.ZERO_SHOT), "top1"] * 100 for s in SHIFTED_TASKS]
    ft = [t.loc[(s, f"test:{s}", Method.FINE_TUNED), "top1"] * 100 for s in SHIFTED_TASKS]
    assert m["zs_wins"] == sum(z > f for z, f in zip(zs, ft))
    assert m["ratio_gap"] == pytest.approx(sum(zs) / 5 / m["zs_id"] - sum(ft) / 5 / m["ft_id"])
    assert m["wise_alpha"] == res.outputs.alpha
    assert m["prior_max_min"] >= 1 and m["prior_max_min_protocol"] >= 1
    acc = torch.tensor([float((res.outputs.test.logits[Method.ZERO_SHOT].argmax(1)[res.outputs.test.labels == k]
                               == k).float().mean()) for k in range(100)])
    assert m["spearman_zs_acc_true"] == pytest.approx(float(
        torch.corrcoef(torch.stack([acc.argsort().argsort().double(),
                                    World(world).log_prior.argsort().argsort().double()]))[0, 1]), abs=0.05)
    assert set(regime_checks(m)) == {"P1", "P2", "P3", "P4", "P5", "P6"}
    with pytest.raises(ValueError, match="shifted sets"):
        regime_measures(pr.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main",
                                         shifted=SHIFTED_TASKS[:1], recipe=replace(recipe, epochs=1, warmup_steps=2),
                                         alphas=(0.5,), config=config), World(world).log_prior)


def test_label_noise_flips_only_world_mains_training_labels():
    clean, noisy = World(WorldConfig()), World(WorldConfig(label_noise=0.2))
    a, b = make_split(clean, "world-main", "train", scale=0.2), make_split(noisy, "world-main", "train", scale=0.2)
    assert torch.equal(a.images, b.images) and torch.equal(a.concepts, b.concepts)
    flipped = a.labels != b.labels
    assert int(flipped.sum()) == round(0.2 * len(a.labels))
    for split in ("val", "test"):
        assert torch.equal(make_split(clean, "world-main", split, scale=0.1).labels,
                           make_split(noisy, "world-main", split, scale=0.1).labels)
    assert torch.equal(make_split(clean, "world-small", "train", scale=0.1).labels,
                       make_split(noisy, "world-small", "train", scale=0.1).labels)
    # downstream only: the pretraining corpus and its checkpoint key are the clean world's
    from gla.world.pretrain import PretrainConfig, checkpoint_path

    assert checkpoint_path(WorldConfig(label_noise=0.2), PretrainConfig(), "c") == \
        checkpoint_path(WorldConfig(), PretrainConfig(), "c")
    assert "label_noise" not in WorldConfig().settings() and WorldConfig(label_noise=0.2).key() != WorldConfig().key()
    with pytest.raises(ValueError, match="label_noise"):
        World(WorldConfig(label_noise=1.0))


def test_presets_name_whole_worlds():
    assert {"default", "photo-only"} <= set(PRESETS)
    p = get_preset("photo-only")
    assert p.world_config(2).seed == 2 and p.pretrain_config(2).seed == 2
    assert p.pretrain_config(2, threads=1).threads == 1
    d = p.describe()
    assert d["name"] == "photo-only" and d["finetune"]["lr"] == p.finetune.lr
    with pytest.raises(ValueError, match="photo-only"):
        get_preset("nope")


def test_instance_words_describe_each_image_and_leave_the_default_corpus_alone():
    import hashlib

    from gla.world.concepts import INSTANCE_WORDS, WordTokenizer
    from gla.world.pretrain import batch

    plain = World(WorldConfig())
    images, texts, _ = batch(plain, 3, 16, 0, WordTokenizer(plain.vocabulary()))
    # the default corpus' batch 3 as it was before instance words existed
    digest = hashlib.sha256(images.numpy().tobytes() + texts.numpy().tobytes()).hexdigest()[:12]
    assert digest == "147a48951a81"
    assert not set(INSTANCE_WORDS) & set(plain.vocabulary())
    rich = World(WorldConfig(instance_prob=1.0, style_share=0.5))
    tok = WordTokenizer(rich.vocabulary())
    images2, texts2, concepts = batch(rich, 3, 64, 0, tok)
    words = {w for i, w in enumerate(tok.vocabulary) if (texts2 == i + 3).any()}
    assert {"small", "large", "left", "right", "dark", "light"} <= words
    assert words & {"sketch", "drawing", "cluttered"}  # half the batch is in another style
    assert WorldConfig(instance_prob=0.5).corpus_settings()["instance_prob"] == 0.5  # a corpus setting


def test_a_fixed_logit_scale_is_held_and_keeps_earlier_keys(tmp_path):
    from gla.world import PretrainConfig, pretrain
    from gla.world.pretrain import checkpoint_path

    assert "fixed_logit_scale" not in PretrainConfig().settings()
    assert checkpoint_path(WorldConfig(), PretrainConfig(), "c").name == "clip-d6b70e19015990cc.pt"
    cfg = PretrainConfig(steps=3, batch_size=16, warmup=1, fixed_logit_scale=100.0, checkpoint_every=100)
    ckpt = torch.load(pretrain(WorldConfig(), cfg, cache_dir=tmp_path, progress=False), weights_only=False)
    assert float(ckpt["state_dict"]["logit_scale"].exp()) == pytest.approx(100.0)
    assert ckpt["pretrain_config"]["fixed_logit_scale"] == 100.0
    with pytest.raises(ValueError, match="fixed_logit_scale"):
        pretrain(WorldConfig(), replace(cfg, fixed_logit_scale=200.0), cache_dir=tmp_path, progress=False)
