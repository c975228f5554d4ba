"""The two trainers of the prompt learners: :func:`train_prompts` on cached features (the
fast recipe) and :func:`train_prompts_end_to_end` on augmented images (the paper's recipe).

torchvision is imported where an image transform is built (seconds to import).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import trange

from .._validation import check_labels, check_logits
from .learners import PromptLearner
from .selection import Select, Selection

# Dassl's optimiser defaults (KaiyangZhou/Dassl.pytorch dassl/config/defaults.py, _C.OPTIM):
# SGD momentum 0.9, weight decay 5e-4, no dampening, no Nesterov; a constant warm-up runs
# at WARMUP_CONS_LR = 1e-5. CoOp's rn50_ep50.yaml sets sgd, cosine, WARMUP_EPOCH 1, constant.
DASSL_MOMENTUM = 0.9
DASSL_WEIGHT_DECAY = 5e-4
DASSL_WARMUP_CONS_LR = 1e-5


def _check_learner(learner) -> None:
    if not isinstance(learner, PromptLearner):
        raise TypeError(f"learner: expected a PromptResiduals or CoOp, got {type(learner).__name__}")


def _check_epochs(epochs: int) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")


def train_prompts(learner: PromptLearner, train_features: torch.Tensor, train_labels: torch.Tensor,
                  val_features: torch.Tensor, val_labels: torch.Tensor, *, epochs: int = 100, lr: float = 2e-3,
                  batch_size: int | None = None, weight_decay: float = 0.0, seed: int = 0,
                  select: Select | None = None, progress: bool = False) -> tuple[PromptLearner, list[dict]]:
    """The fast recipe: train a prompt learner on cached image features; keep the best epoch.

    Image features are computed once with the evaluation preprocess (no augmentation) and
    AdamW with a cosine schedule trains on them; ``batch_size=None`` trains full-batch
    (one step per epoch): with frozen, cached image features every step costs one pass of
    the text tower over the K prompts whatever the batch, so full batches are the cheap
    choice for few-shot sets. :func:`train_prompts_end_to_end` is the paper's recipe.

    Parameters
    ----------
    learner : PromptResiduals or CoOp
    train_features, val_features : (N, D) tensors
        L2-normalised image features (:func:`gla.features.cached_features`).
    train_labels, val_labels : (N,) tensors
    epochs : int
        Training epochs; the candidates for selection are epochs 1 to ``epochs``.
    lr, weight_decay : float
        AdamW settings.
    batch_size : int, optional
    seed : int
        Seeds the shuffling.
    select : callable, optional
        Maps the learner's val logits ``(N_val, K)`` to a score, higher is better; the
        epoch with the best score is kept (the first on ties). ``None``: val accuracy.
        The few-shot protocol passes :func:`gla_val_selector` (GLA accuracy on val).
    progress : bool

    Returns
    -------
    learner
        With the selected epoch's parameters loaded.
    history : list of dict
        One record per epoch, epoch 0 being the untrained learner (recorded, never
        selected): ``epoch``, ``train_loss``, ``lr``, ``val_accuracy``, ``val_score``,
        ``score`` (the score's name), ``candidate``, plus what the selector reports (e.g.
        ``t_ft``). The last item summarises: ``best_epoch``, ``best_val_score``,
        ``best_val_accuracy``, ``score``.
    """
    _check_learner(learner)
    _check_epochs(epochs)
    dev = learner.tokens.device
    k = learner.tokens.shape[0]
    x = check_logits(train_features, "train_features").to(dev).float()
    xv = check_logits(val_features, "val_features").to(dev).float()
    y = check_labels(train_labels, x.shape[0], k, "train_labels").to(dev)
    yv = check_labels(val_labels, xv.shape[0], k, "val_labels").to(dev)
    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    sel = Selection(learner, xv, yv, select)
    history = [sel.evaluate({"epoch": 0, "train_loss": None, "lr": None}, candidate=False)]
    bs = batch_size or len(y)
    for epoch in trange(1, epochs + 1, disable=not progress, desc="prompt tuning"):
        lr_now = opt.param_groups[0]["lr"]
        perm = torch.randperm(len(y), generator=g).to(dev)
        total = 0.0
        for i in range(0, len(y), bs):
            idx = perm[i:i + bs]
            loss = nn.functional.cross_entropy(learner(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        history.append(sel.evaluate({"epoch": epoch, "train_loss": total / len(y), "lr": lr_now}))
    history.append(sel.restore())
    return learner, history


def dassl_cosine_lr(epoch: int, epochs: int, lr: float, warmup_epochs: int = 1,
                    warmup_lr: float = DASSL_WARMUP_CONS_LR) -> float:
    """Learning rate of 0-based ``epoch`` under Dassl's cosine schedule with constant warm-up.

    The first ``warmup_epochs`` epochs run at ``warmup_lr``; then the cosine schedule
    restarts its count (Dassl's ``WARMUP_RECOUNT=True``):
    ``lr * (1 + cos(pi * (epoch - warmup_epochs) / epochs)) / 2``, with ``epochs`` the
    total (``MAX_EPOCH``). KaiyangZhou/Dassl.pytorch ``dassl/optim/lr_scheduler.py``
    (``ConstantWarmupScheduler`` over ``CosineAnnealingLR(T_max=MAX_EPOCH)``).
    """
    if epoch < warmup_epochs:
        return warmup_lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / epochs))


def _unwrap(preprocess) -> list:
    return list(getattr(preprocess, "transforms", [preprocess]))


class TrainAugmentation:
    """Random resized crop + horizontal flip, then the backbone's own normalisation.

    Works on PIL images (converted to RGB and to a tensor) and on ``(3, H, W)`` tensors
    in [0, 1] (the miniature world's images). Randomness comes from torch's generator.
    """

    def __init__(self, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], *,
                 scale: tuple[float, float] = (0.08, 1.0), flip: bool = True, interpolation=None):
        from torchvision import transforms as T

        self.size, self.mean, self.std, self.scale = tuple(size), tuple(mean), tuple(std), tuple(scale)
        interpolation = interpolation or T.InterpolationMode.BICUBIC
        self.crop = T.RandomResizedCrop(self.size, scale=self.scale, interpolation=interpolation, antialias=True)
        self.flip = T.RandomHorizontalFlip() if flip else None
        self.normalize = T.Normalize(self.mean, self.std)

    def __call__(self, img):
        from torchvision.transforms import functional as F

        if not isinstance(img, torch.Tensor):
            img = img.convert("RGB")
        img = self.crop(img)
        if self.flip is not None:
            img = self.flip(img)
        if not isinstance(img, torch.Tensor):
            img = F.to_tensor(img)
        return self.normalize(img.float())

    def __repr__(self) -> str:
        return (f"TrainAugmentation(size={self.size}, scale={self.scale}, flip={self.flip is not None}, "
                f"mean={self.mean}, std={self.std})")


def training_augmentation(preprocess, image_size: int | Sequence[int] | None = None, *,
                          scale: tuple[float, float] = (0.08, 1.0)) -> TrainAugmentation:
    """The training augmentation of the paper's few-shot recipe, built from a backbone's
    evaluation ``preprocess``: same output size, same mean and std.

    Random resized crop (scale 0.08 to 1, Dassl's ``RRCROP_SCALE`` default; bicubic, as
    CoOp's configs set) and a horizontal flip with probability 1/2 (CoOp
    ``configs/trainers/CoOp/rn50_ep50.yaml``: ``random_resized_crop, random_flip,
    normalize``).

    Parameters
    ----------
    preprocess : callable
        open_clip's evaluation transform (a ``Compose`` with ``CenterCrop`` and
        ``Normalize``) or a bare ``Normalize`` (the world's tensors).
    image_size : int or (int, int), optional
        Output size when ``preprocess`` has no ``CenterCrop``/``Resize`` to read it from.
    scale : (float, float)
        Range of the crop's area fraction.
    """
    from torchvision import transforms as T

    steps = _unwrap(preprocess)
    norms = [t for t in steps if isinstance(t, T.Normalize)]
    if not norms:
        raise ValueError(f"preprocess: expected a torchvision Normalize in it (for mean and std), got {preprocess!r}")
    size = None
    interpolation = None
    for t in steps:
        if isinstance(t, T.CenterCrop):
            size = t.size
        elif isinstance(t, T.Resize):
            interpolation = t.interpolation
            if size is None and not isinstance(t.size, int) and t.size is not None and len(t.size) == 2:
                size = t.size
    if size is None:
        if image_size is None:
            raise ValueError("image_size: the preprocess has no CenterCrop or Resize to read the size from; "
                             "pass image_size")
        size = image_size
    size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) == 1:
        size = (size[0], size[0])
    return TrainAugmentation(size, norms[-1].mean, norms[-1].std, scale=scale, interpolation=interpolation)


def _with_transform(dataset, transform, name: str):
    if not hasattr(dataset, "transform"):
        raise TypeError(f"{name}: expected a dataset with a 'transform' attribute (gla.data.LabelledImages), "
                        f"got {type(dataset).__name__}")
    out = copy.copy(dataset)
    out.transform = transform
    return out


def train_prompts_end_to_end(learner: PromptLearner, backbone, train_dataset, val_dataset, *, epochs: int = 50,
                             lr: float = 4e-4, batch_size: int = 512, warmup_epochs: int = 1,
                             warmup_lr: float = DASSL_WARMUP_CONS_LR, momentum: float = DASSL_MOMENTUM,
                             weight_decay: float = DASSL_WEIGHT_DECAY, augment: bool = True,
                             precision: str | None = None, select: Select | None = None, seed: int = 0,
                             num_workers: int = 0, progress: bool = False) -> tuple[PromptLearner, list[dict]]:
    """The paper's few-shot recipe: prompt tuning through the frozen image encoder.

    Every training batch is augmented (random resized crop + flip, :func:`training_augmentation`)
    and goes through the frozen image encoder; only the learner's prompt parameters are
    trained, with cross-entropy. Defaults follow the official ImageNet config
    (BeierZhu/GLA ``GLA.FS.public.zip``, ``rn50_ep50_shot*.yaml``:
    SGD lr 4e-4, batch 512, 50 epochs, cosine schedule with one constant-lr warm-up epoch,
    fp16) and
    Dassl's optimiser defaults (KaiyangZhou/Dassl.pytorch ``dassl/config/defaults.py``:
    momentum 0.9, weight decay 5e-4, warm-up lr 1e-5). The lr is set once per epoch
    (:func:`dassl_cosine_lr`). After each epoch the learner is scored on val and the best
    epoch is kept. Val images use the backbone's evaluation preprocess, so their features
    are computed once.

    Parameters
    ----------
    learner : PromptResiduals or CoOp
        Built on ``backbone``.
    backbone : gla.backbones.Backbone
        Supplies the image encoder (frozen, eval mode), the preprocess and the device.
    train_dataset, val_dataset : gla.data.LabelledImages
        Datasets of ``(image, label)`` with a ``transform`` attribute (PIL file images or
        world tensors); the transforms are replaced on copies, the datasets are not changed.
    epochs : int
        Total epochs, warm-up included (Dassl's ``MAX_EPOCH``); candidates for selection
        are epochs 1 to ``epochs``.
    lr, momentum, weight_decay : float
        SGD settings (no dampening, no Nesterov).
    batch_size : int
        512, as GLA's ImageNet config (with lr 4e-4); CoOp's configs use 32 (with lr
        2e-3). The last incomplete batch is dropped when the set holds at least one
        batch (Dassl's loader); a set smaller than a batch trains as one batch.
    warmup_epochs, warmup_lr : int, float
        Constant-lr warm-up.
    augment : bool
        ``False`` trains on the evaluation preprocess (no augmentation).
    precision : {"fp16", "bf16", "fp32"}, optional
        ``fp16``: autocast to float16 with a gradient scaler (CUDA only); ``bf16``:
        autocast to bfloat16; ``fp32``: none. Default ``fp16`` on CUDA, ``fp32`` on CPU.
        The learned parameters stay float32.
    select : callable, optional
        Maps the learner's val logits ``(N_val, K)``, in ``val_dataset`` order, to a score
        (higher is better), e.g. :func:`gla_val_selector`; ``None``: val accuracy.
    seed : int
        Seeds shuffling and augmentation (torch's global generator is left as it was).
    num_workers : int
        DataLoader workers.
    progress : bool

    Returns
    -------
    (learner, history)
        As :func:`train_prompts`: the learner with the selected epoch's parameters loaded,
        and one record per epoch; the summary also holds ``recipe`` (the settings).
    """
    _check_learner(learner)
    _check_epochs(epochs)
    if learner.clip is not backbone.model:
        raise ValueError("backbone: expected the backbone the learner was built on (learner.clip is backbone.model)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not isinstance(warmup_epochs, int) or not 0 <= warmup_epochs < epochs:
        raise ValueError(f"warmup_epochs: expected an integer in [0, epochs), got {warmup_epochs!r}")
    dev = learner.tokens.device
    precision = precision or ("fp16" if dev.type == "cuda" else "fp32")
    if precision not in ("fp16", "bf16", "fp32"):
        raise ValueError(f"precision: expected 'fp16', 'bf16' or 'fp32', got {precision!r}")
    if precision == "fp16" and dev.type != "cuda":
        raise ValueError(f"precision: 'fp16' needs a CUDA device (the learner is on {dev}); use 'fp32' or 'bf16'")
    if len(train_dataset) == 0 or len(val_dataset) == 0:
        raise ValueError("train_dataset, val_dataset: expected non-empty datasets")
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

    def autocast():
        return torch.autocast(device_type=dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)

    visual = backbone.model.visual
    aug = training_augmentation(backbone.preprocess, getattr(visual, "image_size", None)) if augment else None
    train_ds = _with_transform(train_dataset, aug or backbone.preprocess, "train_dataset")
    val_ds = _with_transform(val_dataset, backbone.preprocess, "val_dataset")
    learner.train()  # prompt parameters only; the CLIP stays in eval mode

    @torch.no_grad()
    def image_features(images: torch.Tensor) -> torch.Tensor:
        with autocast():
            f = backbone.model.encode_image(images.to(dev, non_blocking=True))
        return nn.functional.normalize(f.float(), dim=-1)

    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, dampening=0, nesterov=False)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    history: list[dict] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        val_batches = [(image_features(x), y) for x, y in DataLoader(val_ds, batch_size=max(batch_size, 64),
                                                                        num_workers=num_workers)]
        xv = torch.cat([f for f, _ in val_batches])
        yv = torch.cat([y for _, y in val_batches]).to(dev)
        k = learner.tokens.shape[0]
        check_labels(yv, xv.shape[0], k, "val_dataset labels")
        sel = Selection(learner, xv, yv, select)
        history.append(sel.evaluate({"epoch": 0, "train_loss": None, "lr": None}, candidate=False))
        loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=g, num_workers=num_workers,
                            drop_last=len(train_ds) >= batch_size, pin_memory=dev.type == "cuda")
        for epoch in trange(epochs, disable=not progress, desc="prompt tuning (end to end)"):
            lr_now = dassl_cosine_lr(epoch, epochs, lr, warmup_epochs, warmup_lr)
            for group in opt.param_groups:
                group["lr"] = lr_now
            total, seen = 0.0, 0
            for images, labels in loader:
                labels = labels.to(dev, non_blocking=True)
                if int(labels.max()) >= k or int(labels.min()) < 0:
                    raise ValueError(f"train_dataset: expected labels in [0, {k - 1}]")
                f = image_features(images)
                with autocast():
                    loss = nn.functional.cross_entropy(learner(f).float(), labels)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += float(loss.detach()) * len(labels)
                seen += len(labels)
            history.append(sel.evaluate({"epoch": epoch + 1, "train_loss": total / max(1, seen), "lr": lr_now}))
    learner.eval()
    summary = sel.restore()
    summary["recipe"] = {"optimizer": "sgd", "epochs": epochs, "lr": lr, "batch_size": batch_size,
                         "warmup_epochs": warmup_epochs, "warmup_lr": warmup_lr, "momentum": momentum,
                         "weight_decay": weight_decay, "augment": augment, "precision": precision, "seed": seed,
                         "augmentation": repr(aug) if aug is not None else None}
    history.append(summary)
    return learner, history
