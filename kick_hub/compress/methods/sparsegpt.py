"""SparseGPT (Frantar & Alistarh, 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot",
section 3, Algorithm 1): OBS pruning with weight updates (IST-DASLab/sparsegpt ``sparsegpt.py`` ``fasterprune``).

H = 2 X X^T / n from calibration inputs; dead inputs (zero diagonal) get H_ii = 1 and their weights zeroed; H is
dampened by ``damp`` x mean(diag H), inverted through Cholesky, and the upper Cholesky factor of H^-1 drives the
column-by-column OBS update. Unstructured: the mask is chosen once per block of ``blocksize`` columns from
w^2 / [H^-1]_ii^2 with a ``<=`` threshold at ``int(numel * ratio)``; N:M: chosen every M columns inside the block.
The weight is handled as its ``[out, in]`` view (``blockwise.weight_view``: ``W`` for Linear, ``W.t()`` for GPT-2's
Conv1D), so columns are input features for both, matching H.

A Hessian from little calibration (rank <= nsamples x seqlen) can fail to factorise at a small ``damp``: the
Cholesky of H, or the Cholesky of its inverse, finds a matrix that is not positive definite. ``fasterprune`` then
retries that layer with ``damp`` x 10, x 100, ... up to ``MAX_DAMP`` (the mean diagonal itself) and returns the
damping it used; ``prune`` prints and returns every layer whose damping was raised (the manifest's
``damp_raised``). A ``FactorisationError`` (a ValueError) names the layer when even ``MAX_DAMP`` fails, when H holds
NaN / inf, or when the OBS update gives non-finite weights. The retries are deterministic, so rerunning the same
command raises the same layers to the same damping.
"""

from __future__ import annotations

import sys

import torch

from kick_hub.compress.blockwise import in_features, prunable_layers, run_blockwise, weight_view
from kick_hub.compress.methods.masks import lowest_n

# the largest damping tried, as a fraction of the mean Hessian diagonal
MAX_DAMP = 1.0


class FactorisationError(ValueError):
    """A layer's Hessian did not factorise at any damping up to ``MAX_DAMP``, or its OBS update overflowed."""


class Hessian:
    """Running H = 2/n sum x x^T over calibration samples (the reference's ``add_batch``): ``H`` ``[in, in]``
    float32, ``x`` one token's layer input ``[in]``, ``n`` the samples folded in so far."""

    def __init__(self, layer: torch.nn.Module) -> None:
        # [in, in], on the layer's device (block offload runs the statistics where the block is)
        self.H = torch.zeros(in_features(layer), in_features(layer), dtype=torch.float32, device=layer.weight.device)
        self.nsamples = 0

    def take(self) -> torch.Tensor:
        """Hand over H ``[in, in]`` and forget it (the caller then holds the only reference)."""
        H, self.H = self.H, None
        return H

    def add_batch(self, inp: torch.Tensor) -> None:
        """Fold in one sample's layer input ``[1, seqlen, in]`` (or ``[seqlen, in]``, i.e. X ``[tokens, in]``):
        H is rescaled by n / (n + 1), then X^T X x 2 / (n + 1) is added."""
        inp = inp.unsqueeze(0) if inp.dim() == 2 else inp
        batch = inp.shape[0]
        inp = inp.reshape(-1, inp.shape[-1]).t().float()
        self.H *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        inp = (2 / self.nsamples) ** 0.5 * inp
        self.H += inp.matmul(inp.t())


def damp_steps(percdamp: float) -> list[float]:
    """The dampings ``fasterprune`` tries (fractions of the mean Hessian diagonal), in order: ``percdamp``, then
    x10 each step, then ``MAX_DAMP``.
    Rounded to 12 significant digits, so the values recorded are the values used (``1e-05`` -> ``0.0001``, ...)."""
    steps = [percdamp]
    while steps[-1] * 10 < MAX_DAMP:
        steps.append(float(f"{steps[-1] * 10:.12g}"))
    if steps[-1] < MAX_DAMP:
        steps.append(MAX_DAMP)
    return steps


def inverse_factor(H: torch.Tensor, damp: float) -> torch.Tensor | None:
    """The upper Cholesky factor ``[in, in]`` of ``(H + damp x mean(diag H) I)^-1`` for ``H`` ``[in, in]``, computed
    as the reference's ``fasterprune``
    does (Cholesky, ``cholesky_inverse``, upper Cholesky), or None when either Cholesky finds its input not positive
    definite. ``H`` is left as it was (its diagonal is restored); the inverse and its factor share one buffer, so at
    most two ``[in, in]`` matrices are alive, as in the reference."""
    diag = H.diagonal()
    original = diag.clone()
    diag.add_(damp * torch.mean(original))
    try:
        L, info = torch.linalg.cholesky_ex(H)
    finally:
        diag.copy_(original)
    if info.item():
        return None
    torch.cholesky_inverse(L, out=L)  # H^-1, in the factor's own storage
    torch.linalg.cholesky_ex(L, upper=True, out=(L, info))
    return None if info.item() else L


