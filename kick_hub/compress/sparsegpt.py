"""SparseGPT (Frantar & Alistarh, 2023): OBS pruning with weight updates (IST-DASLab/sparsegpt ``fasterprune``).

H = 2 X X^T / n from calibration inputs; dead inputs (zero diagonal) get H_ii = 1 and their weights zeroed; H is
dampened by ``damp`` x mean(diag H), inverted through Cholesky, and the upper Cholesky factor of H^-1 drives the
column-by-column OBS update. Unstructured: the mask is chosen once per block of ``blocksize`` columns from
w^2 / [H^-1]_ii^2 with a ``<=`` threshold at ``int(numel * ratio)``; N:M: chosen every M columns inside the block.
"""

from __future__ import annotations

import torch

from kick_hub.compress.blocks import run_blockwise


class Hessian:
    """Running H = 2/n sum x x^T over calibration samples (the reference's ``add_batch``)."""

    def __init__(self, layer: torch.nn.Linear) -> None:
        self.H = torch.zeros(layer.in_features, layer.in_features, dtype=torch.float32)
        self.nsamples = 0

    def take(self) -> torch.Tensor:
        """Hand over H and forget it."""
        H, self.H = self.H, None
        return H

    def add_batch(self, inp: torch.Tensor) -> None:
        inp = inp.unsqueeze(0) if inp.dim() == 2 else inp
        batch = inp.shape[0]
        inp = inp.reshape(-1, inp.shape[-1]).t().float()
        self.H *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        inp = (2 / self.nsamples) ** 0.5 * inp
        self.H += inp.matmul(inp.t())


@torch.no_grad()
def fasterprune(layer: torch.nn.Linear, H: torch.Tensor, sparsity: float, pattern: tuple[int, int] | None = None,
                blocksize: int = 128, percdamp: float = 0.01) -> None:
    W = layer.weight.data.clone().float()
    n, m = pattern or (0, 0)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(W.shape[1])
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    del H
    for i1 in range(0, W.shape[1], blocksize):
        i2 = min(i1 + blocksize, W.shape[1])
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if n == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            if n and i % m == 0:
                tmp = W1[:, i:i + m] ** 2 / (torch.diag(Hinv1)[i:i + m].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, n, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    # In place: a new tensor would leave the loaded (possibly file-mapped) storage resident beside it.
    layer.weight.data.copy_(W.reshape(layer.weight.shape))


def prune(model, calibration: torch.Tensor, spec, progress: bool = True) -> None:
    if spec.sparsity == 0 and not spec.pattern:
        return

    def rewrite(name, layer, stats):
        # fasterprune gets the only reference, so its factorisations replace H instead of piling up beside it
        fasterprune(layer, stats.take(), spec.sparsity, spec.pattern, spec.blocksize, spec.damp)

    run_blockwise(model, calibration, Hessian, rewrite, desc="sparsegpt", progress=progress)
