"""Fine-tuning recipes: end-to-end (WiSE-FT's recipe), linear probe, long-tail losses.

Each recipe is one short function: optimiser, schedule, loop, checkpoint. They run on a
GPU when one is given (with autocast, worker processes and pinned memory) and on the CPU
for tests. End-to-end fine-tuning saves a resumable state every epoch, so a stopped run
continues where it stopped and ends with the weights of an uninterrupted one. End-to-end fine-tuning runs under
``torchrun`` (DDP) unchanged: when a process group is initialised the model is wrapped
in ``DistributedDataParallel`` and the data is sharded with a ``DistributedSampler``.

torchvision is imported inside the functions that build image transforms: it takes seconds
to import, and ``import gla`` and the tensor-image world do not need it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, RandomSampler, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from .cache import atomic_save, safe_load
from .loading import autocast, make_loader, resolve_num_workers, resolve_precision


class ImageClassifier(nn.Module):
    """An image encoder with a linear head on normalised features (WiSE-FT's classifier).

    ``logits = normalize(encode_image(x)) @ weight.T + bias`` where the head starts as the
    zero-shot head times the logit scale, so before training it *is* the zero-shot model.
    """

    def __init__(self, clip_model: nn.Module, zero_shot_head: torch.Tensor, logit_scale: float):
        super().__init__()
        self.image_encoder = clip_model.visual
        w = zero_shot_head.detach().float().T.clone() * float(logit_scale)  # (K, D)
        self.head = nn.Linear(w.shape[1], w.shape[0], bias=True)
        with torch.no_grad():
            self.head.weight.copy_(w)
            self.head.bias.zero_()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.image_encoder(images), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


TRAIN_TRANSFORMS = ("wise-ft", "crop-flip", "none")
LOSSES = ("ce", "la")


@dataclass(frozen=True)
class FinetuneConfig:
    """End-to-end fine-tuning recipe; defaults are WiSE-FT's ImageNet recipe.

    WiSE-FT (Wortsman et al., 2022; official code ``src/finetune.py``): AdamW, weight
    decay 0.1, cosine schedule with 500 warm-up steps, 10 epochs, lr 3e-5, batch 512,
    gradient clipping at 1, and its training transform (``clip/clip.py``,
    ``_transform(is_train=True)``: random resized crops of scale 0.9 to 1, no flip).

    Attributes
    ----------
    loss : str
        ``"ce"`` (cross-entropy; adjust post hoc with ``- log p_s``) or ``"la"`` (the
        logit-adjusted loss of Menon et al., training on ``logits + tau * log p_s``).
    head_lr_mult : float
        Scales the head's learning rate (1 in WiSE-FT).
    num_workers : int or None
        Loader worker processes; None: from the CPU count for image files, 0 for in-memory
        tensors. It does not change the result (augmentations are seeded per image and
        epoch), so it is left out of :meth:`identity`.
    precision : str or None
        Autocast precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (with loss scaling); None
        is fp32 on the CPU and fp16 on CUDA (open_clip's ``"amp"``).
    train_transform : str
        ``"wise-ft"`` (random resized crop, scale 0.9 to 1, as WiSE-FT), ``"crop-flip"``
        (random resized crop, scale 0.08 to 1, and horizontal flip, Dassl/CoOp's
        augmentation) or ``"none"`` (the evaluation preprocess); built from the backbone's
        preprocess by :func:`build_train_transform`.

    Raises
    ------
    ValueError
        A field out of its range (epochs, batch size, learning rate, warm-up steps, workers)
        or not one of its choices (loss, train transform), naming the field.
    """

    epochs: int = 10
    lr: float = 3e-5
    batch_size: int = 512
    weight_decay: float = 0.1
    warmup_steps: int = 500
    grad_clip: float = 1.0
    loss: str = "ce"
    la_tau: float = 1.0
    head_lr_mult: float = 1.0
    seed: int = 0
    num_workers: int | None = None
    precision: str | None = None
    train_transform: str = "wise-ft"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"{name}: expected a positive number, got {v}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected 0 or more, got {self.warmup_steps}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.train_transform not in TRAIN_TRANSFORMS:
            raise ValueError(f"train_transform: expected one of {TRAIN_TRANSFORMS}, got {self.train_transform!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers: expected 0 or more, got {self.num_workers}")

    def resolved(self, device: str | torch.device = "cpu") -> "FinetuneConfig":
        """This recipe with ``precision`` made explicit for ``device`` (None becomes fp32 or fp16)."""
        return dataclasses.replace(self, precision=resolve_precision(self.precision, device))

    def identity(self, device: str | torch.device = "cpu") -> dict:
        """The settings that change the fine-tuned weights, for cache keys: every field with
        the precision resolved for ``device``, without ``num_workers``."""
        d = asdict(self.resolved(device))
        d.pop("num_workers")
        return d


class _TensorRandomResizedCrop:
    """Random resized crop of a ``(C, H, W)`` tensor back to its own size (tensor images)."""

    def __init__(self, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.scale, self.ratio = scale, ratio

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import RandomResizedCrop  # torchvision: see build_train_transform
        from torchvision.transforms import functional as F

        i, j, h, w = RandomResizedCrop.get_params(img, list(self.scale), list(self.ratio))
        return F.resized_crop(img, i, j, h, w, list(img.shape[-2:]), antialias=True)

    def __repr__(self) -> str:
        return f"TensorRandomResizedCrop(scale={self.scale}, ratio={self.ratio})"


def build_train_transform(preprocess: Callable | None, kind: str = "wise-ft") -> Callable | None:
    """The fine-tuning transform matching an evaluation ``preprocess``.

    Parameters
    ----------
    preprocess : callable or None
        The backbone's evaluation transform: open_clip's ``Compose`` (resize, centre crop,
        to tensor, normalise) for image files, or a tensor transform such as the world's
        ``Normalize`` (None: tensor images used as they are).
    kind : str
        ``"wise-ft"``: random resized crop, scale (0.9, 1), no flip (WiSE-FT's
        ``clip/clip.py`` training transform, also open_clip's ``image_transform(is_train=True)``);
        ``"crop-flip"``: random resized crop, scale (0.08, 1), and horizontal flip (Dassl's
        ``random_resized_crop`` + ``random_flip``, used by CoOp); ``"none"``: ``preprocess``.

    Returns
    -------
    callable
        Same output size, mean and std as ``preprocess``. For a PIL pipeline the resize and
        centre crop are replaced by the random crop at the crop size (same interpolation);
        for tensor images the crop is resized back to the image's own size, then
        ``preprocess`` runs unchanged.
    """
    from torchvision import transforms as T  # seconds to import: only where an image transform is built

    if kind not in TRAIN_TRANSFORMS:
        raise ValueError(f"train_transform: expected one of {TRAIN_TRANSFORMS}, got {kind!r}")
    if kind == "none":
        return preprocess
    scale = (0.9, 1.0) if kind == "wise-ft" else (0.08, 1.0)
    flip = [T.RandomHorizontalFlip()] if kind == "crop-flip" else []
    steps = list(preprocess.transforms) if isinstance(preprocess, T.Compose) else \
        ([] if preprocess is None else [preprocess])
    pil_markers = (T.Resize, T.CenterCrop, T.ToTensor, T.PILToTensor)
    pil = any(isinstance(t, pil_markers) or type(t).__name__ in ("MaybeToTensor", "ResizeKeepRatio")
              for t in steps)
    if not pil:  # tensor images (the world): crop, resize back to the image's size, then preprocess
        return T.Compose([_TensorRandomResizedCrop(scale), *flip, *([preprocess] if preprocess else [])])
    crops = [i for i, t in enumerate(steps) if isinstance(t, T.CenterCrop)]
    if not crops:
        raise ValueError(f"preprocess: expected open_clip's evaluation transform (a Compose with a CenterCrop) or a "
                         f"tensor transform, got {preprocess!r}")
    k = crops[-1]
    size = steps[k].size
    interpolation = next((t.interpolation for t in steps[:k] if isinstance(t, T.Resize)), T.InterpolationMode.BICUBIC)
    return T.Compose([T.RandomResizedCrop(size, scale=scale, interpolation=interpolation), *flip, *steps[k + 1:]])


class _SeededImages(Dataset):
    """Reads item ``epoch * n + i`` as item ``i`` of ``data`` with the torch RNG seeded by
    (seed, epoch, i): random augmentations then depend on neither the worker count nor
    the process, so a resumed run sees the same crops as an uninterrupted one."""

    def __init__(self, data: Dataset, seed: int):
        self.data, self.seed, self.n = data, seed, len(data)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, tagged: int):
        epoch, i = divmod(int(tagged), self.n)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 2_147_483_647 + i)
            return self.data[i]


class _EpochSampler(Sampler):
    """Yields ``epoch * n + i`` for the indices ``i`` of ``base`` (see :class:`_SeededImages`)."""

    def __init__(self, base: Sampler, n: int):
        self.base, self.n, self.epoch = base, n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self):
        return (self.epoch * self.n + int(i) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


def resume_path(checkpoint: str | os.PathLike) -> Path:
    """The resumable training state kept next to ``checkpoint`` (``x.pt`` -> ``x.resume.pt``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.resume{checkpoint.suffix or '.pt'}")


def _rng_state(g: torch.Generator) -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "loader": g.get_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, g: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    g.set_state(state["loader"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], npst[1].numpy().astype(np.uint32), *npst[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Learning rate at ``step``: linear warm-up to ``base``, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, t)))


def _distributed() -> tuple[bool, int, int]:
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


@contextmanager
def distributed_from_env(device: str = "cpu") -> Iterator[str]:
    """Join the process group that ``torchrun`` describes in the environment.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this initialises ``torch.distributed`` (NCCL
    on CUDA, each process on ``cuda:<LOCAL_RANK>``; gloo on the CPU), yields the device of
    this process, and tears the group down afterwards. Launched plainly it yields
    ``device`` unchanged, so the same entry point serves one process and many.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield device
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend)
    try:
        yield device
    finally:
        dist.barrier()
        dist.destroy_process_group()


def finetune(model: ImageClassifier, train: Dataset, cfg: FinetuneConfig = FinetuneConfig(), *,
             device: str | torch.device = "cpu", log_source_prior: torch.Tensor | None = None,
             checkpoint: str | os.PathLike | None = None, progress: bool = True,
             on_epoch_end: Callable[[int, ImageClassifier], dict] | None = None,
             resume: bool = True) -> tuple[ImageClassifier, list[dict]]:
    """Fine-tune ``model`` end to end on ``train`` (a dataset of ``(image, label)``).

    Parameters
    ----------
    model : ImageClassifier
        Starts as the zero-shot model; trained in place.
    train : Dataset
        Yields ``(image, label)``. A :class:`gla.data.LabelledImages` whose ``transform``
        is the backbone's evaluation preprocess is read through
        ``build_train_transform(train.transform, cfg.train_transform)`` (the dataset itself
        is not changed).
    cfg : FinetuneConfig
        The recipe (optimiser, schedule, loss, precision, augmentation).
    device : str or torch.device
    log_source_prior : torch.Tensor, optional
        ``(K,)`` log training label prior, needed by ``cfg.loss == "la"``.
    checkpoint : path, optional
        The final state dict is saved there atomically with the resolved recipe and the
        history. A resumable state (model, optimiser, loss scaler, step, epoch, RNG states)
        is saved atomically after every epoch to :func:`resume_path` ``(checkpoint)``; a
        restarted call with ``resume=True`` continues from it and ends with the same
        weights as an uninterrupted run. It is removed once the checkpoint is written.
    progress : bool
        Show a progress bar (rank 0 only).
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, model) -> dict`` merged into the epoch's record, e.g. a
        validation score; never pass a test set there.
    resume : bool
        Continue from a saved state of the same recipe and data when there is one.

    Returns
    -------
    (ImageClassifier, list of dict)
        The model (in eval mode) and one record per epoch (mean training loss, learning
        rate, world size and what ``on_epoch_end`` returned).

    Notes
    -----
    Under ``torchrun`` (an initialised process group) the model is wrapped in
    ``DistributedDataParallel`` and the data sharded with a ``DistributedSampler``; only
    rank 0 writes files. Random augmentations are seeded per (seed, epoch, image), so the
    number of loader workers does not change the result.
    """
    _check_recipe(cfg, log_source_prior)
    device = torch.device(device)
    cfg = cfg.resolved(device)
    torch.manual_seed(cfg.seed)
    distributed, rank, world_size = _distributed()
    train = _with_train_transform(train, cfg)
    model = model.to(device)
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if distributed else model
    g = torch.Generator().manual_seed(cfg.seed)
    run = _Training.start(cfg, device, model, net, train, g, distributed=distributed, world_size=world_size,
                          log_source_prior=log_source_prior)
    state_file = resume_path(checkpoint) if checkpoint is not None else None
    settings = {"recipe": cfg.identity(device), "n_train": len(train), "world_size": world_size}
    history = run.resume(state_file, settings, g) if state_file is not None and resume else []
    for epoch in range(run.epoch, cfg.epochs):
        record = {"epoch": epoch + 1, "train_loss": run.train_epoch(epoch, show=progress and rank == 0),
                  "lr": run.lr, "world_size": world_size}
        if on_epoch_end is not None:
            model.eval()
            record.update(on_epoch_end(epoch + 1, model) or {})
        history.append({k: _plain(v) for k, v in record.items()})
        if state_file is not None and epoch + 1 < cfg.epochs:
            if rank == 0:
                atomic_save(run.state(settings, history, g), state_file)
            if distributed:
                dist.barrier()
    model.eval()
    if checkpoint is not None and rank == 0:
        atomic_save({"state_dict": model.state_dict(), "recipe": asdict(cfg), "history": history}, checkpoint)
        if state_file is not None:
            state_file.unlink(missing_ok=True)
    if distributed:
        dist.barrier()  # every process sees the checkpoint before going on
    return model, history


def _check_recipe(cfg: FinetuneConfig, log_source_prior: torch.Tensor | None) -> None:
    """What a recipe needs beyond its own fields (those :class:`FinetuneConfig` checks)."""
    if cfg.loss == "la" and log_source_prior is None:
        raise ValueError("log_source_prior: the logit-adjusted loss needs the training label prior (log p_s)")


def _with_train_transform(train: Dataset, cfg: FinetuneConfig) -> Dataset:
    """``train`` read through the recipe's training transform (a shallow copy; ``train`` is not changed)."""
    if cfg.train_transform == "none":
        return train
    if not hasattr(train, "transform"):
        raise ValueError(f"train: train_transform={cfg.train_transform!r} needs a dataset with a 'transform' "
                         "attribute (the backbone's preprocess), e.g. gla.data.LabelledImages; pass "
                         "FinetuneConfig(train_transform='none') to use the data as they are")
    train = copy.copy(train)
    train.transform = build_train_transform(train.transform, cfg.train_transform)
    return train


@dataclass
class _Training:
    """One fine-tuning run: what every epoch uses, and where it stands (``step``, ``epoch``, ``lr``)."""

    cfg: FinetuneConfig
    device: torch.device
    model: ImageClassifier
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    loader: Any
    sampler: _EpochSampler
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    adjust: torch.Tensor | None  # tau * log p_s for the logit-adjusted loss
    distributed: bool
    step: int = 0
    epoch: int = 0
    lr: float = 0.0

    @classmethod
    def start(cls, cfg: FinetuneConfig, device: torch.device, model: ImageClassifier, net: nn.Module,
              train: Dataset, g: torch.Generator, *, distributed: bool, world_size: int,
              log_source_prior: torch.Tensor | None) -> _Training:
        """Sampler, loader (the global batch split over the processes), AdamW with the head's
        own learning-rate multiplier, and the loss scaler of fp16."""
        base: Sampler = DistributedSampler(train, shuffle=True, seed=cfg.seed) if distributed else \
            RandomSampler(range(len(train)), generator=g)
        sampler = _EpochSampler(base, len(train))
        loader = make_loader(_SeededImages(train, cfg.seed), batch_size=max(1, cfg.batch_size // world_size),
                             sampler=sampler, device=device, num_workers=resolve_num_workers(cfg.num_workers, train))
        head_params = list(model.head.parameters())
        head_ids = {id(p) for p in head_params}
        body = [p for p in model.parameters() if id(p) not in head_ids]
        opt = torch.optim.AdamW([{"params": body, "lr_mult": 1.0},
                                 {"params": head_params, "lr_mult": cfg.head_lr_mult}],
                                lr=cfg.lr, weight_decay=cfg.weight_decay)
        scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        adjust = None if cfg.loss == "ce" else (cfg.la_tau * log_source_prior.to(device).float())
        run = cls(cfg, device, model, net, loader, sampler, opt, scaler, adjust, distributed)
        run.lr = cosine_lr(0, run.total, cfg.warmup_steps, cfg.lr)
        return run

    @property
    def total(self) -> int:
        """Optimiser steps of the whole run."""
        return self.cfg.epochs * len(self.loader)

    def resume(self, state_file: Path, settings: dict, g: torch.Generator) -> list[dict]:
        """Continue from the resumable state of the same recipe and data, if any; the history so far."""
        state = safe_load(state_file)
        if isinstance(state, dict) and state.get("settings") == settings:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.epoch = state["step"], state["epoch"]
            _set_rng_state(state["rng"], g)
            self.lr = cosine_lr(self.step, self.total, self.cfg.warmup_steps, self.cfg.lr)
            return list(state["history"])
        if state is not None:
            warnings.warn(f"{state_file}: a resumable state of another recipe or dataset; starting afresh",
                          stacklevel=3)
        return []

    def state(self, settings: dict, history: list[dict], g: torch.Generator) -> dict:
        """The resumable state after the current epoch (model, optimiser, scaler, step, RNGs)."""
        return {"settings": settings, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch, "history": history,
                "rng": _rng_state(g)}

    def train_epoch(self, epoch: int, *, show: bool) -> float:
        """One epoch; returns the mean training loss (over every process under DDP)."""
        cfg, device = self.cfg, self.device
        self.sampler.set_epoch(epoch)
        self.net.train()
        running, n_seen = torch.zeros((), device=device), 0  # summed on the device: no sync per step
        for images, labels in tqdm(self.loader, desc=f"fine-tune epoch {epoch + 1}/{cfg.epochs}", disable=not show,
                                   leave=False):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            self.lr = cosine_lr(self.step, self.total, cfg.warmup_steps, cfg.lr)
            for group in self.opt.param_groups:
                group["lr"] = self.lr * group["lr_mult"]
            with autocast(cfg.precision, device):
                logits = self.net(images)
                if self.adjust is not None:
                    logits = logits + self.adjust
                loss = nn.functional.cross_entropy(logits.float(), labels)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            running += loss.detach() * len(labels)
            n_seen += len(labels)
            self.step += 1
        if self.distributed:  # the mean over all processes, so every rank keeps the same history
            totals = torch.stack([running.double(), torch.tensor(float(n_seen), device=device, dtype=torch.float64)])
            dist.all_reduce(totals)
            running, n_seen = totals[0], int(totals[1])
        self.epoch = epoch + 1
        return float(running) / max(1, n_seen)


def _plain(value):
    """NumPy and 0-d torch scalars as Python numbers, so that checkpoints load with weights_only."""
    if isinstance(value, (np.generic, torch.Tensor)) and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, *, batch_size: int = 512, device: str | torch.device = "cpu",
            progress: bool = False, num_workers: int | None = None,
            precision: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of ``model`` on ``data`` (float32, on the CPU).

    ``num_workers`` and ``precision`` as in :func:`gla.loading.make_loader` and
    :func:`gla.loading.autocast` (None: automatic; fp32 on the CPU, fp16 on CUDA).
    """
    device = torch.device(device)
    prec = resolve_precision(precision, device)
    model.eval().to(device)
    outs, ys = [], []
    loader = make_loader(data, batch_size=batch_size, device=device, num_workers=num_workers)
    for images, labels in tqdm(loader, disable=not progress, desc="predict"):
        with autocast(prec, device):
            outs.append(model(images.to(device, non_blocking=True)).float().cpu())
        ys.append(labels)
    return torch.cat(outs), torch.cat(ys)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, init_weight: torch.Tensor, *,
                 val_features: torch.Tensor | None = None, val_labels: torch.Tensor | None = None,
                 weight_decays: tuple[float, ...] = (0.0, 1e-3, 1e-2), epochs: int = 150,
                 lr: float = 2e-3, batch_size: int | None = None, seed: int = 0) -> tuple[nn.Linear, dict]:
    """Logistic regression on frozen features, initialised from the zero-shot head.

    ``init_weight`` is ``(K, D)`` (the zero-shot head times the logit scale). Weight decay
    is chosen on the validation split when one is given (never on the test split);
    otherwise the first value is used. ``batch_size=None`` trains full-batch. Returns the
    linear layer and a record of the choice.
    """
    x, y = train_features.float(), train_labels.long()
    best, best_acc, best_wd = None, -1.0, weight_decays[0]
    candidates = weight_decays if val_features is not None else weight_decays[:1]
    for wd in candidates:
        torch.manual_seed(seed)
        layer = nn.Linear(x.shape[1], init_weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(init_weight.float())
            layer.bias.zero_()
        opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=wd)
        g = torch.Generator().manual_seed(seed)
        bs = batch_size or len(y)
        steps = epochs * max(1, math.ceil(len(y) / bs))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), bs):
                idx = perm[i:i + bs]
                loss = nn.functional.cross_entropy(layer(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        if val_features is None:
            best = layer
            break
        with torch.no_grad():
            acc = float((layer(val_features.float()).argmax(1) == val_labels).float().mean())
        if acc > best_acc:
            best, best_acc, best_wd = copy.deepcopy(layer), acc, wd
    return best, {"weight_decay": best_wd, "val_accuracy": best_acc if val_features is not None else None}
