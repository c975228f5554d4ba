"""Few-shot learning with frozen encoders: the paper's prompt tuning, and CoOp.

Both learn only in the text tower's input space, so image features can be computed once
(and cached) and training touches no image. The paper's recipe (GLA_NOTES section 3):
learnable residuals, initialised at zero, added to the token embeddings of the
hand-written prompt's context and class-name tokens; cross-entropy; model selection on
the validation split. CoOp (Zhou et al., 2022) learns shared context vectors in place of
the prompt's words, initialised from "a photo of a".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _text_model(model: nn.Module) -> nn.Module:
    for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
        if not hasattr(model, attr):
            raise TypeError(
                "prompt learning needs an open_clip CLIP with its own text transformer "
                f"(token_embedding, positional_embedding, ...); {type(model).__name__} has no '{attr}'")
    return model


def encode_text_embeddings(model: nn.Module, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``CLIP.encode_text`` from the token-embedding layer on.

    ``embeddings`` is ``(B, L, W)`` in place of ``token_embedding(tokens)``; ``tokens``
    still locates the end-of-text token for pooling. Returns unnormalised features.
    """
    from open_clip.transformer import text_global_pool

    m = _text_model(model)
    cast = m.transformer.get_cast_dtype()
    x = embeddings.to(cast) + m.positional_embedding.to(cast)
    x = m.transformer(x, attn_mask=m.attn_mask)
    x = m.ln_final(x)
    x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
    if m.text_projection is not None:
        x = m.text_projection(x) if isinstance(m.text_projection, nn.Linear) else x @ m.text_projection
    return x


class _PromptBase(nn.Module):
    def __init__(self, backbone, classnames: Sequence[str], template: str):
        super().__init__()
        if "{}" not in template:
            raise ValueError(f"template: expected a '{{}}' for the class name, got {template!r}")
        self.clip = backbone.model
        for p in self.clip.parameters():
            p.requires_grad_(False)
        tokens = backbone.tokenizer([template.format(c) for c in classnames]).to(backbone.device)
        self.register_buffer("tokens", tokens)
        with torch.no_grad():
            self.register_buffer("base", _text_model(self.clip).token_embedding(tokens).float())
        self.logit_scale = float(backbone.logit_scale)

    def embeddings(self) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self) -> torch.Tensor:
        f = encode_text_embeddings(self.clip, self.embeddings(), self.tokens)
        return nn.functional.normalize(f.float(), dim=-1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits ``logit_scale * image_features @ text_features.T`` (features normalised)."""
        return self.logit_scale * image_features.float() @ self.text_features().T


class PromptResiduals(_PromptBase):
    """The paper's few-shot prompt tuning: zero-initialised residuals on the token
    embeddings of the hand-written prompt (every token but start, end and padding).

    Before training it reproduces the zero-shot head of that single prompt exactly.
    """

    def __init__(self, backbone, classnames: Sequence[str], template: str = "a photo of a {}."):
        super().__init__(backbone, classnames, template)
        eot = self.tokens.argmax(dim=-1, keepdim=True)
        pos = torch.arange(self.tokens.shape[1], device=self.tokens.device)[None]
        mask = (pos > 0) & (pos < eot)  # between start and end of text
        self.register_buffer("mask", mask[..., None].float())
        self.residual = nn.Parameter(torch.zeros_like(self.base))

    def embeddings(self) -> torch.Tensor:
        return self.base + self.residual * self.mask


class CoOp(_PromptBase):
    """CoOp: ``n_ctx`` context vectors shared by all classes replace the first words of the
    prompt (initialised from their embeddings, "a photo of a" by default)."""

    def __init__(self, backbone, classnames: Sequence[str], template: str = "a photo of a {}.", n_ctx: int = 4):
        super().__init__(backbone, classnames, template)
        if n_ctx < 1 or n_ctx + 2 > self.tokens.shape[1]:
            raise ValueError(f"n_ctx: expected 1 to {self.tokens.shape[1] - 2}, got {n_ctx}")
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(self.base[0, 1:1 + n_ctx].clone())

    def embeddings(self) -> torch.Tensor:
        k = self.base.shape[0]
        return torch.cat([self.base[:, :1], self.ctx[None].expand(k, -1, -1), self.base[:, 1 + self.n_ctx:]], dim=1)


def train_prompts(learner: _PromptBase, train_features: torch.Tensor, train_labels: torch.Tensor,
                  val_features: torch.Tensor, val_labels: torch.Tensor, *, epochs: int = 100, lr: float = 2e-3,
                  batch_size: int | None = None, weight_decay: float = 0.0, seed: int = 0,
                  progress: bool = False) -> tuple[_PromptBase, list[dict]]:
    """Train a prompt learner on frozen image features; keep the epoch best on val.

    ``batch_size=None`` trains full-batch (one step per epoch): with frozen, cached image
    features every step costs one pass of the text tower over the K prompts whatever the
    batch, so full batches are the cheap choice for few-shot sets. Selection uses the
    validation split only. Returns the learner (with the best
    parameters loaded) and a per-epoch history with training loss and val accuracy.
    """
    from tqdm import trange

    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    g = torch.Generator().manual_seed(seed)
    dev = learner.tokens.device
    x, y = train_features.to(dev).float(), train_labels.to(dev)
    xv, yv = val_features.to(dev).float(), val_labels.to(dev)
    history: list[dict] = []
    best: dict = {"acc": -1.0, "epoch": 0, "state": None}

    def record(epoch: int, text_features: torch.Tensor, loss: float) -> None:
        # Validation accuracy of the parameters that produced ``text_features``.
        acc = float(((xv @ text_features.T).argmax(1) == yv).float().mean())
        history.append({"epoch": epoch, "train_loss": loss, "val_accuracy": acc})
        if acc > best["acc"]:
            best.update(acc=acc, epoch=epoch,
                        state={k: v.detach().clone() for k, v in learner.named_parameters() if v.requires_grad})

    bs = batch_size or len(y)
    last_loss = float("nan")
    for epoch in trange(1, epochs + 1, disable=not progress, desc="prompt tuning"):
        perm = torch.randperm(len(y), generator=g).to(dev)
        total = 0.0
        for i in range(0, len(y), bs):
            idx = perm[i:i + bs]
            text = learner.text_features()
            if i == 0:  # the parameters after epoch - 1: score them on val with the same forward pass
                record(epoch - 1, text.detach(), last_loss)
            loss = nn.functional.cross_entropy(learner.logit_scale * x[idx] @ text.T, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        last_loss = total / len(y)
    with torch.no_grad():
        record(epochs, learner.text_features(), last_loss)
    best_acc, best_epoch, best_state = best["acc"], best["epoch"], best["state"]
    with torch.no_grad():
        for k, v in learner.named_parameters():
            if k in best_state:
                v.copy_(best_state[k])
    history.append({"best_epoch": best_epoch, "best_val_accuracy": best_acc})
    return learner, history
