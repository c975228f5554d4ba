"""Fine-tuning recipes, prompt learning and the feature cache on a tiny random model."""

import inspect
from dataclasses import replace

import numpy as np
import pytest
import torch

import gla
from gla.backbones import load_backbone
from gla.data import LabelledImages
from gla.features import cached_features, features_path
from gla.finetune import (
    FinetuneConfig,
    ImageClassifier,
    build_train_transform,
    finetune,
    linear_probe,
    predict,
    resume_path,
)
from gla.prompt_learning import CoOp, PromptResiduals, train_prompts
from gla.zeroshot import image_features, zero_shot_head, zero_shot_logits


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_backbone("gla-world-tiny")


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    # Four classes of flat colours with noise: learnable in a few steps.
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    y = torch.arange(4).repeat(16)
    x = colours[y][:, :, None, None].expand(-1, 3, 32, 32) * 0.7 + 0.3 * torch.rand(64, 3, 32, 32, generator=g)
    return LabelledImages(x, y, ["red", "green", "blue", "yellow"], ["a photo of a {}."], name="colours", split="train")


def test_classifier_starts_as_the_zero_shot_model(tiny, data):
    head = zero_shot_head(tiny, data.classnames, data.templates)
    clf = ImageClassifier(tiny.model, head, tiny.logit_scale)
    data.transform = tiny.preprocess
    logits, _ = predict(clf, data)
    data.transform = None
    zs = zero_shot_logits(image_features(tiny, data.images), head, tiny.logit_scale)
    assert torch.allclose(logits, zs, atol=1e-4)


@pytest.mark.parametrize("loss", ["ce", "la"])
def test_end_to_end_finetuning_lowers_the_training_loss(tiny, data, loss, tmp_path):
    import copy

    model = copy.deepcopy(tiny.model)
    head = zero_shot_head(tiny, data.classnames, data.templates)
    clf = ImageClassifier(model, head, tiny.logit_scale)
    ds = LabelledImages(data.images, data.labels, data.classnames, data.templates, transform=tiny.preprocess)
    cfg = FinetuneConfig(epochs=6, lr=1e-3, batch_size=16, warmup_steps=2, loss=loss)
    lps = gla.log_prior_from_counts([4, 3, 2, 1])
    _, hist = finetune(clf, ds, cfg, log_source_prior=lps, checkpoint=tmp_path / "ft.pt", progress=False)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    saved = torch.load(tmp_path / "ft.pt", weights_only=True)
    assert saved["recipe"]["loss"] == loss and len(saved["history"]) == 6


def test_la_loss_needs_a_prior(tiny, data):
    clf = ImageClassifier(tiny.model, zero_shot_head(tiny, data.classnames, data.templates), tiny.logit_scale)
    with pytest.raises(ValueError, match="log_source_prior"):
        finetune(clf, data, FinetuneConfig(epochs=1, loss="la"), progress=False)


def test_linear_probe_selects_on_val(tiny, data):
    f = image_features(tiny, data.images)
    head = zero_shot_head(tiny, data.classnames, data.templates)
    layer, choice = linear_probe(f[::2], data.labels[::2], head.T * tiny.logit_scale, val_features=f[1::2],
                                 val_labels=data.labels[1::2], epochs=30, lr=1e-2)
    from gla.finetune import linear_probe as probe_fn

    candidates = inspect.signature(probe_fn).parameters["weight_decays"].default  # the function's own list
    assert choice["weight_decay"] in candidates and choice["val_accuracy"] is not None
    with torch.no_grad():
        acc = float((layer(f[1::2]).argmax(1) == data.labels[1::2]).float().mean())
    assert acc == pytest.approx(choice["val_accuracy"])


