"""Prompt learners (the paper's residuals, CoOp), model selection and the two training recipes.

Everything runs on tiny randomly initialised open_clip models on the CPU; the images of
the end-to-end recipe are a few generated PIL images written as PNG files.
"""

import json
import logging
import math

import open_clip
import pytest
import torch
from PIL import Image

from gla.adjust import gla_logits
from gla.backbones import load_backbone
from gla.data import LabelledImages
from gla.prompt_learning import (
    CoOp,
    PromptResiduals,
    dassl_cosine_lr,
    gla_val_selector,
    train_prompts,
    train_prompts_end_to_end,
    training_augmentation,
)
from gla.temperature import fit_temperature, search_temperature

NAMES = ["red apple", "green", "blue sky", "yellow"]
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 220, 30)]


def _quiet_backbone(name):
    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded
    try:
        torch.manual_seed(0)
        return load_backbone(name)
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def bb(tiny_openclip):
    return _quiet_backbone(tiny_openclip)


@pytest.fixture(scope="module")
def bb_long(tmp_path_factory):
    """A tiny open_clip model whose context (32) holds CoOp's 16 context tokens and a class name."""
    d = tmp_path_factory.mktemp("long_ctx_config")
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (d / "gla-test-tiny-vit-ctx32.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)
    return _quiet_backbone("gla-test-tiny-vit-ctx32")


def _features(n, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)


# --------------------------------------------------------------------------- PromptResiduals

def test_residuals_start_as_the_zero_shot_head_of_their_prompt(bb):
    learner = PromptResiduals(bb, NAMES, "a photo of a {}.")
    head = open_clip.build_zero_shot_classifier(bb.model, bb.tokenizer, NAMES, ["a photo of a {}."])  # (D, K)
    with torch.no_grad():
        assert torch.allclose(learner.text_features(), head.T, atol=1e-6)
        f = _features(10, head.shape[0])
        assert torch.allclose(learner(f), bb.logit_scale * f @ head, atol=1e-5)
    # Another prompt is another head: the template is really used.
    other = open_clip.build_zero_shot_classifier(bb.model, bb.tokenizer, NAMES, ["{} texture."])
    assert not torch.allclose(learner.text_features().detach(), other.T, atol=1e-3)


def test_residuals_cover_every_position_after_start_through_end_of_text(bb):
    learner = PromptResiduals(bb, NAMES)
    tokens = learner.tokens
    eot = (tokens == bb.tokenizer.eot_token_id).int().argmax(dim=1)
    pos = torch.arange(tokens.shape[1])[None]
    assert torch.equal(learner.trainable_positions, (pos >= 1) & (pos <= eot[:, None]))
    assert learner.trainable_positions[torch.arange(len(NAMES)), eot].all()  # the end-of-text token is learned
    assert not learner.trainable_positions[:, 0].any()  # the start token is not
    # Behaviour, not bookkeeping: gradients reach the end-of-text residual and never the padding.
    loss = learner(_features(8, 32)).logsumexp(dim=1).sum()
    loss.backward()
    grad_norm = learner.residual.grad.norm(dim=-1)  # (K, P), P = largest end-of-text position
    for k in range(len(NAMES)):
        assert grad_norm[k, eot[k] - 1] > 0  # residual index = position - 1
        assert grad_norm[k, :eot[k]].gt(0).all()
        assert grad_norm[k, eot[k]:].eq(0).all()
    # A residual placed on a short prompt's padding changes nothing.
    short = int(eot.argmin())
    assert eot[short] < learner.residual.shape[1]
    before = learner.text_features().detach()
    with torch.no_grad():
        learner.residual[short, eot[short]:] = 5.0
    assert torch.equal(learner.text_features().detach(), before)
    with torch.no_grad():  # the end-of-text position (a constant shift would vanish in the layer norms)
        learner.residual[short, eot[short] - 1] = torch.randn(32, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(learner.text_features().detach()[short], before[short], atol=1e-4)


def test_learners_freeze_clip_and_check_inputs(bb):
    learner = PromptResiduals(bb, NAMES)
    assert all(not p.requires_grad for p in bb.model.parameters())
    assert [n for n, p in learner.named_parameters() if p.requires_grad] == ["residual"]
    learner.train()
    assert learner.training and not learner.clip.training  # frozen CLIP stays in eval mode
    with pytest.raises(ValueError, match="template"):
        PromptResiduals(bb, NAMES, "a photo")
    with pytest.raises(ValueError, match="classnames"):
        PromptResiduals(bb, "red")


# --------------------------------------------------------------------------- CoOp

def test_coop_default_is_sixteen_random_context_vectors_with_the_class_last(bb_long):
    learner = CoOp(bb_long, NAMES, seed=1)
    assert learner.n_ctx == 16 and learner.ctx.shape == (16, 32) and learner.ctx_init is None
    ctx = learner.ctx.detach()
    assert 0.015 < float(ctx.std()) < 0.025 and abs(float(ctx.mean())) < 0.005
    # Seeded; seed=None follows torch's global generator, as CoOp does.
    assert torch.equal(CoOp(bb_long, NAMES, seed=1).ctx, learner.ctx)
    assert not torch.equal(CoOp(bb_long, NAMES, seed=2).ctx, learner.ctx)
    torch.manual_seed(5)
    a = CoOp(bb_long, NAMES).ctx
    torch.manual_seed(5)
    assert torch.equal(CoOp(bb_long, NAMES).ctx, a)
    # Prompt layout: [SOT] 16 context slots, then the class name's own tokens, ".", [EOT].
    for k, name in enumerate(NAMES):
        alone = bb_long.tokenizer([f"{name}."])[0]
        n_alone = int(alone.argmax())  # tokens of "name." plus the start token
        row = learner.tokens[k]
        assert torch.equal(row[17:17 + n_alone], alone[1:n_alone + 1])
        assert int(row.argmax()) == 16 + n_alone
    # The context vectors are shared and they are what the text tower sees.
    emb = learner.embeddings()
    assert torch.equal(emb[:, 1:17], learner.ctx[None].expand(len(NAMES), -1, -1))
    assert torch.equal(emb[:, 17:], learner.base[:, 17:])


def test_coop_from_a_phrase_starts_as_that_prompts_zero_shot_head(bb_long, bb):
    head = open_clip.build_zero_shot_classifier(bb_long.model, bb_long.tokenizer, NAMES, ["a photo of a {}."])
    for ctx_init in ("a photo of a", "a photo of a {}."):
        learner = CoOp(bb_long, NAMES, ctx_init)
        assert learner.n_ctx == 4 and learner.ctx_init == "a photo of a"
        assert torch.allclose(learner.text_features().detach(), head.T, atol=1e-6)
    with pytest.raises(ValueError, match="n_ctx must be 4"):
        CoOp(bb_long, NAMES, "a photo of a", n_ctx=16)
    # A template is read for its words before "{}" when they are n_ctx tokens; otherwise (none, or
    # another count) the context is random. The class name is always last.
    assert CoOp(bb_long, NAMES, "{} texture.", n_ctx=4, seed=0).prompts[0] == "X X X X red apple."
    odd = CoOp(bb_long, NAMES, "a centered satellite photo of {}.", n_ctx=4, seed=0)
    assert odd.ctx_init is None and torch.equal(odd.ctx, CoOp(bb_long, NAMES, n_ctx=4, seed=0).ctx)
    pets = CoOp(bb_long, NAMES, "a photo of a {}, a type of pet.")
    assert pets.ctx_init == "a photo of a" and pets.prompts[0] == "a photo of a red apple."
    # bb's context (16) cannot hold 16 context tokens and a class name.
    with pytest.raises(ValueError, match="context length 16"):
        CoOp(bb, NAMES)


# --------------------------------------------------------------------------- selection, fast recipe

@pytest.fixture(scope="module")
def cached(bb):
    """Features near the zero-shot text directions of NAMES, with noise: learnable, not trivial."""
    g = torch.Generator().manual_seed(0)
    learner = PromptResiduals(bb, NAMES)
    with torch.no_grad():
        text = learner.text_features()
    y = torch.arange(4).repeat(12)
    rot = torch.linalg.qr(torch.randn(32, 32, generator=g))[0]  # the class directions are rotated away
    x = torch.nn.functional.normalize(text[y] @ rot + 0.15 * torch.randn(len(y), 32, generator=g), dim=-1)
    return x[:24], y[:24], x[24:], y[24:]


class _Recorder:
    """A selector that prefers the evaluation number ``peak`` and keeps what it was shown."""

    name = "recorded"

    def __init__(self, peak):
        self.peak, self.seen = peak, []

    def __call__(self, logits):
        self.seen.append(logits.detach().clone())
        return -float((len(self.seen) - 1 - self.peak) ** 2)


def test_train_prompts_keeps_the_epoch_select_prefers(bb, cached):
    xt, yt, xv, yv = cached
    rec = _Recorder(peak=3)  # evaluation 0 is the untrained learner, evaluation i is epoch i
    learner, hist = train_prompts(PromptResiduals(bb, NAMES), xt, yt, xv, yv, epochs=6, lr=5e-2, select=rec)
    summary, epochs = hist[-1], hist[:-1]
    assert [h["epoch"] for h in epochs] == list(range(7)) and len(rec.seen) == 7
    assert summary["best_epoch"] == 3 and summary["score"] == "recorded" and summary["best_val_score"] == 0.0
    assert [h["val_score"] for h in epochs] == [-9.0, -4.0, -1.0, 0.0, -1.0, -4.0, -9.0]
    with torch.no_grad():  # epoch 3's parameters are the ones loaded
        assert torch.allclose(learner(xv), rec.seen[3], atol=1e-5)
        assert not torch.allclose(learner(xv), rec.seen[6], atol=1e-3)
    # The untrained learner is recorded but never selected, even when it scores best.
    rec0 = _Recorder(peak=0)
    _, hist0 = train_prompts(PromptResiduals(bb, NAMES), xt, yt, xv, yv, epochs=3, lr=5e-2, select=rec0)
    assert hist0[0]["candidate"] is False and hist0[-1]["best_epoch"] == 1


def test_train_prompts_by_val_accuracy_learns_and_restores(bb, cached):
    xt, yt, xv, yv = cached
    learner, hist = train_prompts(PromptResiduals(bb, NAMES), xt, yt, xv, yv, epochs=15, lr=2e-2)
    with torch.no_grad():
        acc = float((learner(xv).argmax(1) == yv).float().mean())
    summary, epochs = hist[-1], hist[:-1]
    assert epochs[-1]["train_loss"] < 0.5 * epochs[1]["train_loss"]  # epoch 1's loss is the untrained one's
    assert summary["score"] == "val_accuracy" and summary["best_epoch"] >= 1
    best = max(h["val_accuracy"] for h in epochs[1:])
    assert summary["best_val_accuracy"] == best == acc
    assert summary["best_epoch"] == next(h["epoch"] for h in epochs[1:] if h["val_accuracy"] == best)
    assert acc > epochs[0]["val_accuracy"]  # training helped on val


def test_gla_val_selector_scores_gla_accuracy_with_t_ft_searched_per_call():
    g = torch.Generator().manual_seed(3)
    n, k = 60, 5
    y = torch.arange(k).repeat(n // k)
    zs = torch.randn(n, k, generator=g) * 3 + 2 * torch.nn.functional.one_hot(y, k)
    log_q = torch.log_softmax(torch.randn(k, generator=g), 0)
    pt = torch.randn(n, k, generator=g) * 4 + 3 * torch.nn.functional.one_hot(y, k)
    sel = gla_val_selector(zs, y, log_q, 1.3, temperature_method="exact")
    t_ft = search_temperature(pt, y)
    expect = float((gla_logits(zs, pt, log_q, zs_temperature=1.3, ft_temperature=t_ft).argmax(1) == y).double().mean())
    assert sel(pt) == expect and sel.last_details == {"t_ft": t_ft, "t_ft_converged": True}
    # The temperature matters: a very different fixed T_ft gives another score here.
    fixed = gla_val_selector(zs, y, log_q, 1.3, search_t_ft=False, t_ft=0.05)
    z_fixed = gla_logits(zs, pt, log_q, zs_temperature=1.3, ft_temperature=0.05)
    assert fixed(pt) == float((z_fixed.argmax(1) == y).double().mean()) != expect
    assert fixed.last_details["t_ft"] == 0.05
    # The paper's protocol searches T_ft as the official code does (regula falsi, 1.0 pp).
    official = gla_val_selector(zs, y, log_q, 1.3)
    official(pt)
    assert official.last_details["t_ft"] == fit_temperature(pt, y, method="official", thres=1.0).temperature
    # Perfect val accuracy: no temperature matches it; T_ft = 1, flagged.
    sel(10 * torch.nn.functional.one_hot(y, k).float())
    assert sel.last_details == {"t_ft": 1.0, "t_ft_converged": False}
    with pytest.raises(ValueError, match="pt_val_logits"):
        sel(pt[:, :3])
    with pytest.raises(ValueError, match="t_zs"):
        gla_val_selector(zs, y, log_q, 0.0)
    with pytest.raises(ValueError, match="val_labels"):
        gla_val_selector(zs, y[:-1], log_q, 1.0)


def test_train_prompts_with_the_gla_selector_records_it(bb, cached):
    xt, yt, xv, yv = cached
    with torch.no_grad():
        zs_val = PromptResiduals(bb, NAMES)(xv)
    log_q = torch.log_softmax(torch.tensor([1.0, -1.0, 0.5, 0.0]), 0)
    sel = gla_val_selector(zs_val, yv, log_q, 1.0)
    learner, hist = train_prompts(PromptResiduals(bb, NAMES), xt, yt, xv, yv, epochs=5, lr=5e-2, select=sel)
    epochs, summary = hist[:-1], hist[-1]
    assert summary["score"] == "gla_val_accuracy" and all("t_ft" in h for h in epochs)
    best = max(h["val_score"] for h in epochs[1:])
    assert summary["best_val_score"] == best
    with torch.no_grad():
        assert sel(learner(xv)) == best  # the kept parameters score what was recorded


def test_train_prompts_checks_inputs(bb, cached):
    xt, yt, xv, yv = cached
    with pytest.raises(ValueError, match="epochs"):
        train_prompts(PromptResiduals(bb, NAMES), xt, yt, xv, yv, epochs=0)
    with pytest.raises(ValueError, match="train_labels"):
        train_prompts(PromptResiduals(bb, NAMES), xt, yt + 4, xv, yv, epochs=1)
    with pytest.raises(TypeError, match="learner"):
        train_prompts(torch.nn.Linear(2, 2), xt, yt, xv, yv, epochs=1)


# --------------------------------------------------------------------------- paper's recipe

def _images(root, per_class, seed):
    g = torch.Generator().manual_seed(seed)
    paths, labels = [], []
    for y, colour in enumerate(COLOURS):
        for i in range(per_class):
            noise = (torch.rand(40, 40, 3, generator=g) * 60 - 30).round().to(torch.int16)
            arr = (torch.tensor(colour, dtype=torch.int16) + noise).clamp(0, 255).to(torch.uint8)
            p = root / f"c{y}_{i}.png"
            Image.fromarray(arr.numpy(), "RGB").save(p)
            paths.append(str(p))
            labels.append(y)
    return paths, labels


@pytest.fixture(scope="module")
def pil_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pil_images")
    (root / "train").mkdir()
    (root / "val").mkdir()
    tr = LabelledImages(*_images(root / "train", 4, 0), NAMES, ["a photo of a {}."], name="colours", split="train")
    va = LabelledImages(*_images(root / "val", 2, 1), NAMES, ["a photo of a {}."], name="colours", split="val")
    return tr, va


def test_training_augmentation_follows_the_preprocess(bb):
    aug = training_augmentation(bb.preprocess)
    assert aug.size == (32, 32) and aug.scale == (0.08, 1.0)
    norm = bb.preprocess.transforms[-1]
    assert aug.mean == tuple(norm.mean) and aug.std == tuple(norm.std)
    flat = Image.new("RGB", (50, 40), (200, 100, 30))  # any crop or flip of a flat image is the same image
    assert torch.allclose(aug(flat), bb.preprocess(flat), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    textured = Image.fromarray((torch.rand(40, 40, 3, generator=g) * 255).to(torch.uint8).numpy(), "RGB")
    torch.manual_seed(0)
    a, b = aug(textured), aug(textured)
    assert a.shape == bb.preprocess(textured).shape and not torch.allclose(a, b)
    # Tensors in [0, 1] (the world's images) with a bare Normalize: the size must be given.
    bare = norm
    with pytest.raises(ValueError, match="image_size"):
        training_augmentation(bare)
    assert training_augmentation(bare, 24)(torch.rand(3, 40, 40)).shape == (3, 24, 24)


def test_dassl_schedule_is_constant_warmup_then_cosine():
    lrs = [dassl_cosine_lr(e, 10, 4e-4) for e in range(10)]
    assert lrs[0] == 1e-5 and lrs[1] == 4e-4
    # After the warm-up it is torch's cosine annealing over all 10 epochs, counted from 0.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=4e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    ref = []
    for _ in range(9):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[1:] == pytest.approx(ref, rel=1e-9)
    assert min(lrs[1:]) > 0  # the last epoch is not at zero


def test_end_to_end_learns_selects_and_reproduces(bb, pil_sets, monkeypatch):
    tr, va = pil_sets
    state = {k: v.clone() for k, v in bb.model.state_dict().items()}
    calls = []
    orig = bb.model.encode_image
    monkeypatch.setattr(bb.model, "encode_image", lambda x, *a, **kw: calls.append(len(x)) or orig(x, *a, **kw))

    def run(seed, select=None, epochs=8):
        learner = PromptResiduals(bb, NAMES)
        return train_prompts_end_to_end(learner, bb, tr, va, epochs=epochs, lr=1e-3, batch_size=4, seed=seed,
                                        select=select)

    learner0 = PromptResiduals(bb, NAMES)
    with torch.no_grad():
        f_train = bb.encode_images(torch.stack([bb.preprocess(Image.open(p).convert("RGB")) for p in tr.images]))
        before = torch.nn.functional.cross_entropy(learner0(f_train), tr.labels).item()
    calls.clear()
    rec = _Recorder(peak=5)
    learner, hist = run(seed=0, select=rec)
    summary, epochs = hist[-1], hist[:-1]
    # The frozen image encoder ran on every augmented batch (and once over val).
    assert calls == [len(va)] + [4] * (4 * 8)
    assert all(torch.equal(v, state[k]) for k, v in bb.model.state_dict().items())
    assert all(not p.requires_grad for p in bb.model.parameters())
    # It learns: the training loss goes down, on the augmented batches and on the plain images.
    assert epochs[-1]["train_loss"] < epochs[1]["train_loss"]
    with torch.no_grad():
        assert torch.nn.functional.cross_entropy(learner(f_train), tr.labels).item() < before
    # Selection follows `select`, and the kept parameters are that epoch's.
    assert summary["best_epoch"] == 5 and summary["score"] == "recorded"
    f_val = torch.cat([bb.encode_images(x[None]) for x, _ in _eval_view(va, bb)])
    with torch.no_grad():
        assert torch.allclose(learner(f_val), rec.seen[5], atol=1e-4)
    # Schedule and recipe are recorded.
    assert [h["lr"] for h in epochs[1:]] == pytest.approx([dassl_cosine_lr(e, 8, 1e-3) for e in range(8)])
    assert summary["recipe"]["precision"] == "fp32" and summary["recipe"]["momentum"] == 0.9
    assert summary["recipe"]["weight_decay"] == 5e-4 and summary["recipe"]["augment"] is True
    # A seed reproduces the run; another seed draws other batches and crops.
    again, hist_again = run(seed=0, select=_Recorder(peak=5))
    assert [h["train_loss"] for h in hist_again[:-1]] == [h["train_loss"] for h in epochs]
    assert torch.equal(again.residual, learner.residual)
    _, hist_other = run(seed=1, epochs=2)
    assert [h["train_loss"] for h in hist_other[1:3]] != [h["train_loss"] for h in epochs[1:3]]
    assert tr.transform is None and va.transform is None  # the caller's datasets are untouched


def _eval_view(ds, bb):
    return [(bb.preprocess(Image.open(p).convert("RGB")), int(y)) for p, y in zip(ds.images, ds.labels)]


def test_end_to_end_checks_its_settings(bb, pil_sets, tiny_openclip):
    tr, va = pil_sets
    learner = PromptResiduals(bb, NAMES)
    with pytest.raises(ValueError, match="fp16"):
        train_prompts_end_to_end(learner, bb, tr, va, epochs=2, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        train_prompts_end_to_end(learner, bb, tr, va, epochs=2, precision="fp8")
    with pytest.raises(ValueError, match="warmup_epochs"):
        train_prompts_end_to_end(learner, bb, tr, va, epochs=1, warmup_epochs=1)
    other = _quiet_backbone(tiny_openclip)
    with pytest.raises(ValueError, match="backbone"):
        train_prompts_end_to_end(learner, other, tr, va, epochs=2)
    with pytest.raises(TypeError, match="train_dataset"):
        train_prompts_end_to_end(learner, bb, list(zip(tr.images, tr.labels.tolist())), va, epochs=2)
    assert math.isclose(dassl_cosine_lr(0, 50, 4e-4, warmup_epochs=0), 4e-4)


def test_class_names_with_underscores_are_prompted_with_spaces(bb):
    """CoOp (trainers/zsclip.py L43) and GLA (trainers/util.py L355, trainers/gla.py L82)
    replace '_' by a space before formatting a prompt (CoOp's split files keep
    'american_bulldog'): the zero-shot head equals open_clip's classifier on the
    space-separated names, and both prompt learners start from those prompts."""
    from gla.zeroshot import zero_shot_head

    raw, spaced = ["american_bulldog", "great_pyrenees", "pug"], ["american bulldog", "great pyrenees", "pug"]
    tpl = "a type of pet, a photo of a {}."
    head = zero_shot_head(bb, raw, [tpl])
    with torch.no_grad():
        want = open_clip.build_zero_shot_classifier(bb.model, tokenizer=bb.tokenizer, classnames=spaced,
                                                    templates=[lambda c: tpl.format(c)], device=bb.device)
        assert torch.allclose(head, want.float(), atol=1e-6)
        assert not torch.allclose(head, open_clip.build_zero_shot_classifier(
            bb.model, tokenizer=bb.tokenizer, classnames=raw, templates=[lambda c: tpl.format(c)],
            device=bb.device).float(), atol=1e-4)
        res = PromptResiduals(bb, raw, tpl)
        assert torch.equal(res.tokens, bb.tokenizer([tpl.format(c) for c in spaced]).to(res.tokens.device))
        assert torch.allclose(res.text_features().T, head, atol=1e-5)
        coop = CoOp(bb, raw, "a photo of a {}.")
        assert torch.equal(coop.tokens, bb.tokenizer([f"a photo of a {c}." for c in spaced]).to(coop.tokens.device))
