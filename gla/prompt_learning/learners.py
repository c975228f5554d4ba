"""The prompt learners: the paper's prompt residuals and CoOp, on a frozen text tower.

open_clip is imported where it is used (seconds to import; ``import gla`` needs none of it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.templates import format_prompts, prompt_classname

COOP_CTX_STD = 0.02  # CoOp trainers/coop.py: nn.init.normal_(ctx_vectors, std=0.02)
COOP_N_CTX = 16  # CoOp's default (configs: N_CTX 16, CLASS_TOKEN_POSITION "end")


def _text_model(model: nn.Module) -> nn.Module:
    for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
        if not hasattr(model, attr):
            raise TypeError(
                "prompt learning needs an open_clip CLIP with its own text transformer "
                f"(token_embedding, positional_embedding, ...); {type(model).__name__} has no '{attr}'")
    return model


def encode_text_embeddings(model: nn.Module, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``CLIP.encode_text`` from the token-embedding layer on.

    Parameters
    ----------
    model : open_clip ``CLIP``
        A model with its own text transformer.
    embeddings : (B, L, W) tensor
        Used in place of ``model.token_embedding(tokens)``.
    tokens : (B, L) long tensor
        The token ids; they still locate the end-of-text token for pooling.

    Returns
    -------
    (B, D) tensor
        Unnormalised text features, identical to ``model.encode_text(tokens)`` when
        ``embeddings`` is ``model.token_embedding(tokens)``.
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


def _eot_positions(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Position of the end-of-text token in each row (where the text tower pools)."""
    eos = getattr(model, "text_eos_id", None)
    if eos is not None and getattr(model, "text_pool_type", "argmax") != "argmax":
        return (tokens == eos).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)  # CLIP's end-of-text token has the largest id


def _check_classnames(classnames: Sequence[str]) -> list[str]:
    if isinstance(classnames, str) or not isinstance(classnames, Sequence) or len(classnames) < 2:
        raise ValueError("classnames: expected a list of at least two class names, "
                         f"got {classnames!r}"[:200])
    if not all(isinstance(c, str) and c.strip() for c in classnames):
        raise ValueError("classnames: expected non-empty strings")
    return list(classnames)


