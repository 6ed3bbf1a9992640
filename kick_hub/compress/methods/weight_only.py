"""Round-to-nearest weight-only quantization through transformers' own quantizer configs (no calibration):

- ``int8``: torchao ``Int8WeightOnlyConfig`` via ``TorchAoConfig`` (runs on CPU);
- ``bnb-int8``: bitsandbytes LLM.int8 (Dettmers et al., 2022) via ``BitsAndBytesConfig(load_in_8bit=True)``;
- ``nf4``: bitsandbytes NF4 (Dettmers et al., 2023, QLoRA section 3) via
  ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")``.

transformers applies these while loading; ``hf_quantize.quantize_in_memory`` hands it the loaded model's tensors.
``check_layers`` states, before any work, what the CPU kernels need of the layers' shapes. On CPUs with AVX512-BF16
bitsandbytes repacks NF4 weights in place at the first forward pass, and its own undo for saving leaves the absmax
scales in the packed layout; ``restore_4bit_layout`` undoes the repacking fully, so a variant saved after use is the
model that ran.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

import torch

from kick_hub.compress.methods.hf_quantize import layer_features, quantize_in_memory

if TYPE_CHECKING:
    from kick_hub.compress.spec import CompressSpec

INSTALL = {"int8": "pip install torchao", "bnb-int8": "pip install bitsandbytes", "nf4": "pip install bitsandbytes"}


def quantization_config(method: str) -> object:
    """The transformers quantization config (``TorchAoConfig`` / ``BitsAndBytesConfig``) for ``method``."""
    from transformers import BitsAndBytesConfig, TorchAoConfig

    if method == "int8":
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    if method == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)


def check_available(method: str) -> None:
    """Fail early with an ImportError naming the install command when ``method``'s package (torchao or
    bitsandbytes) is missing."""
    module = "torchao" if method == "int8" else "bitsandbytes"
    try:
        __import__(module)
    except ImportError as e:
        raise ImportError(f"{method} needs {module}: {INSTALL[method]}") from e


# bitsandbytes' CPU 4-bit kernel (``_convert_weight_packed_for_cpu``, taken on CPUs with AVX512-BF16) regroups each
# weight in blocks of 32 output rows and reshapes the absmax scales to [in_features / blocksize, out_features]
NF4_BLOCK_N = 32
NF4_BLOCKSIZE = 64  # bitsandbytes' Params4bit quantization block (BitsAndBytesConfig sets none)


def quantized_layers(model: torch.nn.Module, method: str) -> dict[str, torch.nn.Module]:
    """The layers ``method`` will quantize, by module name, as transformers' quantizers pick them: torchao every
    ``nn.Linear`` but the output embedding, bitsandbytes every ``nn.Linear`` / ``Conv1D`` but the output embedding,
    tied weights and the model's fp32 modules."""
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = get_keys_to_not_convert(model) + list(getattr(model, "_keep_in_fp32_modules", None) or [])
    types = (torch.nn.Linear,) if method == "int8" else (torch.nn.Linear, Conv1D)
    return {name: m for name, m in model.named_modules()
            if isinstance(m, types) and should_convert_module(name, skip)}


def check_layers(model: torch.nn.Module, spec: CompressSpec) -> None:
    """Fail, before any work, when the method's CPU kernel cannot run one of the layers it would quantize, or when
    it would pass over a decoder-block layer. torchao's int8 weight-only and bitsandbytes' LLM.int8 take any shape
    (per-row scales); bitsandbytes' NF4 kernel for CPUs with AVX512-BF16 needs out_features divisible by 32 and
    in_features by the 64-weight quantization block, else the layer quantizes and then fails at its first forward
    pass. A block layer the quantizer passes over would stay float32 under the label (torchao takes nn.Linear only,
    so a GPT-2 "int8" variant would be the dense model). The ValueError names the layers and the rule."""
    if spec.method == "nf4":
        _check_nf4_shapes(model, spec)
    from kick_hub.compress.blockwise import prunable_module_names

    taken = quantized_layers(model, spec.method)
    block_layers = prunable_module_names(model)
    skipped = [n for n in block_layers if n not in taken]
    if skipped:
        modules = dict(model.named_modules())
        types = sorted({type(modules[n]).__name__ for n in skipped})
        raise ValueError(f"method: {spec.method} would leave {len(skipped)} of {type(model).__name__}'s "
                         f"{len(block_layers)} block layers unquantized ({', '.join(types)}: {skipped[0]}, ...)"
                         + ("; torchao quantizes nn.Linear only (use bnb-int8)" if spec.method == "int8" else ""))


