"""Few-shot learning with frozen encoders: the paper's prompt tuning, and CoOp.

Both learners change only the input of the text tower; both encoders stay frozen.

:class:`PromptResiduals` is the paper's few-shot model (its few-shot experiments; official
code: BeierZhu/GLA, ``GLA.FS.public.zip`` -> ``trainers/gla.py``): a learnable residual,
initialised at zero, is added to the token embedding of every position of the
hand-written prompt after the start token, the end-of-text token included; padding stays
frozen. Before training it is exactly the zero-shot classifier of that prompt.

:class:`CoOp` is the CoOp baseline (Zhou et al., IJCV 2022; KaiyangZhou/CoOp
``trainers/coop.py``) in its default setting: 16 context vectors shared by all classes,
drawn from a normal distribution with standard deviation 0.02, the class name last
(``X X ... X <class name>.``). It can also start from a phrase (``ctx_init="a photo of
a"``, with as many context vectors as the phrase has tokens).

Two trainers, one selection rule (the epoch kept is the one with the best validation
score, by default accuracy; the few-shot protocol passes :func:`gla_val_selector`, the
*GLA* accuracy on val, as the official code does):

- :func:`train_prompts`, the fast recipe: image features are computed once (and cached,
  :func:`gla.features.cached_features`) with the evaluation preprocess, and AdamW trains
  full-batch on them. No augmentation, so no image is read during training; this is what
  the miniature world's book uses.
- :func:`train_prompts_end_to_end`, the paper's recipe (the official ImageNet configs
  ``rn50_ep50_shot*.yaml`` on top of Dassl's optimiser defaults): SGD with momentum 0.9
  and weight decay 5e-4, lr 4e-4, batch 512, 50 epochs, a cosine schedule after one
  constant-lr warm-up epoch, random resized crops and horizontal flips, fp16 autocast on
  CUDA; the frozen image encoder runs on every augmented batch, so it costs a forward
  pass of the image tower per image and epoch.

open_clip and torchvision are imported inside the functions that use them (seconds to
import; ``import gla`` needs neither).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import trange

from ._validation import ArrayLike, check_labels, check_log_prior, check_logits
from .adjust import gla_logits
from .data.templates import format_prompts, prompt_classname
from .temperature import fit_temperature

# Dassl's optimiser defaults (KaiyangZhou/Dassl.pytorch dassl/config/defaults.py, _C.OPTIM):
# SGD momentum 0.9, weight decay 5e-4, no dampening, no Nesterov; a constant warm-up runs
# at WARMUP_CONS_LR = 1e-5. CoOp's rn50_ep50.yaml sets sgd, cosine, WARMUP_EPOCH 1, constant.
DASSL_MOMENTUM = 0.9
DASSL_WEIGHT_DECAY = 5e-4
DASSL_WARMUP_CONS_LR = 1e-5
COOP_CTX_STD = 0.02  # CoOp trainers/coop.py: nn.init.normal_(ctx_vectors, std=0.02)
COOP_N_CTX = 16  # CoOp's default (configs: N_CTX 16, CLASS_TOKEN_POSITION "end")

Select = Callable[[torch.Tensor], float]


# --------------------------------------------------------------------------- text tower

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


class _PromptBase(nn.Module):
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

    def train(self, mode: bool = True) -> "_PromptBase":
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


class PromptResiduals(_PromptBase):
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


class CoOp(_PromptBase):
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


# --------------------------------------------------------------------------- selection

class TemperatureResult(NamedTuple):
    """A fitted temperature and whether the search met its criterion."""

    temperature: float
    converged: bool


def _ft_temperature(logits: torch.Tensor, labels: torch.Tensor, method: str = "official") -> TemperatureResult:
    """``T_ft`` of the learner's val logits: confidence matches accuracy.

    ``method="official"``: the official search (regula falsi from [0.1, 10], stop within
    1.0 percentage point; ``GLA.FS.public.zip`` -> ``trainers/util.py`` ``search_T``,
    ``trainers/gla.py`` thres 1.0); ``"exact"``: a converged search. When accuracy is 1
    or at chance no temperature matches; ``T = 1`` is returned with ``converged=False``.
    """
    fit = fit_temperature(logits, labels, method=method, thres=1.0, fallback=1.0)
    return TemperatureResult(float(fit.temperature), bool(fit.converged))


class GLAValSelector:
    """Model-selection score: accuracy on val of ``f_pt / T_ft + f_zs / T_zs - log q``.

    Built by :func:`gla_val_selector`; pass it as ``select=`` to :func:`train_prompts` or
    :func:`train_prompts_end_to_end`. Calling it on the learner's val logits ``(N_val, K)``
    returns the GLA accuracy (a fraction); ``last_details`` holds the ``T_ft`` used, which
    the trainers copy into the epoch's history record.
    """

    name = "gla_val_accuracy"

    def __init__(self, zs_val_logits: torch.Tensor, val_labels: torch.Tensor, log_prior: torch.Tensor,
                 t_zs: float, search_t_ft: bool, t_ft: float, temperature_method: str = "official"):
        self.zs_val_logits, self.val_labels, self.log_prior = zs_val_logits, val_labels, log_prior
        self.t_zs, self.search_t_ft, self.t_ft = t_zs, search_t_ft, t_ft
        self.temperature_method = temperature_method
        self.last_details: dict[str, Any] = {}

    def __call__(self, pt_val_logits: torch.Tensor) -> float:
        pt = check_logits(pt_val_logits, "pt_val_logits").detach().to(torch.float64).cpu()
        if pt.shape != self.zs_val_logits.shape:
            raise ValueError(f"pt_val_logits: expected the shape of the zero-shot val logits "
                             f"{tuple(self.zs_val_logits.shape)}, got {tuple(pt.shape)}")
        if self.search_t_ft:
            t_ft, converged = _ft_temperature(pt, self.val_labels, self.temperature_method)
        else:
            t_ft, converged = self.t_ft, None
        self.last_details = {"t_ft": float(t_ft), "t_ft_converged": converged}
        z = gla_logits(self.zs_val_logits, pt, self.log_prior, zs_temperature=self.t_zs, ft_temperature=t_ft)
        return float((z.argmax(dim=1) == self.val_labels).double().mean())


def gla_val_selector(zs_val_logits: ArrayLike, val_labels: ArrayLike, log_prior: ArrayLike, t_zs: float, *,
                     search_t_ft: bool = True, t_ft: float = 1.0,
                     temperature_method: str = "official") -> GLAValSelector:
    """The official few-shot model selection: GLA accuracy on the validation split.

    The zero-shot val logits, ``T_zs`` and the prior are fixed during prompt tuning, so the
    score of an epoch is ``acc(argmax(f_pt / T_ft + f_zs / T_zs - log q))`` on val, with
    ``T_ft`` searched again on the learner's val logits at every call, as the official code
    does each epoch (BeierZhu/GLA, ``GLA.FS.public.zip`` -> ``trainers/gla.py``, the
    after-epoch evaluation with ``search_T`` at threshold 1.0).

    Parameters
    ----------
    zs_val_logits : (N_val, K)
        Raw zero-shot logits of the val images, in the order the trainer sees them.
    val_labels : (N_val,)
    log_prior : (K,)
        ``log q`` estimated at ``t_zs`` (any normalisation: a constant shift does not
        change the argmax).
    t_zs : float
        Temperature of the zero-shot model.
    search_t_ft : bool
        Search ``T_ft`` (confidence matches accuracy; ``T_ft = 1`` when accuracy is 1 or
        at chance) at each call; ``False`` uses ``t_ft``.
    t_ft : float
        The fixed fine-tuned temperature when ``search_t_ft`` is False.
    temperature_method : {"official", "exact"}
        How ``T_ft`` is searched (:func:`gla.temperature.fit_temperature`; the protocol's).

    Returns
    -------
    GLAValSelector
        A callable ``(N_val, K) logits -> float`` score (higher is better).
    """
    zs = check_logits(zs_val_logits, "zs_val_logits").detach().to(torch.float64).cpu()
    y = check_labels(val_labels, zs.shape[0], zs.shape[1], "val_labels").cpu()
    lq = check_log_prior(log_prior, zs.shape[1]).detach().to(torch.float64).cpu()
    for name, t in (("t_zs", t_zs), ("t_ft", t_ft)):
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"{name}: expected a positive temperature, got {t!r}")
    return GLAValSelector(zs, y, lq, float(t_zs), bool(search_t_ft), float(t_ft), temperature_method)


def _score_name(select: Select | None) -> str:
    if select is None:
        return "val_accuracy"
    return str(getattr(select, "name", None) or getattr(select, "__name__", None) or type(select).__name__)


class _Selection:
    """Scores the learner on val after each epoch and keeps the best parameters."""

    def __init__(self, learner: _PromptBase, val_features: torch.Tensor, val_labels: torch.Tensor,
                 select: Select | None):
        self.learner, self.xv, self.yv, self.select = learner, val_features, val_labels, select
        self.name = _score_name(select)
        self.best: dict[str, Any] = {"score": -math.inf, "epoch": None, "accuracy": None, "state": None}

    @torch.no_grad()
    def evaluate(self, record: dict, candidate: bool = True) -> dict:
        logits = self.learner(self.xv).float()
        acc = float((logits.argmax(1) == self.yv).float().mean())
        if self.select is None:
            score = acc
        else:
            score = float(self.select(logits))
            details = getattr(self.select, "last_details", None)
            if isinstance(details, dict):
                record.update(details)
            if not math.isfinite(score):
                raise ValueError(f"select: expected a finite score, got {score} at epoch {record['epoch']}")
        record.update(val_accuracy=acc, val_score=score, score=self.name, candidate=candidate)
        if candidate and score > self.best["score"]:
            self.best.update(score=score, epoch=record["epoch"], accuracy=acc,
                             state={k: v.detach().clone() for k, v in self.learner.named_parameters()
                                    if v.requires_grad})
        return record

    def restore(self) -> dict:
        with torch.no_grad():
            for k, v in self.learner.named_parameters():
                if k in self.best["state"]:
                    v.copy_(self.best["state"][k])
        return {"best_epoch": self.best["epoch"], "best_val_score": self.best["score"],
                "best_val_accuracy": self.best["accuracy"], "score": self.name}


def _check_learner(learner) -> None:
    if not isinstance(learner, _PromptBase):
        raise TypeError(f"learner: expected a PromptResiduals or CoOp, got {type(learner).__name__}")


def _check_epochs(epochs: int) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")


# --------------------------------------------------------------------------- fast recipe

def train_prompts(learner: _PromptBase, train_features: torch.Tensor, train_labels: torch.Tensor,
                  val_features: torch.Tensor, val_labels: torch.Tensor, *, epochs: int = 100, lr: float = 2e-3,
                  batch_size: int | None = None, weight_decay: float = 0.0, seed: int = 0,
                  select: Select | None = None, progress: bool = False) -> tuple[_PromptBase, list[dict]]:
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
    sel = _Selection(learner, xv, yv, select)
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


# --------------------------------------------------------------------------- paper's recipe

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


def train_prompts_end_to_end(learner: _PromptBase, backbone, train_dataset, val_dataset, *, epochs: int = 50,
                             lr: float = 4e-4, batch_size: int = 512, warmup_epochs: int = 1,
                             warmup_lr: float = DASSL_WARMUP_CONS_LR, momentum: float = DASSL_MOMENTUM,
                             weight_decay: float = DASSL_WEIGHT_DECAY, augment: bool = True,
                             precision: str | None = None, select: Select | None = None, seed: int = 0,
                             num_workers: int = 0, progress: bool = False) -> tuple[_PromptBase, list[dict]]:
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
    learner
        With the selected epoch's parameters loaded.
    history : list of dict
        As :func:`train_prompts`; the summary also holds ``recipe`` (the settings).
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
        sel = _Selection(learner, xv, yv, select)
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
