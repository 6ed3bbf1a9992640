"""AWQ (Lin et al., 2024, "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration",
section 3): per-channel scales searched on calibration activations protect the salient weights before 4-bit round to
nearest, through GPTQModel's own AWQ pipeline (ModelCloud/GPTQModel 7.6 ``gptqmodel/quantization/awq``,
``AWQConfig`` with the ``gemm`` checkpoint format, the AutoAWQ layout transformers and vLLM load).

GPTQModel 7.6 runs AWQ on CUDA only (its GEMM kernels, ``AwqGEMMLinear.SUPPORTS_DEVICES``, are CUDA / ROCm): the
method is refused before any work where CUDA is absent or ``--device`` is not a CUDA device (``check_available``,
``check_device``). GPTQModel loads the checkpoint itself (``GPTQModel.load(path, quantize_config=AWQConfig(...))``,
the model held in CPU memory, each block moved to the ``device`` of the config), quantizes on the calibration ids
(pre-tokenized rows, as the other calibrated methods use) and writes the checkpoint with its own ``save``; the
variant keeps kick-hub's manifest and calibration ids beside it.

Untested in this repository's CI (no CUDA): written from GPTQModel 7.6's sources; ``benchmarks/gpu_check.py`` runs it
on a CUDA machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from kick_hub.compress.spec import CompressSpec

INSTALL = "pip install 'kick-hub[gptq]'  (gptqmodel==7.6.0)"
AWQ_BITS = (4,)  # GPTQModel's AWQ GEMM kernel (AwqGEMMLinear.SUPPORTS_BITS)
AWQ_GROUP_SIZES = (-1, 16, 32, 64, 128)  # AwqGEMMLinear.SUPPORTS_GROUP_SIZE


def check_available(method: str = "awq") -> None:
    """Fail before any work: an ImportError naming the install command without gptqmodel, a ValueError naming
    ``method`` when this machine has no CUDA device (GPTQModel 7.6 runs AWQ on CUDA only)."""
    try:
        import gptqmodel  # noqa: F401
    except ImportError as e:
        raise ImportError(f"awq needs gptqmodel: {INSTALL}") from e
    if not torch.cuda.is_available():
        raise ValueError("method: awq runs only on CUDA (GPTQModel 7.6 quantizes and packs AWQ with CUDA kernels) "
                         "and this machine has no CUDA device; use gptq, which runs on CPU, or a CUDA machine")


def check_device(spec: CompressSpec, device: str) -> None:
    """Refuse a non-CUDA compute device (a ValueError naming ``device``): GPTQModel's AWQ needs CUDA."""
    if not str(device).startswith("cuda"):
        raise ValueError(f"device: awq runs only on CUDA (GPTQModel 7.6's AWQ kernels), got {device!r}; use --device "
                         "cuda or cuda:N")


def check_layers(model: torch.nn.Module, spec: CompressSpec) -> None:
    """Fail, before calibration, when GPTQModel's AWQ GEMM kernel cannot take a decoder-block layer: bits and group
    size from its supported sets, ``group_size`` dividing every layer's in_features, and the kernel's own
    ``validate`` for each shape on CUDA. The ValueError names the layers and the rule."""
    from gptqmodel.models._const import DEVICE
    from gptqmodel.nn_modules.qlinear.gemm_awq import AwqGEMMLinear

    from kick_hub.compress.blockwise import decoder_layers, linear_layers
    from kick_hub.compress.methods.hf_quantize import layer_features

    if spec.bits not in AWQ_BITS:
        raise ValueError(f"bits: awq is {AWQ_BITS[0]}-bit (GPTQModel's AWQ GEMM kernel), got {spec.bits!r}")
    if spec.group_size not in AWQ_GROUP_SIZES:
        raise ValueError(f"group_size: awq takes one of {list(AWQ_GROUP_SIZES)}, got {spec.group_size}")
    bad: dict[str, set[str]] = {}
    for block in decoder_layers(model):
        for name, layer in linear_layers(block).items():
            fin, fout = layer_features(layer)
            if spec.group_size != -1 and fin % spec.group_size:
                bad.setdefault(f"group_size: {spec.group_size} must divide in_features", set()).add(f"{name} ({fin})")
            ok, err = AwqGEMMLinear.validate(bits=spec.bits, group_size=spec.group_size, desc_act=False, sym=spec.sym,
                                             in_features=fin, out_features=fout, pack_dtype=torch.int32,
                                             dtype=torch.float16, device=DEVICE.CUDA)
            if not ok:
                bad.setdefault(f"model: GPTQModel's AWQ kernel refuses these layers ({err})", set()).add(name)
    if bad:
        raise ValueError("; ".join(f"{rule}; not: {', '.join(sorted(layers))}" for rule, layers in bad.items()))


def quantize(model: torch.nn.Module, calibration: torch.Tensor, spec: CompressSpec, device: str) -> torch.nn.Module:
    """AWQ-quantize the checkpoint ``model`` was loaded from (``model.name_or_path``) with GPTQModel on ``device``
    (a CUDA device) on ``calibration`` token ids ``[nsamples, seqlen]``: ``spec.bits`` (4) per weight,
    ``spec.group_size`` input columns per scale, zero points unless ``spec.sym``. The input model's weights are
    released (moved to the meta device); GPTQModel loads its own copy in the model's 16-bit dtype (float16 for a
    float32 checkpoint). Returns the quantized transformers model, whose ``kick_save_pretrained(directory)`` is
    GPTQModel's ``save`` (the AWQ checkpoint layout and quantization config)."""
    check_available()
    check_device(spec, device)
    from gptqmodel import GPTQModel
    from gptqmodel.quantization.config import AWQConfig

    path = model.name_or_path
    dtype = model.dtype if model.dtype in (torch.float16, torch.bfloat16) else torch.float16
    model.to("meta")  # GPTQModel reads the checkpoint itself; the loaded copy is not needed
    config = AWQConfig(bits=spec.bits, group_size=spec.group_size, sym=spec.sym, device=device,
                       offload_to_disk=False)
    qmodel = GPTQModel.load(path, quantize_config=config, dtype=dtype)
    rows = [{"input_ids": row.tolist(), "attention_mask": [1] * len(row)} for row in calibration]
    qmodel.quantize(rows, batch_size=1, calibration_sort=None)
    quantized = qmodel.model
    quantized.kick_save_pretrained = lambda directory: qmodel.save(str(directory))
    quantized.kick_checkpoint_state = True  # GPTQModel's save writes the checkpoint layout (gptq.check_savable)
    quantized.kick_compute_device = device
    return quantized


def apply(model, spec, calibration, progress: bool = True, device: str | None = None):
    """The registry entry: ``quantize`` on ``device`` (None: refused, AWQ needs a CUDA device)."""
    return quantize(model, calibration, spec, "cpu" if device is None else str(device))
