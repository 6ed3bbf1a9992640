"""OWL: outlier-weighted layer-wise sparsity over Wanda (Yin et al. 2023, arXiv:2310.05175; the reference code is
luuyin/OWL ``lib/prune_all.py`` ``prune_wanda_outlier``), written on kick-hub's public plugin API
(``kick_hub.compress.api``).

Two passes over the calibration data, block by block (``run_blockwise``):

1. on the dense model, each block's layer-wise outlier density (LOD): the share of its weights whose Wanda score
   ``|W| * ||X||_2`` exceeds ``M`` times the mean score of their layer;
2. the block sparsities: the LODs scaled to ``[0, 2 * lam]``, centred, subtracted from the target (more outliers,
   fewer pruned weights; the mean stays the target), then Wanda's per-row mask at the block's sparsity.

Unstructured sparsity only (OWL's N:M variant keeps N:M in every block, which would be Wanda's).
"""

from __future__ import annotations

import torch

from kick_hub.compress.api import InputNorm, decoder_layers, linear_layers, row_mask, run_blockwise, wanda_score, \
    weight_view

__version__ = "0.1.0"


class OWL:
    """The ``kick_hub.methods`` entry ``owl``: a pruning method plugin that calibrates."""

    name = "owl"
    kind = "pruning"
    calibrated = True
    DEFAULTS = {"M": 5.0, "lam": 0.08}

    @staticmethod
    def check_args(args: dict) -> dict:
        """``M`` (outlier threshold, a multiple of the mean score, > 0; default 5) and ``lam`` (the largest
        departure of a block's sparsity from the target, in [0, 0.5); default 0.08), as floats."""
        unknown = sorted(set(args) - set(OWL.DEFAULTS))
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}; owl takes M (outlier threshold) and lam (sparsity "
                             "spread)")
        out = {}
        for key, default in OWL.DEFAULTS.items():
            try:
                out[key] = float(args.get(key, default))
            except (TypeError, ValueError):
                raise ValueError(f"{key} must be a number, got {args[key]!r}") from None
        if out["M"] <= 0:
            raise ValueError(f"M must be > 0, got {out['M']:g}")
        if not 0 <= out["lam"] < 0.5:
            raise ValueError(f"lam must be in [0, 0.5), got {out['lam']:g}")
        return out

    @staticmethod
    def label(spec) -> str:
        """``owl-50`` for the defaults, else ``owl-50-M7-lam0.1``."""
        args = dict(spec.args)
        extra = "".join(f"-{k}{v:g}" for k, v in args.items() if v != OWL.DEFAULTS[k])
        return f"owl-{round(spec.sparsity * 100):g}{extra}"

    @staticmethod
    def block_sparsities(lod: list[float], target: float, lam: float) -> list[float]:
        """OWL's block sparsities from the outlier densities ``lod`` (one per block): scaled to [0, 2 lam], centred
        on the target's keep ratio (reference: ``all_layer_ratio``), clipped to [0, 0.99]."""
        x = torch.tensor(lod, dtype=torch.float64)
        spread = x.max() - x.min()
        scaled = (x - x.min()) / spread * 2 * lam if spread > 0 else torch.zeros_like(x)
        keep = scaled - scaled.mean() + (1 - target)
        return [min(max(1 - float(k), 0.0), 0.99) for k in keep]

    @staticmethod
    def apply(model, spec, calibration, progress: bool = True, device=None):
        """Prune ``model`` in place to ``spec.sparsity`` on average, by OWL's block sparsities; returns it."""
        if spec.pattern:
            raise ValueError("owl prunes unstructured sparsity; give --sparsity, not --pattern")
        args = dict(spec.args)
        per_block = len(linear_layers(decoder_layers(model)[0]))
        outliers: list[list[int]] = []  # per block: [outliers, weights]
        state = {"calls": 0}

        def measure(name, layer, stats):
            block = state["calls"] // per_block
            state["calls"] += 1
            if block == len(outliers):
                outliers.append([0, 0])
            metric = wanda_score(weight_view(layer), stats)
            outliers[block][0] += int((metric > args["M"] * metric.mean()).sum())
            outliers[block][1] += metric.numel()

        # pass 1 measures the dense model: it must not change it, so it runs on a copy of nothing but statistics
        run_blockwise(model, calibration, InputNorm, measure, desc="owl outliers", progress=progress, device=device)
        lod = [k / n for k, n in outliers]
        ratios = OWL.block_sparsities(lod, spec.sparsity, args["lam"])
        model.kick_owl_ratios = ratios
        state["calls"] = 0

        def prune(name, layer, stats):
            block = state["calls"] // per_block
            state["calls"] += 1
            W = weight_view(layer)
            W[row_mask(wanda_score(W, stats), ratios[block])] = 0

        run_blockwise(model, calibration, InputNorm, prune, desc="owl", progress=progress, device=device)
        return model

    @staticmethod
    def manifest_entries(model) -> dict:
        """The block sparsities OWL chose (``owl_block_sparsity``), for the manifest."""
        ratios = getattr(model, "kick_owl_ratios", None)
        return {"owl_block_sparsity": [round(r, 6) for r in ratios]} if ratios else {}
