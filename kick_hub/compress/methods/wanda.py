"""Wanda (Sun et al., 2024, "A Simple and Effective Pruning Approach for Large Language Models", section 3): prune
by |W| x ||X||_2, compared within each output row (locuslab/wanda ``lib/prune.py`` ``prune_wanda``).

The input-norm statistic is the reference's running estimate: ``scaler_row = sum ||x_col||^2 / nsamples`` over all
calibration tokens, and the score is ``|W| * sqrt(scaler_row)``. Unstructured: per row, the ``int(cols * ratio)``
lowest scores by stable sort; N:M: the ``N`` lowest in every group of ``M`` input columns. Scores are computed on
the ``[out, in]`` view of the weight (``blockwise.weight_view``: ``W`` for Linear, ``W.t()`` for GPT-2's Conv1D), so the
input norms line up with the columns for both.
"""

from __future__ import annotations

import torch

from kick_hub.compress.blockwise import in_features, run_blockwise, weight_view
from kick_hub.compress.methods.masks import nm_mask, row_mask


class InputNorm:
    """Running mean of squared input-column norms per calibration sample (the reference's ``WrappedGPT``):
    ``scaler_row`` ``[in]`` float32, in squared activation units."""

    def __init__(self, layer: torch.nn.Module) -> None:
        # [in], on the layer's device (block offload runs the statistics where the block is)
        self.scaler_row = torch.zeros(in_features(layer), dtype=torch.float32, device=layer.weight.device)
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        """Fold in one sample's layer input ``[1, seqlen, in]`` (or ``[seqlen, in]``): ``scaler_row`` becomes
        sum over samples of ||X_col||_2^2 / nsamples, updated as the reference's running mean."""
        inp = inp.unsqueeze(0) if inp.dim() == 2 else inp
        batch = inp.shape[0]
        inp = inp.reshape(-1, inp.shape[-1]).t().float()
        self.scaler_row *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples


def score(weight: torch.Tensor, stats: InputNorm) -> torch.Tensor:
    """Wanda's metric ``|W| * sqrt(scaler_row)`` (paper eq. 1, S_ij = |W_ij| * ||X_j||_2) for ``weight``
    ``[out, in]`` and ``stats.scaler_row`` ``[in]``; returns ``[out, in]`` float32."""
    return weight.abs().float() * torch.sqrt(stats.scaler_row.reshape(1, -1))


def prune(model, calibration: torch.Tensor, spec, progress: bool = True,
          device: torch.device | str | None = None) -> None:
    """Prune every decoder-block Linear / Conv1D of ``model`` in place, block by block (``run_blockwise``: each
    block's inputs are the previous block's outputs after pruning, as the reference). ``calibration``: token ids
    ``[nsamples, seqlen]``. Unstructured: ``masks.row_mask`` per output row; N:M: ``masks.nm_mask``. ``device``:
    None runs where the model is; otherwise each block moves to ``device`` for its statistics and masks (block
    offload, ``run_blockwise``). A ValueError naming the layer when its input norms are not finite."""
    def rewrite(name, layer, stats):
        W = weight_view(layer)  # [out, in]
        metric = score(W, stats)
        mask = nm_mask(metric, *spec.pattern) if spec.pattern else row_mask(metric, spec.sparsity)
        W[mask] = 0

    run_blockwise(model, calibration, InputNorm, rewrite, desc="wanda", progress=progress, device=device, memo=True)


def apply(model, spec, calibration, progress: bool = True, device: torch.device | str | None = None):
    """The registry entry: ``prune`` in place (blocks offloaded to ``device`` when given) and return ``model``."""
    prune(model, calibration, spec, progress, device)
    return model
