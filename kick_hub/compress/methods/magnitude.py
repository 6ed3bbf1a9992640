"""Magnitude pruning (layer-wise and global) and random pruning: no calibration data.

- ``magnitude``: one threshold per weight matrix over |W| (locuslab/wanda ``lib/prune.py`` ``prune_magnitude``);
  N:M per group of M input columns of the ``[out, in]`` view (``blockwise.weight_view``: ``W`` for Linear,
  ``W.t()`` for GPT-2's Conv1D).
- ``magnitude-global``: one threshold over |W| of all pruned matrices together, found exactly by bisection on the
  float bit patterns so no concatenated copy of the weights is ever made (memory stays at one matrix).
- ``random``: scores drawn uniformly at random (seeded), then the layer-wise rules: the floor baseline.
"""

from __future__ import annotations

import torch

from kick_hub.compress.blockwise import prunable_layers, weight_view
from kick_hub.compress.methods.masks import nm_mask, threshold_mask


def global_threshold(weights: list[torch.Tensor], sparsity: float) -> float:
    """The value at index ``int(N * sparsity)`` of all |w| sorted (``N`` the total weight count over ``weights``),
    without concatenating them: any shapes, only the multiset of magnitudes matters. Bisection over the bit
    patterns of non-negative float32 (ordered like the floats), so the threshold is exact and each step reads the
    matrices once; ``sparsity`` in [0, 1)."""
    total = sum(w.numel() for w in weights)
    k = int(total * sparsity)  # we want the smallest t with count(|w| <= t) >= k + 1
    lo, hi = 0, 0x7F800000  # non-negative float32 bit patterns are ordered like the floats
    while lo < hi:
        mid = (lo + hi) // 2
        t = torch.tensor(mid, dtype=torch.int32).view(torch.float32)
        count = sum(int((w.abs().float() <= t).sum()) for w in weights)
        if count >= k + 1:
            hi = mid
        else:
            lo = mid + 1
    return float(torch.tensor(lo, dtype=torch.int32).view(torch.float32))


@torch.no_grad()
def prune(model, spec, device: torch.device | str | None = None) -> None:
    """Prune every decoder-block Linear / Conv1D of ``model`` in place by ``spec`` (method ``magnitude``,
    ``magnitude-global`` or ``random``; ``spec.sparsity`` or ``spec.pattern`` N:M). Each weight is scored on its
    ``[out, in]`` view: |W|, or uniform random numbers from a CPU generator seeded with ``spec.seed`` (so every
    device draws the same numbers). Layer-wise: ``masks.threshold_mask`` per matrix, or ``masks.nm_mask``;
    ``magnitude-global`` unstructured: every |w| <= ``global_threshold`` over all the layers (ties prune slightly
    more than the ratio). ``device`` (None: where the model is): each matrix moves there for its scores and mask
    and the pruned matrix is copied back; the global threshold is found where the model is (an exact count, the
    same on any device)."""
    linears = list(prunable_layers(model).values())
    if spec.method == "magnitude-global" and not spec.pattern:
        if spec.sparsity == 0:
            return
        thresh = global_threshold([lin.weight.data for lin in linears], spec.sparsity)
        for lin in linears:
            lin.weight.data[lin.weight.data.abs().float() <= thresh] = 0
        return
    gen = torch.Generator().manual_seed(spec.seed)
    for lin in linears:
        home = weight_view(lin)  # [out, in], the model's own storage
        W = home if device is None else home.to(device)
        metric = torch.rand(W.shape, generator=gen).to(W.device) if spec.method == "random" else W.abs()
        mask = nm_mask(metric, *spec.pattern) if spec.pattern else threshold_mask(metric, spec.sparsity)
        W[mask] = 0
        if W is not home:
            home.copy_(W)  # in place: the loaded storage keeps its identity


def apply(model, spec, calibration=None, progress: bool = True, device: torch.device | str | None = None):
    """The registry entry: ``prune`` in place (no calibration, no progress bar; each matrix scored on ``device``
    when given) and return ``model``."""
    if device is None:
        prune(model, spec)
    else:
        prune(model, spec, device)
    return model