@pytest.mark.parametrize("cls", [PromptResiduals, CoOp])
def test_prompt_learners(tiny, data, cls):
    f = image_features(tiny, data.images)
    learner = cls(tiny, data.classnames, **({"n_ctx": 4} if cls is CoOp else {}))  # the world reads 12 tokens
    if cls is PromptResiduals:  # zero residuals reproduce the single-template zero-shot head
        head = zero_shot_head(tiny, data.classnames, ["a photo of a {}."])
        assert torch.allclose(learner(f), zero_shot_logits(f, head, tiny.logit_scale), atol=1e-4)
    before = torch.nn.functional.cross_entropy(learner(f), data.labels).item()
    learner, hist = train_prompts(learner, f, data.labels, f, data.labels, epochs=15, lr=5e-2, batch_size=16)
    after = torch.nn.functional.cross_entropy(learner(f), data.labels).item()
    assert after < before
    assert hist[-1]["best_epoch"] >= 1  # the untrained learner (epoch 0) is never the one kept
    # Encoders stay frozen.
    assert all(not p.requires_grad for p in tiny.model.parameters())


def test_feature_cache_keys_resume_and_corruption(tiny, data, tmp_path, monkeypatch):
    f1 = cached_features(tiny, data, cache_dir=tmp_path, batch_size=8, chunk_batches=2, progress=False)
    assert f1.shape == (64, 128)
    path = features_path(tiny, data, tmp_path)
    assert path.exists() and not path.with_suffix(".chunks").exists()
    # Cached: the images are not read again.
    monkeypatch.setattr(LabelledImages, "__getitem__", lambda self, i: (_ for _ in ()).throw(AssertionError("read")))
    assert torch.equal(cached_features(tiny, data, cache_dir=tmp_path, progress=False), f1)
    monkeypatch.undo()
    # Another split or subset is another key.
    sub = data.subset(range(32), split="val")
    assert features_path(tiny, sub, tmp_path) != path
    # Corrupt file: detected and rebuilt.
    path.write_bytes(b"not a torch file")
    assert torch.allclose(cached_features(tiny, data, cache_dir=tmp_path, progress=False), f1)
    # Interrupted: finished chunks are reused, only the missing ones are computed.
    path.unlink()
    chunks = path.with_suffix(".chunks")
    chunks.mkdir()
    torch.save(f1[:16], chunks / "00000.pt")
    calls = []
    orig = type(tiny).encode_images
    monkeypatch.setattr(type(tiny), "encode_images", lambda self, x: calls.append(len(x)) or orig(self, x))
    again = cached_features(tiny, data, cache_dir=tmp_path, batch_size=8, chunk_batches=2, progress=False)
    assert sum(calls) == 48 and torch.allclose(again, f1, atol=1e-6)


def _fresh_classifier(tiny, data):
    import copy

    return ImageClassifier(copy.deepcopy(tiny.model), zero_shot_head(tiny, data.classnames, data.templates),
                           tiny.logit_scale)


def test_interrupted_finetuning_resumes_to_the_same_weights(tiny, data, tmp_path):
    """Killed after epoch 1 (an exception from the epoch callback during epoch 2), rerun
    with another worker count: same weights and history as a run that was not stopped."""
    train = LabelledImages(data.images[:24], data.labels[:24], data.classnames, data.templates,
                           transform=tiny.preprocess)
    cfg = FinetuneConfig(epochs=3, lr=1e-3, batch_size=8, warmup_steps=2)
    ref, ref_hist = finetune(_fresh_classifier(tiny, data), train, cfg, checkpoint=tmp_path / "ref.pt",
                             progress=False)

    class Killed(Exception):
        pass

    def kill_in_epoch_2(epoch, model):
        if epoch == 2:
            raise Killed
        return {"val": np.float64(epoch)}  # a NumPy scalar must not make the state unreadable

    ckpt = tmp_path / "ft.pt"
    with pytest.raises(Killed):
        finetune(_fresh_classifier(tiny, data), train, cfg, checkpoint=ckpt, progress=False,
                 on_epoch_end=kill_in_epoch_2)
    state = resume_path(ckpt)
    assert state.exists() and not ckpt.exists()
    assert torch.load(state, weights_only=True)["epoch"] == 1
    seen = []
    resumed, hist = finetune(_fresh_classifier(tiny, data), train, replace(cfg, num_workers=2), checkpoint=ckpt,
                             progress=False, on_epoch_end=lambda e, m: seen.append(e) or {"val": float(e)})
    assert seen == [2, 3]  # epoch 1 was not trained again
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[0]["val"] == 1.0 and type(hist[0]["val"]) is float
    assert [h["train_loss"] for h in hist] == [h["train_loss"] for h in ref_hist]
    a, b = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ckpt.exists() and not state.exists()  # the resumable state goes once the checkpoint is written
    assert torch.load(ckpt, weights_only=True)["recipe"]["precision"] == "fp32"


