"""GPTQ quantization through the ecosystem's own path: transformers ``GPTQConfig`` -> optimum -> GPTQModel, on CPU.

The calibration ids are handed to optimum pre-tokenized (so a run is reproducible from the saved ids) and removed
from the config before saving, so ``config.json`` never carries the calibration data. GPTQModel packs 2/3/4/8-bit
weights; symmetric checkpoints are saved in the v1 ``gptq`` format auto-gptq readers expect (see ``to_v1_format``).
"""

from __future__ import annotations

import torch

from kick_hub.compress.hf_quantize import quantize_in_memory

# dtype of the calibration forward passes: CPUs have fast bf16 matmuls and no fast fp16 ones (4-bit world model:
# 23 s in bf16, 108 s in fp16, 38 s in fp32, which would also double the working memory)
WORK_DTYPE = torch.bfloat16
INSTALL = "pip install 'kick-hub[gptq]'  (optimum>=2.3 and gptqmodel==7.6.0, the newest accepting torch 2.13)"


def check_available() -> None:
    """Fail early, naming the install command, when the GPTQ stack is missing."""
    missing = []
    for module in ("optimum", "gptqmodel"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"gptq needs {', '.join(missing)}: {INSTALL}")


def quantize(model, calibration: torch.Tensor, spec):
    """Quantize a loaded model; returns the GPTQ model (weights packed, ready for ``save_pretrained``) in fp16, the
    dtype GPTQ checkpoints are read in. The input model's weights are cast in place to ``WORK_DTYPE`` and released
    once handed over."""
    check_available()
    from transformers import AutoTokenizer, GPTQConfig

    source = getattr(model, "name_or_path", None)
    dataset = [{"input_ids": row[None], "attention_mask": torch.ones_like(row)[None]} for row in calibration]
    tokenizer = AutoTokenizer.from_pretrained(source) if source else None
    config = GPTQConfig(bits=spec.bits, dataset=dataset, tokenizer=tokenizer, group_size=spec.group_size,
                        desc_act=spec.desc_act, sym=spec.sym, damp_percent=spec.damp,
                        model_seqlen=calibration.shape[1], batch_size=1)
    try:
        quantized = quantize_in_memory(model, config, WORK_DTYPE)
    except NameError as e:  # optimum without gptqmodel fails with `NameError: QuantizeConfig`
        raise ImportError(f"gptq: optimum could not reach GPTQModel ({e}): {INSTALL}") from e
    _to_fp16(quantized)
    quantized.config.quantization_config.dataset = None  # never ship calibration data in config.json
    return to_v1_format(quantized)


def _to_fp16(model) -> None:
    """Cast the quantized model's float tensors (scales, embeddings, norms) to fp16 in place; the packed integer
    weights are untouched. ``model.to(dtype)`` refuses GPTQ models; non-persistent buffers (rotary frequencies)
    keep their precision, as they are recomputed on load anyway."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.data = p.data.to(torch.float16)
        for module in model.modules():
            for name, buf in module._buffers.items():
                if buf is not None and buf.is_floating_point() and name not in module._non_persistent_buffers_set:
                    module._buffers[name] = buf.to(torch.float16)
    model.config.dtype = torch.float16


def to_v1_format(model):
    """GPTQModel works in its ``gptq_v2`` layout; symmetric checkpoints are converted back to ``gptq`` (v1), the
    format auto-gptq and older readers load (optimum's own ``save`` does this; transformers' save path does not).
    Asymmetric checkpoints stay ``gptq_v2`` (v1 cannot represent them). Call right before saving."""
    from gptqmodel.utils.model import hf_convert_gptq_v2_to_v1_format

    q = model.hf_quantizer.optimum_quantizer
    model, converted = hf_convert_gptq_v2_to_v1_format(model, q.sym, q.bits, q.quant_linear, q.format, q.meta)
    if converted:
        model.config.quantization_config.format = "gptq"
        model.config.quantization_config.checkpoint_format = "gptq"
    return model
