"""``--storage sparse``: a pruned variant saved as compressed-tensors' sparse-bitmask layout, loadable by
``AutoModelForCausalLM.from_pretrained`` once this module is imported.

Layout (byte-compatible with compressed-tensors <= 0.14 "sparse-bitmask"): every pruned layer's ``<m>.weight``
(a Linear's ``[out, in]`` or a GPT-2 Conv1D's ``[in, out]``, in its stored orientation) is stored as
``<m>.compressed`` (its non-zero values, row-major), ``<m>.bitmask`` (uint8, ``numpy.packbits`` of the non-zero mask
along rows, little bit order), ``<m>.shape`` and ``<m>.row_offsets``; everything else is stored as is.
At 50 % sparsity in float32 a matrix takes 0.5 + 1/32 of its dense bytes; embeddings stay dense.

Why not compressed-tensors itself: its sparse compressors were removed in 0.15, and transformers 5 requires >= 0.15
and drops ``sparsity_config`` (a sparse checkpoint then loads with silently random weights). This module registers
the format with transformers' public quantizer API instead (``register_quantization_config`` /
``register_quantizer``), so loading decompresses on the fly through transformers' own weight-conversion step:

    import kick_hub.formats.sparse_bitmask  # registers "sparse-bitmask"
    model = AutoModelForCausalLM.from_pretrained("variant-dir")   # a plain dense model, identical logits

``kick`` imports it whenever a config names the format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers.core_model_loading import ConversionOps, _IdentityOp
from transformers.quantizers import HfQuantizer, register_quantization_config, register_quantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

FORMAT = "sparse-bitmask"
PARTS = ("compressed", "bitmask", "shape", "row_offsets")


def compress_matrix(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """A CPU matrix ``weight`` ``[rows, cols]`` in the sparse-bitmask layout (compressed-tensors <= 0.14,
    ``compressors/sparse_compressors/sparse_bitmask.py``): ``compressed`` ``[nnz]`` (its non-zero values,
    row-major, ``weight``'s dtype), ``bitmask`` uint8 ``[rows, ceil(cols / 8)]`` (the non-zero mask packed along
    rows, little bit order), ``shape`` int64 ``[2]`` and ``row_offsets`` int64 ``[rows]`` (index in ``compressed``
    of each row's first value). A CUDA tensor raises TypeError (the mask goes through numpy)."""
    mask = weight != 0
    counts = mask.sum(-1)
    return {"compressed": weight[mask].contiguous(),
            "bitmask": torch.from_numpy(np.packbits(mask.numpy(), axis=-1, bitorder="little")),
            "shape": torch.tensor(list(weight.shape)), "row_offsets": torch.cumsum(counts, 0) - counts}


def decompress_matrix(compressed: torch.Tensor, bitmask: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """The dense ``[rows, cols]`` matrix (``compressed``'s dtype) back from ``compress_matrix``'s ``compressed``
    ``[nnz]``, ``bitmask`` uint8 ``[rows, ceil(cols / 8)]`` and ``shape`` ``[2]`` (``row_offsets`` is not needed):
    zeros, with the values written row-major where the mask is set. Raises RuntimeError when ``compressed`` does
    not hold exactly one value per set mask bit, ValueError when the mask cannot take ``shape``."""
    shape = [int(s) for s in shape]
    mask = np.unpackbits(bitmask.numpy(), axis=-1, count=shape[-1], bitorder="little").astype(bool)
    out = torch.zeros(shape, dtype=compressed.dtype)
    out[torch.from_numpy(mask.reshape(shape))] = compressed
    return out


def save(model, directory: str | Path, layers: list[str]) -> None:
    """Write ``model`` into ``directory`` (``save_pretrained`` for config / generation config, then the weights
    replaced by the sparse layout for the Linear / Conv1D modules named in ``layers``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    model.save_pretrained(directory, safe_serialization=True)
    for f in list(directory.glob("*.safetensors")) + list(directory.glob("*.safetensors.index.json")):
        f.unlink()
    modules = dict(model.named_modules())
    tensors, replaced = {}, set()
    for name in layers:
        for part, value in compress_matrix(modules[name].weight.detach().cpu()).items():
            tensors[f"{name}.{part}"] = value
        replaced.add(f"{name}.weight")
    tied = set(getattr(model, "_tied_weights_keys", None) or {}) if model.config.tie_word_embeddings else set()
    for key, value in model.state_dict().items():
        if key not in replaced and key not in tied:
            tensors[key] = value.detach().cpu().contiguous()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((directory / "config.json").read_text())
    config["quantization_config"] = {"quant_method": FORMAT, "format": FORMAT, "targets": sorted(layers)}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def is_sparse(directory: str | Path) -> bool:
    """Whether ``directory``'s config.json names this format (``quantization_config.quant_method`` is
    ``sparse-bitmask``); False, not an error, when config.json is missing or is not valid JSON."""
    try:
        config = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (config.get("quantization_config") or {}).get("quant_method") == FORMAT


@register_quantization_config(FORMAT)
class SparseBitmaskConfig(QuantizationConfigMixin):
    """config.json's ``quantization_config`` of a sparse-bitmask checkpoint (nothing is quantized)."""

    def __init__(self, format: str = FORMAT, targets: list[str] | None = None, **kwargs) -> None:
        self.quant_method = FORMAT
        self.format, self.targets = format, targets
        self.dequantize = True  # transformers then routes every weight through the "dequantize" load op


class SparseBitmaskDecompress(ConversionOps):
    """Load op: the four stored parts of a matrix -> its dense weight; other tensors pass through."""

    def __init__(self, hf_quantizer) -> None:
        self.hf_quantizer = hf_quantizer

    def convert(self, input_dict, source_patterns=None, target_patterns=None, full_layer_name=None, **kwargs):
        """``{full_layer_name: dense weight}`` in the dtype of the model's parameter (``kwargs["model"]``): the
        matrix rebuilt by ``decompress_matrix`` when ``input_dict`` holds the stored parts, else its ``weight``
        passed through. Raises KeyError when it holds neither."""
        parts = {k: (v[0] if isinstance(v, list) else v) for k, v in input_dict.items()}
        weight = (decompress_matrix(parts["compressed"], parts["bitmask"], parts["shape"]) if "compressed" in parts
                  else parts["weight"])
        return {full_layer_name: weight.to(kwargs["model"].get_parameter(full_layer_name).dtype)}

    @property
    def reverse_op(self):
        """The save-direction op of transformers' conversion API: identity (a loaded model is dense, and it is
        written back in the sparse layout only by ``save``)."""
        return _IdentityOp()


@register_quantizer(FORMAT)
class SparseBitmaskQuantizer(HfQuantizer):
    """Loads sparse-bitmask checkpoints as plain dense models (re-save with ``save``, not ``save_pretrained``)."""

    requires_calibration = True  # only pre-compressed checkpoints; nothing is done to a dense model
    serialized_names = {"weight": ["weight", *PARTS]}

    def is_serializable(self) -> bool:
        """False: transformers' ``save_pretrained`` then raises ValueError for a model loaded from this format
        (it would write dense weights under a sparse config); use ``save``."""
        return False

    @property
    def is_trainable(self) -> bool:
        """True: the loaded weights are ordinary dense parameters (the Trainer accepts the model)."""
        return True

    def get_load_operations(self):
        """Load-op classes by mode for transformers (``HfQuantizer.get_load_operations``): only ``dequantize``
        (``SparseBitmaskConfig.dequantize`` is set), the op ``SparseBitmaskDecompress``."""
        return {"dequantize": SparseBitmaskDecompress}