def _check_nf4_shapes(model: torch.nn.Module, spec: CompressSpec) -> None:
    rules = {f"out_features must be a multiple of {NF4_BLOCK_N}": set(),
             f"in_features must be a multiple of the {NF4_BLOCKSIZE}-weight block": set()}
    out_rule, in_rule = rules
    for name, layer in quantized_layers(model, spec.method).items():
        fin, fout = layer_features(layer)
        name = re.sub(r"\.\d+\.", ".*.", name)  # one entry per layer of the repeated blocks
        if fout % NF4_BLOCK_N:
            rules[out_rule].add(f"{name} ({fout})")
        if fin % NF4_BLOCKSIZE:
            rules[in_rule].add(f"{name} ({fin})")
    if any(rules.values()):
        raise ValueError("model: bitsandbytes' CPU NF4 kernel cannot run these layers: "
                         + "; ".join(f"{rule}; not: {', '.join(sorted(layers))}"
                                     for rule, layers in rules.items() if layers))


def restore_4bit_layout(module: torch.nn.Module, prefix: str = "", keep_vars: bool = False) -> None:
    """Undo bitsandbytes' CPU repacking of one ``Linear4bit`` in place (a no-op when it has not run), so the layer
    holds the checkpoint layout: the weight as quantized, the absmax scales flat in float32, as bf16 values (the
    repacked kernel computed with bf16 scales, and so does a reloaded model on the same CPU). The next forward pass
    repacks it. Its signature is a ``register_state_dict_pre_hook`` hook's; bitsandbytes' own undo (run from
    ``_save_to_state_dict``) restores the weight but leaves non-nested absmax in the packed [in/blocksize, out]
    layout, which reads back as wrong scales."""
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    if state is None or not getattr(state, "packing_format_for_cpu", False):
        return
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    nested, packed_absmax = state.original_nested, state.absmax
    module.weight.data, state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
    if not nested:
        state.absmax = packed_absmax.T.reshape(-1).to(torch.float32)
    module.weight.quant_state = state


def _4bit_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """bitsandbytes' 4-bit layers in ``model`` (none when bitsandbytes was never imported)."""
    bnb = sys.modules.get("bitsandbytes")
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)] if bnb is not None else []


def restore_4bit_layouts(model: torch.nn.Module) -> None:
    """``restore_4bit_layout`` on every bitsandbytes 4-bit layer of ``model``."""
    for module in _4bit_layers(model):
        restore_4bit_layout(module)


def quantize(model: torch.nn.Module, spec: CompressSpec) -> torch.nn.Module:
    """Quantize ``model`` with the method's quantization config (CPU, round to nearest: int8 per output row, NF4
    per 64-weight block); returns the quantized model, whose 4-bit layers (nf4) restore their checkpoint layout
    whenever a state dict is taken. The input model's weights are released (moved to the meta device). An
    ImportError naming the install command when the method's package is missing."""
    check_available(spec.method)
    quantized = quantize_in_memory(model, quantization_config(spec.method), torch.float32)
    for module in _4bit_layers(quantized):
        module.register_state_dict_pre_hook(restore_4bit_layout)
    return quantized


def apply(model, spec, calibration=None, progress: bool = True, device=None):
    """The registry entry: ``quantize`` (no calibration, no progress bar). Round to nearest runs on the CPU whatever
    ``device`` is (``compute_device``): it is one pass over the weights, with nothing for an accelerator to speed up."""
    return quantize(model, spec)


def compute_device(spec, device: str) -> str:
    """Where these methods compute: always the CPU (transformers' quantizers are run with ``device_map="cpu"``)."""
    return "cpu"


def before_save(model) -> None:
    """The registry's save hook: ``restore_4bit_layouts``, so NF4 layers repacked by a forward pass are saved as
    quantized, not half-restored."""
    restore_4bit_layouts(model)
