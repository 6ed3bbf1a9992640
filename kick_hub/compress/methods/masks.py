"""Mask rules shared by the pruning methods, written as in locuslab/wanda ``lib/prune.py`` so masks agree with the
reference, ties included: a mask marks the weights to *remove* (True = pruned). ``metric`` is always ``[out, in]``
(rows are output channels, columns input features: ``blockwise.weight_view`` of a Linear or a GPT-2 Conv1D); the mask
has its shape. Every rule gives the same mask on CPU and on an accelerator for the same scores: sorts are
stable or compare values only, and N:M's top-k, whose tie order differs between devices, is taken on the CPU
(``lowest_n``)."""

from __future__ import annotations

import torch


def lowest_n(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Column indices ``[rows, n]`` of the ``n`` lowest scores in each row of ``scores`` ``[rows, m]``:
    ``torch.topk(largest=False)`` as the reference, always computed on the CPU. Among tied scores CPU and CUDA topk
    pick different columns, so an accelerator's scores go to the CPU for the choice (a ``[rows, m]`` copy) and the
    indices come back: masks on any device follow the CPU rule, ties included."""
    if scores.device.type == "cpu":
        return torch.topk(scores, n, dim=1, largest=False)[1]
    return torch.topk(scores.cpu(), n, dim=1, largest=False)[1].to(scores.device)


def nm_mask(metric: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In every group of ``m`` consecutive input columns (dim 1 of ``metric`` ``[out, in]``), prune the ``n``
    lowest-scoring weights of each row (``torch.topk(largest=False)`` per group, as the reference loops over
    groups). On an accelerator the choice is made on the CPU copy of ``metric`` (``lowest_n``: the CPU tie rule)
    and the mask is returned on ``metric``'s device."""
    if metric.device.type != "cpu":
        return nm_mask(metric.cpu(), n, m).to(metric.device)
    mask = torch.zeros_like(metric, dtype=torch.bool)
    for start in range(0, metric.shape[1], m):
        chunk = metric[:, start:start + m].float()
        mask.scatter_(1, start + lowest_n(chunk, n), True)
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
