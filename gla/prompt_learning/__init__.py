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

Modules: :mod:`~gla.prompt_learning.learners` (the two learners on the text tower),
:mod:`~gla.prompt_learning.selection` (which epoch is kept) and
:mod:`~gla.prompt_learning.training` (the two trainers).
"""

from .learners import COOP_CTX_STD, COOP_N_CTX, CoOp, PromptLearner, PromptResiduals, encode_text_embeddings
from .selection import GLAValSelector, Select, TemperatureResult, gla_val_selector
from .training import (
    DASSL_MOMENTUM,
    DASSL_WARMUP_CONS_LR,
    DASSL_WEIGHT_DECAY,
    TrainAugmentation,
    dassl_cosine_lr,
    train_prompts,
    train_prompts_end_to_end,
    training_augmentation,
)

__all__ = [
    "COOP_CTX_STD", "COOP_N_CTX", "DASSL_MOMENTUM", "DASSL_WARMUP_CONS_LR", "DASSL_WEIGHT_DECAY", "CoOp",
    "GLAValSelector", "PromptLearner", "PromptResiduals", "Select", "TemperatureResult", "TrainAugmentation",
    "dassl_cosine_lr", "encode_text_embeddings", "gla_val_selector", "train_prompts", "train_prompts_end_to_end",
    "training_augmentation",
]
