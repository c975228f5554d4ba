"""Read files that the reference code left on disk, without installing it or running its pickles.

Two kinds of files matter to users of the paper's code:

* **Dassl few-shot splits.** CoOp's datasets (KaiyangZhou/CoOp ``datasets/oxford_pets.py``
  and ``datasets/imagenet.py``) and GLA's few-shot code (``GLA.FS.public/datasets/imagenet.py``
  in github.com/BeierZhu/GLA) cache their draws as ``split_fewshot/shot_{k}-seed_{s}.pkl``,
  a ``pickle.dump(..., protocol=pickle.HIGHEST_PROTOCOL)`` of ``{"train": [Datum, ...],
  "val": [Datum, ...]}`` (CoOp's ImageNet keeps only ``"train"``), and GLA's ImageNet caches
  the whole dataset as ``imagenet/preprocessed.pkl`` (``{"train": [...], "test": [...]}``).
  ``Datum`` is ``dassl.data.datasets.base_dataset.Datum`` (KaiyangZhou/Dassl.pytorch; the
  fork in GLA's ``Dassl.ProGrad.pytorch.zip`` keeps the same path), an object with the
  attributes ``_impath``, ``_label``, ``_domain`` and ``_classname``.
  :mod:`gla.pickles.dassl`: :func:`read_dassl_split` reads such a file with an unpickler that knows exactly that one
  class (turned into a frozen :class:`DatumRecord`) and no other global at all;
  :func:`match_records` finds each record's image among the user's images, and
  :func:`cached_few_shot_split` does both for a few-shot sampler;
  :func:`preprocessed_train_order` turns GLA's ``preprocessed.pkl`` into an order of the
  user's ImageNet train set (:func:`match_listing`: one record per image), on which GLA's
  few-shot draw is reproduced.

* **WiSE-FT checkpoints.** WiSE-FT (mlfoundations/wise-ft ``src/models/modeling.py``)
  saves a whole ``ImageClassifier`` module, an image encoder holding a CLIP model plus a
  ``ClassificationHead``. Its ``ImageClassifier.save`` goes through ``src/models/utils.py``
  ``torch_save``, which is a plain ``pickle.dump`` of the module (tensor storages then sit
  inside the pickle as ``torch.storage._load_from_bytes`` calls); other code saves the same
  module with ``torch.save`` (a zip archive). :func:`load_module_state_dict` reads both, and
  plain state dicts (:mod:`gla.pickles.wise_ft`), with an unpickler that rebuilds tensors, maps every other class to an
  inert stub that only records its state (no code of the original class runs, nothing is
  imported) and refuses globals that can reach the operating system or run code.
  :func:`split_image_classifier_state` splits the result into the CLIP weights and the head.

Why not ``pickle.load`` / ``torch.load(weights_only=False)``: unpickling calls any function
the file names, so a checkpoint from the web can run arbitrary code. The unpicklers here only
ever call the few functions listed in this module.
"""

from .dassl import (
    DATUM_CLASS,
    DatumRecord,
    cached_few_shot_split,
    match_listing,
    match_records,
    preprocessed_train_order,
    read_dassl_split,
)
from .refusals import ForbiddenGlobalError
from .wise_ft import load_module_state_dict, split_image_classifier_state

__all__ = [
    "DATUM_CLASS",
    "DatumRecord",
    "ForbiddenGlobalError",
    "cached_few_shot_split",
    "load_module_state_dict",
    "match_listing",
    "match_records",
    "preprocessed_train_order",
    "read_dassl_split",
    "split_image_classifier_state",
]
