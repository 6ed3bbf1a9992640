"""Mask rules shared by the pruning methods, written as in locuslab/wanda ``lib/prune.py`` so masks agree with the
reference, ties included: a mask marks the weights to *remove* (True = pruned). ``metric`` is always ``[out, in]``
(rows are output channels, columns input features: ``blockwise.weight_view`` of a Linear or a GPT-2 Conv1D); the mask
has its shape."""

from __future__ import annotations

import torch


def nm_mask(metric: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In every group of ``m`` consecutive input columns (dim 1 of ``metric`` ``[out, in]``), prune the ``n``
    lowest-scoring weights of each row (``torch.topk(largest=False)`` per group, as the reference loops over
    groups)."""
    mask = torch.zeros_like(metric, dtype=torch.bool)
    for start in range(0, metric.shape[1], m):
        chunk = metric[:, start:start + m].float()
        mask.scatter_(1, start + torch.topk(chunk, n, dim=1, largest=False)[1], True)
    return mask


def row_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Per output row of ``metric`` ``[out, in]``, prune the ``int(in * sparsity)`` lowest scores (stable sort: ties
    go to the lower index), as the reference's ``prune_wanda``."""
    mask = torch.zeros_like(metric, dtype=torch.bool)
    k = int(metric.shape[1] * sparsity)
    indices = torch.sort(metric, dim=-1, stable=True)[1][:, :k]
    return mask.scatter_(1, indices, True)


def threshold_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """One threshold per matrix: the value at position ``int(numel * sparsity)`` of the sorted scores, pruning every
    score ``<=`` it (the reference's ``prune_magnitude`` rule; with ties it prunes slightly more than the ratio).
    ``sparsity`` in [0, 1)."""
    if sparsity == 0:
        return torch.zeros_like(metric, dtype=torch.bool)
    thresh = torch.sort(metric.flatten())[0][int(metric.numel() * sparsity)]
    return metric <= thresh
