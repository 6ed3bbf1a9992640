"""GGUF quantization through llama.cpp's own quantizer (``llama_model_quantize``): ``kick compress --method gguf
--quant-type Q4_K_M``, the files people run in llama.cpp, Ollama and LM Studio.

The source is a Hugging Face checkpoint (written first as an F32 GGUF by ``kick_hub.formats.gguf_writer``) or a GGUF
file (requantized; a quantized source is recorded as such). The variant is a directory holding
``<model>-<QUANT_TYPE>.gguf``, ``kick_manifest.json`` and the calibration ids; ``kick evaluate --model DIR`` (or the
.gguf file) runs it in the llama.cpp backend (``kick_hub.backends.llamacpp``).

Importance matrix: computed from kick's calibration ids (the ids Wanda, SparseGPT and GPTQ use,
``kick_hub.compress.calibration``) with forward hooks on every linear layer of the decoder blocks of the model in
transformers (the checkpoint, or the GGUF loaded by transformers, dequantised): per layer, the mean over calibration
tokens of the squared input activation of each input column, keyed by the GGUF tensor name
(``get_tensor_name_map``), what llama.cpp's ``llama-imatrix`` computes. It is handed to the quantizer as
``params.imatrix`` (an array of ``llama_model_imatrix_data``). It is used for every type whose kernels read one
(everything but F16 / BF16 / Q8_0); the types in ``NEEDS_IMATRIX`` are refused without one (llama.cpp returns 1 with
the reason only in its log for most, and silently writes q3_K for IQ3_XXS).

Fallbacks: a k- or i-quant needs rows divisible by 256 (its super-block); llama.cpp quantizes other tensors to a
fallback type (Q4_K -> Q5_0, Q6_K -> Q8_0, IQ4_XS -> IQ4_NL ...) and logs each. The manifest records them
(``fallbacks``) with the count of tensors per stored type (``tensor_types``), read back from the written file.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import time
from pathlib import Path

__all__ = ["QUANT_TYPES", "DEFAULT_GRID", "NEEDS_IMATRIX", "USES_NO_IMATRIX", "quantize_gguf", "compute_imatrix",
           "make_variant", "check_quant_type", "check_available", "gguf_file_of", "read_tensor_types"]

# quant type (llama-quantize's name) -> llama_ftype
QUANT_TYPES = {"F32": 0, "F16": 1, "BF16": 32, "Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q5_K_S": 16, "Q5_1": 9,
               "Q5_0": 8, "Q4_K_M": 15, "Q4_K_S": 14, "Q4_1": 3, "Q4_0": 2, "Q3_K_L": 13, "Q3_K_M": 12,
               "Q3_K_S": 11, "Q2_K": 10, "Q2_K_S": 21, "IQ4_XS": 30, "IQ4_NL": 25, "IQ3_M": 27, "IQ3_S": 26,
               "IQ3_XS": 22, "IQ3_XXS": 23, "IQ2_M": 29, "IQ2_S": 28, "IQ2_XS": 20, "IQ2_XXS": 19, "IQ1_M": 31,
               "IQ1_S": 24}
DEFAULT_GRID = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_XS")
# types some of whose tensors llama.cpp quantizes to IQ3_XXS / IQ2_* / IQ1_* or Q2_K-in-Q2_K_S, which need an
# importance matrix (llama-quant.cpp: tensor_requires_imatrix; IQ3_XXS alone would silently become q3_K)
NEEDS_IMATRIX = ("IQ3_XXS", "IQ3_XS", "IQ3_M", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "Q2_K_S")
USES_NO_IMATRIX = ("F32", "F16", "BF16", "Q8_0")  # kernels that read no importance matrix
INSTALL = 'pip install -e ".[gguf]"   (llama-cpp-python builds from source: docs/gguf.md)'


def check_quant_type(quant_type: str | None) -> str:
    """``quant_type`` when it is one of ``QUANT_TYPES``; ValueError naming ``quant_type`` and the allowed values."""
    if quant_type not in QUANT_TYPES:
        raise ValueError(f"quant_type: must be one of {list(QUANT_TYPES)} for gguf, got {quant_type!r}")
    return quant_type


def check_available(method: str = "gguf") -> None:
    """ImportError naming the install command when llama-cpp-python or the gguf package is missing."""
    for module in ("llama_cpp", "gguf"):
        try:
            __import__(module)
        except ImportError as e:
            raise ImportError(f"{method} needs {module}: {INSTALL}") from e


def check_layers(model, spec) -> None:
    """Refuse, before any work, a checkpoint whose family kick does not convert to GGUF
    (``gguf_writer.check_family``)."""
    from kick_hub.formats.gguf_writer import check_family

    check_family(model.config)


def compute_device(spec, device: str) -> str:
    """llama.cpp's quantizer runs on the CPU."""
    return "cpu"


