"""Test classes among a model's classes, and projections onto them.

A test set may cover only some of the classes a model predicts: ImageNet-R and -A keep
200 of ImageNet's 1000 classes (WiSE-FT, ``src/datasets/imagenet_r.py`` and
``imagenet_a.py``: ``CLASS_SUBLIST``), and ObjectNet's 113 ImageNet-overlapping classes
each stand for a group of ImageNet classes (the WiSE-FT evaluation max-pools a group's
logits). A :data:`ClassSubset` says which; :func:`project_logits`,
:func:`project_labels` and :func:`project_log_prior` move logits, labels and a log prior
into the test set's class space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch


@dataclass(frozen=True)
class ClassGroups:
    """Test classes that each stand for a group of the model's classes.

    ObjectNet's 113 ImageNet-overlapping classes each map to one or more of ImageNet's
    1000 classes; a 1000-way model's logit for an ObjectNet class is the maximum over its
    group (:func:`project_logits`). Labels are already group indices.

    Parameters
    ----------
    groups : tuple of tuple of int
        For each test class, the indices of its model classes.
    """

    groups: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.groups)


#: A test set's classes among the model's: ``None`` (all), a 1-D index tensor (a subset,
#: as ImageNet-R/-A), or :class:`ClassGroups` (ObjectNet).
ClassSubset = Union[torch.Tensor, ClassGroups, None]


def project_logits(logits: torch.Tensor, class_subset: ClassSubset) -> torch.Tensor:
    """Logits over a test set's classes from logits over the model's classes.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, K)`` logits over the model's ``K`` classes.
    class_subset : ClassSubset
        ``None``: returned unchanged. An index tensor (ImageNet-R/-A, 200 of the 1000
        classes): those columns, in the tensor's order (WiSE-FT
        ``src/datasets/imagenet.py`` ``project_logits``). :class:`ClassGroups`
        (ObjectNet): the maximum over each group.

    Returns
    -------
    torch.Tensor
        ``(N, K')`` logits over the test set's ``K'`` classes.
    """
    if class_subset is None:
        return logits
    if isinstance(class_subset, ClassGroups):
        return torch.stack([logits[:, list(g)].max(dim=1).values for g in class_subset.groups], dim=1)
    return logits[:, class_subset.to(logits.device)]


def project_labels(labels: torch.Tensor, class_subset: ClassSubset) -> torch.Tensor:
    """Labels in the test set's class space.

    Parameters
    ----------
    labels : torch.Tensor
        ``(N,)`` labels. With an index subset they are model classes (e.g. 1000-way
        ImageNet indices) and become positions within the subset; with
        :class:`ClassGroups` they are already group indices and are only checked.
    class_subset : ClassSubset
        As in :func:`project_logits`.

    Returns
    -------
    torch.Tensor
        ``(N,)`` labels in ``0..K'-1``.
    """
    if class_subset is None:
        return labels
    if isinstance(class_subset, ClassGroups):
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_subset)):
            raise ValueError(f"labels: expected group indices 0..{len(class_subset) - 1}")
        return labels
    if len(labels) == 0:
        return labels.clone()
    pos = torch.full((max(int(class_subset.max()), int(labels.max())) + 1,), -1, dtype=torch.long)
    pos[class_subset] = torch.arange(len(class_subset))
    out = pos[labels]
    if (out < 0).any():
        raise ValueError("labels: some labels are outside the class subset")
    return out


def project_log_prior(log_prior: torch.Tensor, class_subset: ClassSubset) -> torch.Tensor:
    """A log prior over the model's classes restricted to a test set's classes.

    Parameters
    ----------
    log_prior : torch.Tensor
        ``(K,)`` log prior over the model's classes.
    class_subset : ClassSubset
        As in :func:`project_logits`; a group's mass is the sum over its members.

    Returns
    -------
    torch.Tensor
        ``(K',)`` log prior, renormalised to sum to one (unchanged when ``None``).
    """
    if class_subset is None:
        return log_prior
    if isinstance(class_subset, ClassGroups):
        lq = torch.stack([torch.logsumexp(log_prior[list(g)], 0) for g in class_subset.groups])
    else:
        lq = log_prior[class_subset.to(log_prior.device)]
    return lq - torch.logsumexp(lq, 0)
