"""Experiment entry points: tidy rows, and the test split is never used for a choice."""

import json

import pandas as pd
import pytest
import torch
from PIL import Image

import gla.experiments as ex
from gla.finetune import FinetuneConfig
from gla.world import WorldConfig

TINY = FinetuneConfig(epochs=1, lr=1e-3, batch_size=64, warmup_steps=1)


@pytest.fixture
def spy(monkeypatch):
    """Record every split a choice is made on, and every prior/temperature fit."""
    seen = {"choices": [], "fits": 0, "temps": 0}
    orig_choose, orig_fit, orig_temp = ex._choose_on, ex.PriorEstimator.fit, ex.search_temperature

    def choose(split, what):
        seen["choices"].append((split, what))
        return orig_choose(split, what)

    def fit(self, logits, labels):
        seen["fits"] += 1
        return orig_fit(self, logits, labels)

    def temp(logits, labels, **kw):
        seen["temps"] += 1
        return orig_temp(logits, labels, **kw)

    monkeypatch.setattr(ex, "_choose_on", choose)
    monkeypatch.setattr(ex.PriorEstimator, "fit", fit)
    monkeypatch.setattr(ex, "search_temperature", temp)
    return seen


def assert_no_test_choices(seen):
    assert seen["choices"], "no choice was recorded"
    assert all(not s.startswith("test") for s, _ in seen["choices"]), seen["choices"]
    n_prior = sum(w == "the prior" for _, w in seen["choices"])
    n_temp = sum(w == "a temperature" for _, w in seen["choices"])
    # Every fit went through the guarded helpers.
    assert seen["fits"] == n_prior and seen["temps"] == n_temp


def test_guard_refuses_test_data():
    out = ex.Outputs(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), "test")
    for call in (lambda: ex.fit_prior(out), lambda: ex.fit_temperature(out), lambda: ex.choose_alpha({0.5: out})):
        with pytest.raises(ex.TestSplitUsedError):
            call()


def test_many_shot_world(smoke_checkpoint, tmp_path, spy):
    df = ex.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main", shifted=["world-main-rendition"],
                          world=WorldConfig(), cache_dir=tmp_path, recipe=TINY, alphas=(0.0, 0.5, 1.0),
                          dataset_kwargs={"scale": 0.05}, progress=False)
    assert_no_test_choices(spy)
    main = df[(df.split == "test") & (df.method != "WiSE-FT sweep")]
    assert set(main.method) >= {"zero-shot", "zero-shot - log q", "fine-tuned", "WiSE-FT (alpha=0.5)", "ensemble", "GLA"}
    assert {"top1", "head", "medium", "tail", "ece", "backbone", "dataset", "shots", "seed"} <= set(df.columns)
    assert set(df[df.split == "test:world-main-rendition"].method) == set(main.method)
    assert len(df[df.method == "WiSE-FT sweep"]) == 6
    assert df.top1.between(0, 1).all()
    csv, js = ex.save_results(df, tmp_path / "out", "many_shot")
    assert len(pd.read_csv(csv)) == len(df) and len(json.loads(js.read_text())) == len(df)
    # Cached: a rerun reads fine-tuned weights and logits from the cache and agrees.
    again = ex.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main",
                             shifted=["world-main-rendition"], world=WorldConfig(), cache_dir=tmp_path,
                             recipe=TINY, alphas=(0.0, 0.5, 1.0), dataset_kwargs={"scale": 0.05}, progress=False)
    pd.testing.assert_frame_equal(df, again)


def test_few_shot_world(smoke_checkpoint, tmp_path, spy):
    df = ex.run_few_shot("gla-world-tiny", str(smoke_checkpoint), ["world-patterns"], shots=(1, 4), seeds=(1, 2),
                         world=WorldConfig(), cache_dir=tmp_path, epochs=3, dataset_kwargs={"scale": 0.25},
                         progress=False)
    assert_no_test_choices(spy)
    assert set(df.method) == {"zero-shot", "linear probe", "CoOp", "prompt tuning", "ensemble", "GLA"}
    assert len(df) == 6 * 2 * 2 and set(df.shots) == {1, 4} and set(df.seed) == {1, 2}
    assert df.loc[df.method == "GLA", "t_zs"].gt(0).all()


def test_long_tail_world(smoke_checkpoint, tmp_path, spy):
    df = ex.run_long_tail("gla-world-tiny", str(smoke_checkpoint), "world-lt", world=WorldConfig(),
                          cache_dir=tmp_path, recipe=TINY, dataset_kwargs={"scale": 0.2}, progress=False)
    assert_no_test_choices(spy)
    assert {"many", "medium", "few", "mean_per_class"} <= set(df.columns)
    assert set(df.method) == {"zero-shot", "zero-shot - log q", "fine-tuned (CE)", "fine-tuned (CE) - log p_s",
                              "fine-tuned (LA loss)", "WiSE-FT (alpha=0.5)", "GLA"}


def _img(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)


@pytest.fixture
def real_root(tmp_path, objectnet_fixture):
    """ImageNet-LT and CoOp (DTD) fixtures in their exact on-disk formats."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    wnids = ["n01440764", "n01443537", "n01484850"]
    lt = {"train": [9, 4, 2], "val": [3, 3, 3], "test": [3, 3, 3]}
    (tmp_path / "ImageNet_LT").mkdir()
    for split, counts in lt.items():
        lines = []
        for y, (w, n) in enumerate(zip(wnids, counts)):
            for i in range(n):
                rel = f"{'val' if split == 'test' else 'train'}/{w}/{w}_{split}_{i}.JPEG"
                _img(tmp_path / "imagenet" / "images" / rel, colours[y])
                lines.append(f"{rel} {y}")
        (tmp_path / "ImageNet_LT" / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines))
    split_json = {}
    for split, n in [("train", 8), ("val", 4), ("test", 3)]:
        split_json[split] = []
        for y, c in enumerate(["banded", "blotchy", "braided"]):
            for i in range(n):
                rel = f"{c}/{split}_{i}.jpg"
                _img(tmp_path / "dtd" / "images" / rel, colours[y])
                split_json[split].append([rel, y, c])
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").write_text(json.dumps(split_json))
    objectnet_fixture(tmp_path)
    return tmp_path


def test_real_path_end_to_end_on_fixtures(tiny_openclip, real_root, tmp_path, spy):
    lt = ex.run_long_tail(tiny_openclip, None, "imagenet_lt", root=str(real_root), cache_dir=tmp_path / "c",
                          recipe=FinetuneConfig(epochs=1, lr=1e-4, batch_size=8, warmup_steps=1), progress=False)
    fs = ex.run_few_shot(tiny_openclip, None, ["dtd"], shots=(2,), seeds=(1,), root=str(real_root),
                         cache_dir=tmp_path / "c", epochs=2, progress=False)
    ms = ex.run_many_shot(tiny_openclip, None, "imagenet_lt", root=str(real_root), cache_dir=tmp_path / "c",
                          recipe=FinetuneConfig(epochs=1, lr=1e-4, batch_size=8, warmup_steps=1),
                          alphas=(0.0, 1.0), shifted=["objectnet"], progress=False)
    assert_no_test_choices(spy)
    assert len(lt) == 7 and len(fs) == 6 and ((ms.split == "test") & (ms.method != "WiSE-FT sweep")).sum() == 7
    on = ms[ms.split == "test:objectnet"]
    assert len(on) == 7 and on.top1.between(0, 1).all() and on.top5.eq(1.0).all()  # 2 classes: top-5 is sure
    assert set(lt.dataset) == {"imagenet_lt"} and set(fs.dataset) == {"dtd"}