def apply(model, spec, calibration=None, progress: bool = True, device=None):
    """The registry's in-memory entry, which a GGUF cannot take: the method writes a file (``make_variant``)."""
    raise ValueError("method: gguf writes a GGUF file, not a model in memory; use `kick compress --method gguf "
                     "--quant-type TYPE` (compress.make_variant)")


def gguf_file_of(name: str) -> Path | None:
    """The GGUF file ``name`` stands for: a ``.gguf`` path, or a directory without ``config.json`` holding exactly
    one ``.gguf`` (a gguf variant); None otherwise."""
    from kick_hub.backends.llamacpp import find_gguf

    return find_gguf(name)


# ----------------------------------------------------------------- importance matrix
def compute_imatrix(model, ids, arch_member: str, progress: bool = False) -> tuple[dict, int]:
    """``({GGUF tensor name: float32 array [in_features]}, tokens)``: the mean squared input activation per input
    column of every ``nn.Linear`` in ``model``'s decoder blocks over the calibration ids ``[nsamples, seqlen]`` (one
    row per forward pass), keyed by the tensor's GGUF name (``gguf.get_tensor_name_map`` of ``arch_member``, a
    ``gguf.MODEL_ARCH`` member name). Layers without a GGUF name are left out."""
    import gguf
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from kick_hub.compress.blockwise import decoder_layers

    n_blocks = len(decoder_layers(model))
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch_member), n_blocks)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []

    def hook_for(key: str):
        def hook(module, inputs):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[key] = sums.get(key, 0) + (x * x).sum(0)
            counts[key] = counts.get(key, 0) + x.shape[0]
        return hook

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            key = name_map.get_name(name + ".weight", try_suffixes=(".weight",))
            if key is not None and key.startswith("blk."):
                hooks.append(module.register_forward_pre_hook(hook_for(key)))
    try:
        with torch.inference_mode():
            for row in tqdm(ids, desc="imatrix", unit="row", disable=not progress):
                model(input_ids=row[None, :].to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    out = {k: (sums[k] / counts[k]).cpu().numpy().astype(np.float32) for k in sorted(sums)}
    return out, int(ids.numel())


# ----------------------------------------------------------------- the quantizer
_FALLBACK = re.compile(r"warning:\s*(\S+)\s+- ncols\s+(\d+) not divisible by\s+(\d+) \(required for type\s+(\S+)\)"
                       r".*?-> falling back to\s+(\S+)", re.S)


def _imatrix_array(imatrix: dict):
    """A null-terminated ``llama_model_imatrix_data`` array over ``imatrix`` and the buffers it points into (keep
    both alive until the quantizer returns)."""
    import llama_cpp
    import numpy as np

    keep = []
    arr = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
    for k, (name, values) in enumerate(imatrix.items()):
        data = np.ascontiguousarray(values, dtype=np.float32)
        keep.append(data)
        arr[k].name = name.encode()
        arr[k].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[k].size = data.size
    arr[len(imatrix)].name = None
    return arr, keep


def quantize_gguf(source: str | Path, output: str | Path, quant_type: str, imatrix: dict | None = None,
                  threads: int | None = None) -> dict:
    """Quantize the GGUF ``source`` to ``quant_type`` at ``output`` with ``llama_model_quantize`` (requantizing a
    quantized source is allowed and recorded), passing ``imatrix`` (``compute_imatrix``) when given. Returns
    ``{"fallbacks": [{tensor, ncols, block, wanted, used}], "seconds"}``. ValueError naming ``quant_type`` for an
    unknown type or one of ``NEEDS_IMATRIX`` without an importance matrix (before any work), and llama.cpp's own
    reason (from its log) when it refuses; written through a temp file and renamed."""
    import os
    import tempfile

    check_quant_type(quant_type)
    if quant_type in NEEDS_IMATRIX and not imatrix:
        raise ValueError(f"quant_type: {quant_type} needs an importance matrix (llama.cpp refuses it, or for IQ3_XXS "
                         f"silently writes q3_K, without one); kick computes it from the calibration ids")
    check_available()
    import llama_cpp

    from kick_hub.backends.llamacpp import _CAPTURE, _LOG, _quiet_llama, llama_threads

    _quiet_llama()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant_type]
    params.nthread = llama_threads(threads)
    params.allow_requantize = True
    keep = None
    if imatrix and quant_type not in USES_NO_IMATRIX:
        arr, keep = _imatrix_array(imatrix)
        params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        keep = (arr, keep)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    _LOG.clear()
    _CAPTURE[0] = True
    start = time.perf_counter()
    try:
        rc = llama_cpp.llama_model_quantize(str(source).encode(), tmp.encode(), ctypes.byref(params))
    finally:
        _CAPTURE[0] = False
    seconds = time.perf_counter() - start
    log = "".join(_LOG)
    del keep
    if rc != 0:
        Path(tmp).unlink(missing_ok=True)
        reasons = [ln.strip() for ln in log.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
        raise ValueError(f"quant_type: llama.cpp could not quantize to {quant_type} "
                         f"({reasons[-1] if reasons else f'returned {rc}'})")
    os.replace(tmp, output)
    fallbacks = [{"tensor": m[0], "ncols": int(m[1]), "block": int(m[2]), "wanted": m[3], "used": m[4]}
                 for m in _FALLBACK.findall(log)]
    return {"fallbacks": fallbacks, "seconds": round(seconds, 2)}


def read_tensor_types(path: str | Path) -> dict:
    """``{"tensor_types": {type: count}, "parameters": n, "tensor_bytes": n, "bits_per_weight": x, "architecture":
    str, "file_type": int}`` of a GGUF file (``gguf.GGUFReader``: headers, no tensor data read)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    types: dict[str, int] = {}
    params = size = 0
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        params += int(t.n_elements)
        size += int(t.n_bytes)

    def field(key: str):
        f = reader.fields.get(key)
        if f is None:
            return None
        value = f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]
        return value

    return {"tensor_types": dict(sorted(types.items())), "parameters": params, "tensor_bytes": size,
            "bits_per_weight": round(size * 8 / params, 4) if params else None,
            "architecture": field("general.architecture"), "file_type": field("general.file_type")}


def gguf_limits(path: str | Path) -> tuple[int | None, int | None]:
    """(vocabulary size, training context) of a GGUF file from its headers (``tokenizer.ggml.tokens``,
    ``<architecture>.context_length``), as ``calibration.model_limits`` gives them for a config; None where absent."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    arch = reader.fields.get("general.architecture")
    arch = arch.contents() if arch is not None else None
    context = reader.fields.get(f"{arch}.context_length") if arch else None
    return (len(tokens.data) if tokens is not None else None, int(context.contents()) if context is not None else None)


# ----------------------------------------------------------------- the variant
def _transformers_source(name: str, gguf: Path | None):
    """``(model, tokenizer, GGUF arch member)`` in transformers for the imatrix: the checkpoint ``name`` (float32,
    CPU), or the GGUF ``gguf`` loaded by transformers (dequantised)."""
    import gguf as gguf_pkg
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kick_hub.device import CPU
    from kick_hub.formats.gguf_writer import check_family
    from kick_hub.models import load_model

    if gguf is None:
        model, tokenizer = load_model(name, CPU, purpose="compress")
        member = check_family(model.config)[1]
        return model, tokenizer, member
    arch = read_tensor_types(gguf)["architecture"]
    member = next((m.name for m, n in gguf_pkg.MODEL_ARCH_NAMES.items() if n == arch), None)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as e:  # noqa: BLE001 - transformers reads only some GGUF architectures
        raise ValueError(f"model: transformers cannot read {gguf.name} ({arch}) to compute the importance matrix "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    model.eval()
    return model, tokenizer, member


def make_variant(model_name: str, spec, output, calibration: str = "world", nsamples: int | None = None,
                 seqlen: int | None = None, overwrite: bool = False, progress: bool = True, storage: str = "dense",
                 placement=None, threads: int | None = None) -> Path:
    """The registry's own-artifact entry (``compress.pipeline.make_variant`` hands gguf specs here): the GGUF of
    ``model_name`` (a checkpoint, converted to F32 GGUF first, or a ``.gguf`` / gguf variant directory) quantized to
    ``spec.quant_type`` with an importance matrix from ``calibration`` (``nsamples`` x ``seqlen`` ids, the sizes'
    defaults as for every calibrated method), written with its manifest and calibration ids to the directory
    ``output`` (atomic). Everything checkable is checked before any work: the type, the packages, ``storage``
    (dense only), ``placement`` (the CPU), the output directory and, for a checkpoint, its family."""
    import torch

    from kick_hub import variant, versions
    from kick_hub.compress import calibration as calib
    from kick_hub.compress.memory import peak_rss_mb
    from kick_hub.io import atomic_dir, public_name

    quant_type = check_quant_type(spec.quant_type)
    if storage != "dense":
        raise ValueError(f"storage: a GGUF file has its own layout; gguf takes --storage dense only, got {storage!r}")
    if placement is not None and (placement.device not in ("auto", "cpu") or placement.dtype not in ("auto",
                                                                                                     "float32")):
        raise ValueError("device/dtype: llama.cpp's quantizer runs on the CPU from the float32 weights; drop "
                         "--device / --dtype")
    output = variant.prepare_output(output, overwrite)
    check_available()
    source_gguf = gguf_file_of(model_name)
    if source_gguf is None:
        from kick_hub.formats.gguf_writer import check_family
        from kick_hub.models import load_config

        check_family(load_config(model_name))
    start = time.perf_counter()
    uses_imatrix = quant_type not in USES_NO_IMATRIX
    ids, imatrix, tokens = None, None, 0
    model, tokenizer, member = (None, None, None)
    if uses_imatrix or source_gguf is None:
        model, tokenizer, member = _transformers_source(model_name, source_gguf)
    if uses_imatrix:
        max_pos = calib.model_limits(model)[1] or 2048
        if seqlen is not None and seqlen > max_pos:
            raise ValueError(f"seqlen: {seqlen} exceeds the model's context ({max_pos})")
        default_seqlen = None if calib.is_id_file(calibration) else min(2048, max_pos)
        ids = calib.calibration_ids(calibration, tokenizer, nsamples, seqlen or default_seqlen, spec.seed)
        calib.check_ids(ids, *calib.model_limits(model), calibration)
        imatrix, tokens = compute_imatrix(model, ids, member, progress)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", public_name(model_name).removesuffix(".gguf")) or "model"
    file_name = f"{stem}-{quant_type}.gguf"
    with atomic_dir(output, overwrite=overwrite) as tmp:
        if source_gguf is None:
            from kick_hub.formats.gguf_writer import write_gguf

            src = tmp / ".source-F32.gguf"
            write_gguf(model, tokenizer, src, "f32", name=public_name(model_name))
            source_info = {"kind": "transformers", "name": public_name(model_name),
                           "revision": getattr(model.config, "_commit_hash", None), "converted_to": "F32"}
        else:
            src = source_gguf
            info = read_tensor_types(source_gguf)
            source_info = {"kind": "gguf", "name": public_name(str(source_gguf)), "file_type": info["file_type"],
                           "tensor_types": info["tensor_types"],
                           "sha256": hashlib.sha256(source_gguf.read_bytes()).hexdigest()}
        del model
        result = quantize_gguf(src, tmp / file_name, quant_type, imatrix, threads)
        if source_gguf is None:
            src.unlink()
        stored = read_tensor_types(tmp / file_name)
        manifest = {
            "base_model": public_name(model_name), "base_revision": source_info.get("revision"), "method": "gguf",
            "label": spec.label, "spec": spec.to_dict(), "quant_type": quant_type, "gguf_file": file_name,
            "source": source_info,
            "calibration": ({"source": calibration, "nsamples": ids.shape[0], "seqlen": ids.shape[1],
                             "seed": spec.seed, "ids_sha256": calib.ids_hash(ids), "file": variant.CALIBRATION_FILE}
                            if ids is not None else None),
            "imatrix": ({"computed_from": "calibration", "statistic": "mean squared input activation per column",
                         "tensors": len(imatrix), "tokens": tokens, "by": "transformers forward hooks"}
                        if imatrix else None),
            "fallbacks": result["fallbacks"], "tensor_types": stored["tensor_types"],
            "bits_per_weight": stored["bits_per_weight"], "parameters": stored["parameters"],
            "quantize_seconds": result["seconds"], "layer_sparsity": {}, "sparsity": 0.0,
            "wall_time_s": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
            "versions": {**versions(), **_library_versions()}, "quantizer_versions": _library_versions(),
            "storage": "dense",  # --storage: a GGUF has its own layout (the file types are in tensor_types)
            "threads": torch.get_num_threads(),
            # the imatrix and the conversion ran on the CPU in float32; the file's types are tensor_types
            "placement": {"device": "cpu", "dtype": "float32", "device_map": None,
                          "asked": placement.to_dict() if placement is not None else None},
            "compute_device": "cpu",
        }
        if ids is not None:
            from safetensors.torch import save_file

            save_file({"input_ids": ids.contiguous()}, str(tmp / variant.CALIBRATION_FILE))
        from kick_hub.io import dumps

        (tmp / variant.MANIFEST).write_text(dumps(manifest, indent=2) + "\n")
    return output


def _library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("llama_cpp_python", "gguf"):
        try:
            out[name.replace("_", "-")] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out
