"""Fine-tuning recipes: end-to-end (WiSE-FT's recipe), linear probe, long-tail losses.

Each recipe is one short function: optimiser, schedule, loop, checkpoint. They run on a
GPU when one is given and on the CPU for tests. End-to-end fine-tuning runs under
``torchrun`` (DDP) unchanged: when a process group is initialised the model is wrapped
in ``DistributedDataParallel`` and the data is sharded with a ``DistributedSampler``.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .cache import atomic_save


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


@dataclass(frozen=True)
class FinetuneConfig:
    """End-to-end fine-tuning recipe; defaults are WiSE-FT's ImageNet recipe (GLA_NOTES §3).

    ``loss`` is ``"ce"`` (cross-entropy; adjust post hoc with ``- log p_s``) or ``"la"``
    (the logit-adjusted loss of Menon et al., training on ``logits + tau * log p_s``).
    ``head_lr_mult`` scales the head's learning rate (1 in WiSE-FT).
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
    num_workers: int = 0


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Learning rate at ``step``: linear warm-up to ``base``, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, t)))


def _distributed() -> tuple[bool, int, int]:
    import torch.distributed as dist

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
    import torch.distributed as dist

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
             on_epoch_end: Callable[[int, ImageClassifier], dict] | None = None) -> tuple[ImageClassifier, list[dict]]:
    """Fine-tune ``model`` end to end on ``train`` (a dataset of ``(image, label)``).

    Returns the model and a history of per-epoch records (mean training loss, learning
    rate, and whatever ``on_epoch_end(epoch, model)`` returns, e.g. a validation score;
    never pass a test set there). With ``checkpoint`` the final state dict is saved
    atomically together with the recipe.
    """
    from tqdm import tqdm

    if cfg.loss not in ("ce", "la"):
        raise ValueError(f"loss: expected 'ce' or 'la', got {cfg.loss!r}")
    if cfg.loss == "la" and log_source_prior is None:
        raise ValueError("log_source_prior: the logit-adjusted loss needs the training label prior (log p_s)")
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    distributed, rank, world_size = _distributed()
    model = model.to(device)
    net: nn.Module = model
    sampler = None
    if distributed:
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data.distributed import DistributedSampler

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        sampler = DistributedSampler(train, shuffle=True, seed=cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train, batch_size=max(1, cfg.batch_size // world_size), shuffle=sampler is None,
                        sampler=sampler, generator=g, num_workers=cfg.num_workers, drop_last=False,
                        pin_memory=device.type == "cuda")
    head_params = list(model.head.parameters())
    head_ids = {id(p) for p in head_params}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    opt = torch.optim.AdamW([{"params": body, "lr_mult": 1.0},
                             {"params": head_params, "lr_mult": cfg.head_lr_mult}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(loader)
    adjust = None if cfg.loss == "ce" else (cfg.la_tau * log_source_prior.to(device).float())
    history, step = [], 0
    for epoch in range(cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        running, n_seen = 0.0, 0
        for images, labels in tqdm(loader, desc=f"fine-tune epoch {epoch + 1}/{cfg.epochs}",
                                   disable=not progress or rank != 0, leave=False):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            lr = cosine_lr(step, total, cfg.warmup_steps, cfg.lr)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_mult"]
            logits = net(images)
            if adjust is not None:
                logits = logits + adjust
            loss = nn.functional.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            running += float(loss.detach()) * len(labels)
            n_seen += len(labels)
            step += 1
        record = {"epoch": epoch + 1, "train_loss": running / max(1, n_seen), "lr": lr, "world_size": world_size}
        if on_epoch_end is not None:
            model.eval()
            record.update(on_epoch_end(epoch + 1, model) or {})
        history.append(record)
    model.eval()
    if checkpoint is not None and rank == 0:
        atomic_save({"state_dict": model.state_dict(), "recipe": asdict(cfg), "history": history}, checkpoint)
    if distributed:
        import torch.distributed as dist

        dist.barrier()  # every process sees the checkpoint before going on
    return model, history


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, *, batch_size: int = 512, device: str | torch.device = "cpu",
            progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of ``model`` on ``data`` (float32, on the CPU)."""
    from tqdm import tqdm

    model.eval().to(device)
    outs, ys = [], []
    for images, labels in tqdm(DataLoader(data, batch_size=batch_size), disable=not progress, desc="predict"):
        outs.append(model(images.to(device)).float().cpu())
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