@torch.no_grad()
def fasterprune(layer: torch.nn.Module, H: torch.Tensor, sparsity: float, pattern: tuple[int, int] | None = None,
                blocksize: int = 128, percdamp: float = 0.01, name: str = "layer") -> float:
    """Prune ``layer`` (Linear or Conv1D) in place from its Hessian ``H`` ``[in, in]`` (consumed); the reference's
    ``SparseGPT.fasterprune`` (IST-DASLab/sparsegpt ``sparsegpt.py``). ``sparsity`` in [0, 1) (unstructured) or
    ``pattern`` N:M; ``blocksize`` columns per lazy-update block; ``percdamp`` a fraction of mean(diag H). The weight
    is pruned and updated in float32 on its ``[out, in]`` view and copied back. Returns the damping used:
    ``percdamp``, or the first of ``damp_steps(percdamp)`` under which H factorises. A ``FactorisationError``
    naming ``name`` when none does, or when the pruned weights come out non-finite; the layer is then left as it
    was. A ValueError when the layer's weight already holds NaN or inf."""
    if not bool(torch.isfinite(weight_view(layer)).all()):
        raise ValueError(f"model: {name}'s weight holds NaN or inf; SparseGPT cannot prune it")
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    steps = damp_steps(percdamp)
    for damp in steps:
        Hinv = inverse_factor(H, damp)
        if Hinv is not None:
            break
    else:
        finite = bool(torch.isfinite(H).all())
        raise FactorisationError(
            f"calibration: {name}'s Hessian " + (
                f"is not positive definite even with damp={steps[-1]:g} (requested {percdamp:g}); give more "
                "calibration (--nsamples / --seqlen) or a larger --damp" if finite else
                "holds NaN or inf: the layer's calibration inputs overflow"))
    del H
    W = weight_view(layer).clone().float()  # [out, in]
    W[:, dead] = 0
    _prune_columns(W, Hinv, sparsity, pattern, blocksize)
    if not bool(torch.isfinite(W).all()):
        raise FactorisationError(f"calibration: {name}'s OBS update with damp={damp:g} gave NaN or inf weights; "
                                 "give more calibration (--nsamples / --seqlen) or a larger --damp")
    # In place: a new tensor would leave the loaded (possibly file-mapped) storage resident beside it.
    weight_view(layer).copy_(W)
    return damp


def _prune_columns(W: torch.Tensor, Hinv: torch.Tensor, sparsity: float, pattern: tuple[int, int] | None,
                   blocksize: int) -> None:
    """The reference's column loop (paper Algorithm 1): prune ``W`` ``[out, in]`` float32 in place, ``blocksize``
    columns at a time, with OBS updates from the upper Cholesky factor ``Hinv`` ``[in, in]`` of the damped inverse
    Hessian. Mask per block: the ``<=`` threshold at ``int(numel * sparsity)`` of w^2 / [Hinv]_ii^2 (unstructured),
    or the ``n`` lowest of every ``m`` columns, chosen when the loop reaches the group (N:M)."""
    n, m = pattern or (0, 0)
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
                mask1.scatter_(1, i + lowest_n(tmp, n), True)  # the CPU tie rule on any device
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])


def prune(model, calibration: torch.Tensor, spec, progress: bool = True,
          device: torch.device | str | None = None) -> dict[str, float]:
    """Prune every decoder-block Linear / Conv1D of ``model`` in place, block by block (``run_blockwise``: each
    block's inputs are the previous block's outputs after pruning, as the reference); ``calibration``: token ids
    ``[nsamples, seqlen]``. Returns the layers (``layers.<block>.<name>``, as ``variant.layer_sparsity`` names them)
    whose Hessian needed more damping than ``spec.damp``, with the damping used; each is also printed to stderr.
    ``device``: None runs where the model is; otherwise each block moves to ``device`` for its Hessians and OBS
    updates (block offload, ``run_blockwise``), as the reference's ``llama_sequential``.
    Raises what ``fasterprune`` raises, and a ValueError naming the layer when its Hessian is not finite."""
    from tqdm.auto import tqdm

    if spec.sparsity == 0 and not spec.pattern:
        return {}
    names = {id(lin): name for name, lin in prunable_layers(model).items()}
    raised: dict[str, float] = {}

    def rewrite(name, layer, stats):
        # fasterprune gets the only reference, so its factorisations replace H instead of piling up beside it
        full = names[id(layer)]
        damp = fasterprune(layer, stats.take(), spec.sparsity, spec.pattern, spec.blocksize, spec.damp, full)
        if damp != spec.damp:
            raised[full] = damp
            tqdm.write(f"sparsegpt: {full}: Hessian not positive definite with damp={spec.damp:g}; used "
                       f"damp={damp:g}", file=sys.stderr)  # between progress bar updates, not through one

    run_blockwise(model, calibration, Hessian, rewrite, desc="sparsegpt", progress=progress, device=device, memo=True)
    return raised


def apply(model, spec, calibration, progress: bool = True, device: torch.device | str | None = None):
    """The registry entry: ``prune`` in place (blocks offloaded to ``device`` when given) and return ``model``, the
    layers whose damping was raised on it as ``kick_damp_raised`` (``manifest_entries``)."""
    model.kick_damp_raised = prune(model, calibration, spec, progress, device)
    return model


def manifest_entries(model) -> dict:
    """``damp_raised``: layer -> damping used where the Hessian did not factorise with ``spec.damp``; rerunning the
    same spec on the same calibration raises the same layers to the same damping."""
    return {"damp_raised": dict(getattr(model, "kick_damp_raised", {}))}