class PromptLearner(nn.Module):
    """Frozen CLIP + one tokenised prompt per class; subclasses say how the prompt's
    token embeddings are learned (:meth:`embeddings`)."""

    def __init__(self, backbone, prompts: Sequence[str]):
        super().__init__()
        self.clip = backbone.model
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.clip.eval()
        self.prompts = list(prompts)
        tokens = backbone.tokenizer(self.prompts).to(backbone.device)
        self.register_buffer("tokens", tokens)
        with torch.no_grad():
            self.register_buffer("base", _text_model(self.clip).token_embedding(tokens).float())
        self.register_buffer("eot", _eot_positions(self.clip, tokens))
        self.logit_scale = float(backbone.logit_scale)

    def train(self, mode: bool = True) -> "PromptLearner":
        """Train mode for the prompt parameters only: the frozen CLIP stays in eval mode
        (no dropout, and a ResNet's batch-norm statistics are not updated)."""
        super().train(mode)
        self.clip.eval()
        return self

    def embeddings(self) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self) -> torch.Tensor:
        """``(K, D)`` L2-normalised text features of the current prompts."""
        f = encode_text_embeddings(self.clip, self.embeddings(), self.tokens)
        return nn.functional.normalize(f.float(), dim=-1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits ``logit_scale * image_features @ text_features.T`` (features normalised)."""
        return self.logit_scale * image_features.float() @ self.text_features().T


class PromptResiduals(PromptLearner):
    """The paper's few-shot prompt tuning: zero-initialised residuals on the token
    embeddings of a hand-written prompt.

    Every position after the start token up to and including the end-of-text token (the
    position the text tower pools at) of each class's prompt gets its own learnable
    residual; the start token and the padding stay frozen. Official code: BeierZhu/GLA,
    ``GLA.FS.public.zip`` -> ``trainers/gla.py`` (prompt learner).

    Parameters
    ----------
    backbone : gla.backbones.Backbone
        Its CLIP is frozen (``requires_grad=False``) and shared, not copied.
    classnames : sequence of str
        The K class names as the dataset spells them; ``_`` becomes a space in the prompt
        (:func:`gla.data.prompt_classname`, as GLA's ``trainers/gla.py`` L82 does).
    template : str
        The hand-written prompt, with ``{}`` for the class name.

    Attributes
    ----------
    residual : (K, P, W) parameter
        ``P`` is the largest end-of-text position; positions past a class's own
        end-of-text token are masked out.

    Notes
    -----
    At initialisation the learner reproduces the zero-shot classifier of ``template``
    exactly (``open_clip.build_zero_shot_classifier`` with that single template).
    """

    def __init__(self, backbone, classnames: Sequence[str], template: str = "a photo of a {}."):
        classnames = _check_classnames(classnames)
        if not isinstance(template, str) or "{}" not in template:
            raise ValueError(f"template: expected a string with '{{}}' for the class name, got {template!r}")
        super().__init__(backbone, format_prompts(template, classnames))
        self.template = template
        n = int(self.eot.max())
        pos = torch.arange(1, n + 1, device=self.tokens.device)
        self.register_buffer("mask", (pos[None] <= self.eot[:, None])[..., None].float())
        self.residual = nn.Parameter(torch.zeros(len(classnames), n, self.base.shape[-1], device=self.base.device))

    @property
    def trainable_positions(self) -> torch.Tensor:
        """``(K, L)`` boolean: the token positions that carry a learnable residual."""
        out = torch.zeros(self.tokens.shape, dtype=torch.bool, device=self.tokens.device)
        out[:, 1:1 + self.residual.shape[1]] = self.mask[..., 0].bool()
        return out

    def embeddings(self) -> torch.Tensor:
        n = self.residual.shape[1]
        middle = self.base[:, 1:1 + n] + self.residual * self.mask
        return torch.cat([self.base[:, :1], middle, self.base[:, 1 + n:]], dim=1)


class CoOp(PromptLearner):
    """CoOp (Zhou et al., IJCV 2022): context vectors shared by all classes, class name last.

    The prompt of class ``c`` is ``[SOT] v_1 ... v_n <tokens of c> . [EOT]``; only the
    ``v_i`` are learned (KaiyangZhou/CoOp ``trainers/coop.py``, ``CLASS_TOKEN_POSITION
    "end"``, no class-specific context).

    Parameters
    ----------
    backbone : gla.backbones.Backbone
    classnames : sequence of str
    ctx_init : str, optional
        ``None`` (CoOp's default): ``n_ctx`` vectors drawn from ``N(0, 0.02^2)``.
        A phrase such as ``"a photo of a"``: the vectors start as that phrase's token
        embeddings and ``n_ctx`` is its token count. A template with ``{}`` is also
        accepted: the words before ``{}`` are the phrase when they are ``n_ctx`` tokens
        (or ``n_ctx`` is omitted), else the context is random; what follows ``{}`` is
        dropped, the class name is always last.
    n_ctx : int, optional
        Number of context vectors; default 16 for the random init, the phrase's token
        count otherwise (a different explicit value with a phrase is an error).
    seed : int, optional
        Seed of the random init; ``None`` draws from torch's global generator (so
        ``torch.manual_seed`` before construction reproduces it, as in CoOp).
    """

    def __init__(self, backbone, classnames: Sequence[str], ctx_init: str | None = None, *,
                 n_ctx: int | None = None, seed: int | None = None):
        classnames = _check_classnames(classnames)
        phrase, from_template, count = None, False, 0
        if ctx_init is not None:
            if not isinstance(ctx_init, str):
                raise TypeError(f"ctx_init: expected a phrase (str) or None, got {type(ctx_init).__name__}")
            from_template = "{}" in ctx_init
            phrase = (ctx_init.split("{}")[0] if from_template else ctx_init).strip() or None
        if phrase is not None:
            t = backbone.tokenizer([phrase])[0]
            count = int(_eot_positions(backbone.model, t[None])[0]) - 1
            if count < 1:
                raise ValueError(f"ctx_init: the phrase {phrase!r} has no tokens")
            if n_ctx is not None and n_ctx != count:
                if not from_template:
                    raise ValueError(f"n_ctx: the phrase {phrase!r} has {count} tokens, so n_ctx must be {count} "
                                     f"(or omitted); got {n_ctx}")
                phrase = None  # a template whose words are not n_ctx tokens: CoOp's random context
        if phrase is not None:
            n_ctx = count
            prefix = phrase
        else:
            n_ctx = COOP_N_CTX if n_ctx is None else n_ctx
            if not isinstance(n_ctx, int) or n_ctx < 1:
                raise ValueError(f"n_ctx: expected a positive integer, got {n_ctx!r}")
            prefix = " ".join(["X"] * n_ctx)
        super().__init__(backbone, [f"{prefix} {prompt_classname(c)}." for c in classnames])
        length = self.tokens.shape[1]
        if int(self.eot.min()) < n_ctx + 2:
            raise ValueError(
                f"n_ctx: {n_ctx} context tokens and the class name do not fit the text tower's context length "
                f"{length} (the longest prompt: {max(self.prompts, key=len)!r}); use a smaller n_ctx")
        if not bool((self.tokens[:, 1:1 + n_ctx] == self.tokens[:1, 1:1 + n_ctx]).all()):
            raise ValueError(f"ctx_init: the phrase {phrase!r} is not tokenised the same way before every class name")
        self.n_ctx = n_ctx
        self.ctx_init = phrase
        if phrase is not None:
            ctx = self.base[0, 1:1 + n_ctx].clone()
        else:
            g = None if seed is None else torch.Generator().manual_seed(int(seed))
            ctx = (torch.randn(n_ctx, self.base.shape[-1], generator=g) * COOP_CTX_STD).to(self.base.device)
        self.ctx = nn.Parameter(ctx)

    def embeddings(self) -> torch.Tensor:
        k = self.base.shape[0]
        return torch.cat([self.base[:, :1], self.ctx[None].expand(k, -1, -1), self.base[:, 1 + self.n_ctx:]], dim=1)
