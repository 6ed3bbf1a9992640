"""Round-to-nearest weight-only quantization through transformers' own quantizer configs (no calibration):

- ``int8``: torchao ``Int8WeightOnlyConfig`` via ``TorchAoConfig`` (runs on CPU);
- ``bnb-int8``: bitsandbytes LLM.int8 via ``BitsAndBytesConfig(load_in_8bit=True)``;
- ``nf4``: bitsandbytes NF4 via ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")``.

transformers applies these while loading; ``hf_quantize.quantize_in_memory`` hands it the loaded model's tensors.
bitsandbytes repacks 4-bit weights in place on the first forward pass, so the variant is saved before any forward
runs.
"""

from __future__ import annotations

import torch

from kick_hub.compress.hf_quantize import quantize_in_memory

INSTALL = {"int8": "pip install torchao", "bnb-int8": "pip install bitsandbytes", "nf4": "pip install bitsandbytes"}


def quantization_config(method: str):
    from transformers import BitsAndBytesConfig, TorchAoConfig

    if method == "int8":
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    if method == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)


def check_available(method: str) -> None:
    module = "torchao" if method == "int8" else "bitsandbytes"
    try:
        __import__(module)
    except ImportError as e:
        raise ImportError(f"{method} needs {module}: {INSTALL[method]}") from e


def quantize(model, spec):
    """Quantize ``model`` with the method's quantization config (CPU); returns the quantized model. The input
    model's weights are released (moved to the meta device)."""
    check_available(spec.method)
    return quantize_in_memory(model, quantization_config(spec.method), torch.float32)
