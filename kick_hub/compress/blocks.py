"""The block-by-block calibration loop shared by every calibration-based method.

Capture the first decoder block's inputs (hidden states plus whatever keyword arguments the model passes its
blocks: attention mask, position ids, rotary ``position_embeddings`` in current transformers), then for each block:
collect statistics on its Linear inputs with forward hooks, let the method rewrite the weights, recompute the
block's outputs with the new weights and feed them to the next block. Peak memory is one model copy plus one block's
activations for the calibration set.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

import torch
from torch import nn

_BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "model.blocks")


def decoder_layers(model) -> nn.ModuleList:
    """The model's decoder blocks, or a clear error naming the paths tried."""
    for path in _BLOCK_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj):
            return obj
    raise ValueError(f"model: cannot find decoder blocks in {type(model).__name__} (looked for {list(_BLOCK_PATHS)})")


def linear_layers(block: nn.Module) -> dict[str, nn.Linear]:
    """Every Linear inside one decoder block, by qualified name (q/k/v/o, gate/up/down, ...)."""
    return {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}


def release_freed_memory(collect: bool = True) -> None:
    """Hand memory Python and torch have freed back to the OS. glibc keeps freed chunks below its (self-raising)
    mmap threshold in the heap, so without this the per-block temporaries of a calibration loop pile up in RSS.
    ``collect`` runs the garbage collector first (slow with a large heap: once, not per layer)."""
    if collect:
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def unmap_large_frees(threshold: int = 1 << 20) -> None:
    """Serve allocations >= ``threshold`` bytes with their own mmap, so freeing one returns it to the OS at once.
    glibc raises its mmap threshold after each large free (up to 32 MiB), after which a quantizer's per-tensor
    temporaries stay in the heap until the end of the load (+0.55x the model bytes for int8 on SmolLM2). Fixing the
    threshold (``mallopt(M_MMAP_THRESHOLD)``) is process-wide and lasts for the process; no-op off glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class _Captured(Exception):
    pass


@torch.no_grad()
def capture_inputs(model, ids: torch.Tensor) -> tuple[list[torch.Tensor], dict]:
    """Run the model up to the first block for each calibration row; return its inputs and call kwargs."""
    layers = decoder_layers(model)
    inputs: list[torch.Tensor] = []
    kwargs: dict = {}

    def hook(module, args, kw):
        inputs.append(args[0] if args else kw["hidden_states"])
        kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise _Captured

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for row in ids:
            try:
                model(input_ids=row[None].to(next(model.parameters()).device), use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    kwargs.pop("past_key_values", None)
    kwargs.pop("past_key_value", None)
    kwargs["use_cache"] = False
    return inputs, kwargs


def _block_out(out):
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_blockwise(model, ids: torch.Tensor, make_stats: Callable[[nn.Linear], object],
                  rewrite: Callable[[str, nn.Linear, object], None], desc: str = "blocks",
                  progress: bool = True) -> None:
    """Drive ``make_stats`` (one accumulator per Linear, fed with ``add_batch(inp)``) and ``rewrite`` (changes the
    Linear's weight from its statistics) over every decoder block in order."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    inputs, kwargs = capture_inputs(model, ids)
    for block in tqdm(decoder_layers(model), desc=desc, unit="block", disable=not progress):
        linears = linear_layers(block)
        stats = {name: make_stats(lin) for name, lin in linears.items()}
        handles = [lin.register_forward_hook(lambda m, inp, out, s=stats[name]: s.add_batch(inp[0].data))
                   for name, lin in linears.items()]
        for x in inputs:
            block(x, **kwargs)
        for h in handles:
            h.remove()
        for name, lin in linears.items():
            rewrite(name, lin, stats.pop(name))
            release_freed_memory(collect=False)
        inputs = [_block_out(block(x, **kwargs)) for x in inputs]
    model.train(was_training)
