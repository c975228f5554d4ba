"""``gla finetune``: fine-tune end to end into the protocols' cache (torchrun-ready).

Fine-tune a backbone on a dataset's train split with the recipe that 'gla run' uses and
store the checkpoint where 'gla run' finds it. Launch with torchrun for several GPUs:
torchrun --nproc_per_node 8 -m gla finetune imagenet --backbone ViT-B-16 --pretrained
openai --device cuda (--batch-size is the global batch).
"""

from __future__ import annotations

import argparse
import os

from .. import protocols
from ..checks import check_backbone, check_datasets
from ..finetune import LOSSES, FinetuneConfig
from .options import (
    add_backbone_options,
    add_machine_options,
    add_recipe_options,
    check_values,
    command_parser,
    context_and_recipe,
    named_backbone,
    with_options,
)


def add_parser(sub, **kw) -> argparse.ArgumentParser:
    """Add ``gla finetune`` to the subcommands ``sub`` (``kw``: formatter class, parents)."""
    p = command_parser(sub, "finetune", __doc__, **kw)
    p.add_argument("dataset", help="a name from 'gla datasets' (its train split is used)")
    p.add_argument("--loss", choices=LOSSES, default="ce", help="cross-entropy or the logit-adjusted loss")
    add_backbone_options(p)
    add_recipe_options(p, epochs="fine-tuning epochs (default: the backbone's recipe, 1 with --smoke)",
                       lr="peak learning rate (default: the backbone's recipe)",
                       batch_size="global batch size (default: the backbone's recipe)")
    p.add_argument("--seed", type=int, default=0,
                   help="fine-tuning seed (gla run's many-shot and long-tail protocols use 0)")
    p.add_argument("--templates", choices=protocols.config.TEMPLATE_STYLES, default="gla",
                   help="zero-shot templates of the head the fine-tuning starts from (as gla run's)")
    add_machine_options(p, device="cpu or cuda (under torchrun: cuda:<LOCAL_RANK> each)",
                        smoke="the short smoke recipe (1 epoch, small world tasks)")
    return with_options(p, finetune)


def finetune(args: argparse.Namespace) -> int:
    """``gla finetune``: check, fine-tune, say where the checkpoint is (rank 0 only)."""
    backbone, pretrained = named_backbone(args)
    check_backbone(backbone, pretrained, args.quick_gelu)
    check_datasets([args.dataset], ("train",), args.data_root, "dataset")
    check_values(args, FinetuneConfig())
    ctx, recipe = context_and_recipe(args, backbone, pretrained)
    path = protocols.finetune_to_cache(ctx.backbone, ctx.pretrained, args.dataset, loss=args.loss, recipe=recipe,
                                       seed=args.seed, **ctx.run())
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fine-tuned checkpoint: {path}")
    return 0