def test_resume_state_of_another_recipe_is_ignored(tiny, data, tmp_path):
    train = LabelledImages(data.images[:8], data.labels[:8], data.classnames, data.templates,
                           transform=tiny.preprocess)
    cfg = FinetuneConfig(epochs=2, lr=1e-3, batch_size=8, warmup_steps=1, train_transform="none")
    ckpt = tmp_path / "ft.pt"
    torch.save({"settings": {"recipe": "something else"}, "epoch": 1}, resume_path(ckpt))
    with pytest.warns(UserWarning, match="another recipe"):
        _, hist = finetune(_fresh_classifier(tiny, data), train, cfg, checkpoint=ckpt, progress=False)
    assert len(hist) == 2 and ckpt.exists()


def test_recipe_identity_resolves_precision_and_drops_workers():
    cfg = FinetuneConfig(num_workers=4)
    assert cfg.identity("cpu")["precision"] == "fp32" and cfg.identity("cuda")["precision"] == "fp16"
    assert "num_workers" not in cfg.identity() and cfg.identity()["train_transform"] == "wise-ft"
    assert FinetuneConfig(precision="amp_bf16").resolved("cuda").precision == "bf16"
    with pytest.raises(ValueError, match="precision"):
        FinetuneConfig(precision="fp8").resolved()


def test_train_transform_from_an_open_clip_preprocess(tiny_openclip):
    from PIL import Image
    from torchvision import transforms as T

    pre = load_backbone(tiny_openclip).preprocess
    img = Image.new("RGB", (50, 40), (10, 200, 30))
    img.paste((250, 0, 0), (0, 0, 25, 40))
    wise = build_train_transform(pre, "wise-ft")
    rrc = wise.transforms[0]
    assert isinstance(rrc, T.RandomResizedCrop) and rrc.scale == (0.9, 1.0) and list(rrc.size) == [32, 32]
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in wise.transforms)
    assert wise.transforms[-1] is pre.transforms[-1]  # the same Normalize (mean, std)
    torch.manual_seed(0)
    outs = [wise(img) for _ in range(6)]
    assert all(o.shape == pre(img).shape for o in outs) and not all(torch.equal(outs[0], o) for o in outs)
    flip = build_train_transform(pre, "crop-flip")
    assert flip.transforms[0].scale == (0.08, 1.0) and isinstance(flip.transforms[1], T.RandomHorizontalFlip)
    assert build_train_transform(pre, "none") is pre
    with pytest.raises(ValueError, match="train_transform"):
        build_train_transform(pre, "mixup")
    with pytest.raises(ValueError, match="preprocess.*CenterCrop"):
        build_train_transform(T.Compose([T.ToTensor()]), "wise-ft")


def test_train_transform_for_tensor_images(tiny):
    x = torch.rand(3, 32, 32)
    t = build_train_transform(tiny.preprocess, "wise-ft")
    torch.manual_seed(0)
    y = t(x)
    assert y.shape == x.shape and not torch.allclose(y, tiny.preprocess(x))
    # A crop of the whole image is the preprocess itself: same mean and std.
    full = t.transforms[0]
    full.scale, full.ratio = (1.0, 1.0), (1.0, 1.0)
    assert torch.allclose(t(x), tiny.preprocess(x), atol=1e-5)


def test_finetuning_needs_a_transform_attribute_for_augmentation(tiny, data):
    pairs = torch.utils.data.TensorDataset(data.images, data.labels)
    with pytest.raises(ValueError, match="train_transform='none'"):
        finetune(_fresh_classifier(tiny, data), pairs, FinetuneConfig(epochs=1), progress=False)
