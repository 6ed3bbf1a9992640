"""Wanda (Sun et al., 2024): prune by |W| x ||X||_2, compared within each output row (locuslab/wanda ``prune_wanda``).

The input-norm statistic is the reference's running estimate: ``scaler_row = sum ||x_col||^2 / nsamples`` over all
calibration tokens, and the score is ``|W| * sqrt(scaler_row)``. Unstructured: per row, the ``int(cols * ratio)``
lowest scores by stable sort; N:M: the ``N`` lowest in every group of ``M`` input columns.
"""

from __future__ import annotations

import torch

from kick_hub.compress.blocks import run_blockwise
from kick_hub.compress.masks import nm_mask, row_mask


class InputNorm:
    """Running mean of squared input-column norms per calibration sample (the reference's ``WrappedGPT``)."""

    def __init__(self, layer: torch.nn.Linear) -> None:
        self.scaler_row = torch.zeros(layer.in_features, dtype=torch.float32)
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        inp = inp.unsqueeze(0) if inp.dim() == 2 else inp
        batch = inp.shape[0]
        inp = inp.reshape(-1, inp.shape[-1]).t().float()
        self.scaler_row *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples


def score(weight: torch.Tensor, stats: InputNorm) -> torch.Tensor:
    return weight.abs().float() * torch.sqrt(stats.scaler_row.reshape(1, -1))


def prune(model, calibration: torch.Tensor, spec, progress: bool = True) -> None:
    def rewrite(name, layer, stats):
        metric = score(layer.weight.data, stats)
        mask = nm_mask(metric, *spec.pattern) if spec.pattern else row_mask(metric, spec.sparsity)
        layer.weight.data[mask] = 0

    run_blockwise(model, calibration, InputNorm, rewrite, desc="wanda", progress=progress)
