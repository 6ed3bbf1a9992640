"""Run a transformers quantizer (``GPTQConfig``, ``TorchAoConfig``, ``BitsAndBytesConfig``) on a model already in
memory, through the public loading API: ``from_pretrained(None, config=..., state_dict=..., quantization_config=...)``.

transformers quantizes while it loads, tensor by tensor; handing it the model's own tensors instead of a checkpoint
means no temporary copy on disk whose memory-mapped pages would stay resident beside the quantized copy (that reload
peaked at 1.6-1.9x the fp32 model bytes). Tensors that stay unquantized are shared, not copied, and a quantizer
that replaces weights after loading (GPTQ) frees each original as it goes: nothing else owns them by then.
"""

from __future__ import annotations

from collections import Counter

import torch

from kick_hub.compress.memory import drop_pages, release_freed_memory, unmap_large_frees


def layer_features(layer: torch.nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a layer a quantizer replaces (Linear, transformers' Conv1D, Conv2d)."""
    from transformers.pytorch_utils import Conv1D

    if isinstance(layer, Conv1D):
        return layer.weight.shape[0], layer.weight.shape[1]
    if isinstance(layer, torch.nn.Linear):
        return layer.in_features, layer.out_features
    return layer.weight[0].numel(), layer.weight.shape[0]


def quantize_in_memory(model, quantization_config, dtype: torch.dtype = torch.float32):
    """Return ``model`` quantized by ``quantization_config``; the input's weights are released (moved to meta).

    With ``dtype`` below the model's, parameters are cast in place first, one tensor at a time, each original's
    pages dropped as soon as it is cast: a model loaded from safetensors is a memory-mapped file whose read pages stay
    resident until every tensor in it is gone, so casting alone peaked at the fp32 file plus the cast copy (1.5x).
    """
    unmap_large_frees()
    owners = Counter(t.untyped_storage().data_ptr() for t in model.state_dict().values())
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            old = p.data
            p.data = old.to(dtype)
            if owners[old.untyped_storage().data_ptr()] == 1:  # no other tensor of the model views these pages
                drop_pages(old)
            del old
    release_freed_memory()
    source, generation_config = model.name_or_path, model.generation_config
    state_dict = model.state_dict()
    model.to("meta")  # the input model is spent either way: the caller works with the returned copy
    # Quantizers that calibrate (GPTQ) run forward passes after loading, inside from_pretrained, and replace each
    # weight as they go; the originals must then have no owner left but the new model. transformers keeps our dict
    # for the whole call, so the first forward pass (loading is done by then) empties it.
    def release_originals(*_) -> None:
        state_dict.clear()
        hook.remove()  # once: a global hook would keep every module call off torch's fast path

    hook = torch.nn.modules.module.register_module_forward_pre_hook(release_originals)
    try:
        quantized = type(model).from_pretrained(None, config=model.config, state_dict=state_dict,
                                                quantization_config=quantization_config, device_map="cpu",
                                                dtype=dtype)
    finally:
        hook.remove()
        state_dict.clear()
        release_freed_memory()
    quantized.name_or_path = source
    quantized.generation_config = generation_config
    return quantized
