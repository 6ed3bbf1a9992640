"""A compressed variant on disk: ``save_pretrained`` weights + tokenizer, ``kick_manifest.json`` and the calibration
ids, written to a temp dir and renamed into place, so a failure never leaves a half-written variant."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from kick_hub.io import dumps, loads

MANIFEST = "kick_manifest.json"
CALIBRATION_FILE = "calibration_ids.safetensors"


def layer_sparsity(model) -> dict[str, float]:
    """Share of exact zeros in every prunable layer's weight (decoder-block Linear and GPT-2 Conv1D), by
    ``layers.<block>.<name>``; orientation does not matter for a share."""
    from kick_hub.compress.blockwise import prunable_layers

    out = {}
    for name, lin in prunable_layers(model).items():
        w = lin.weight.data
        out[name] = float((w == 0).sum()) / w.numel()
    return out


def overall(sparsity: dict[str, float], model) -> float:
    """Weight-count-weighted mean of ``sparsity`` (from ``layer_sparsity``) over ``model``'s prunable layers."""
    from kick_hub.compress.blockwise import prunable_layers

    layers = prunable_layers(model)
    sizes = {name: layers[name].weight.numel() for name in sparsity}
    return sum(sparsity[n] * k for n, k in sizes.items()) / max(sum(sizes.values()), 1)


def prepare_output(output: str | Path, overwrite: bool) -> Path:
    """Validate the output dir before any work: it must not exist unless ``overwrite``; its parent must be
    writable."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ValueError(f"output: {output} exists; pass --overwrite to replace it")
    if output.exists() and not output.is_dir():
        raise ValueError(f"output: {output} exists and is not a directory")
    # probe the nearest existing ancestor: creating the parent here would leave an empty folder behind when the
    # command is refused or interrupted before the variant is saved (``io.atomic_dir`` creates it at save time)
    existing = next((p for p in [output.parent, *output.parent.parents] if p.exists()), Path("."))
    try:
        Path(tempfile.mkdtemp(prefix=".kick-probe-", dir=existing)).rmdir()
    except OSError as e:
        raise ValueError(f"output: cannot write in {existing} ({e.strerror})") from e
    return output


STORAGES = ("dense", "sparse")

# safetensors dtype code -> (torch dtype name, bytes per element)
SAFETENSORS_DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
                      "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1), "I64": ("int64", 8),
                      "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U64": ("uint64", 8),
                      "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1), "BOOL": ("bool", 1)}
# quantization method -> the libraries whose code writes (and whose kernels read) its weights: recorded with their
# versions in the manifest (``quantizer_versions``), named on the card and pinned in a Space's requirements
LIBRARIES = {"gptq": ("optimum", "gptqmodel"), "awq": ("gptqmodel",), "int8": ("torchao",),
             "bnb-int8": ("bitsandbytes",), "nf4": ("bitsandbytes",)}
# quantization method -> dtype name its non-quantized tensors (embeddings, norms, head) are saved in, where it is
# not the dtype the model was loaded in (GPTQ checkpoints are float16: ``compress.methods.gptq``)
UNQUANTIZED_DTYPE = {"gptq": "float16", "awq": "float16"}


def library_versions(method: str) -> dict[str, str]:
    """``LIBRARIES[method]`` -> installed version (package metadata; nothing imported); empty for a pruning method;
    for a method plugin, the distribution that ships it -> its version. A library that is not installed is left out
    (the method then fails its ``check_available``)."""
    import importlib.metadata as md

    out = {}
    if method not in LIBRARIES:  # a method plugin: the distribution that ships it (compress.registry)
        from kick_hub.compress.spec import METHODS

        if method not in METHODS:
            from kick_hub.compress.registry import find_plugin

            try:
                plugin = find_plugin(method)
            except ValueError:
                return out
            return {plugin.distribution: plugin.version} if plugin.distribution and plugin.version else out
    for name in LIBRARIES.get(method, ()):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def quantizer_libraries(manifest: dict) -> dict[str, str | None]:
    """The libraries a variant's weights need to load (``LIBRARIES`` of its method; empty for pruning) -> the
    version that wrote them: the manifest's ``quantizer_versions``, else its ``versions`` entry, else None (not
    recorded)."""
    method = manifest.get("method") or (manifest.get("spec") or {}).get("method")
    recorded = {**(manifest.get("versions") or {}), **(manifest.get("quantizer_versions") or {})}
    return {name: recorded.get(name) for name in LIBRARIES.get(method, ())}


def safetensors_header(path: str | Path) -> dict:
    """The JSON header of a ``.safetensors`` file (tensor name -> {dtype, shape, data_offsets}, and
    ``__metadata__``), read without loading any tensor (the format's first 8 bytes give the header's length)."""
    import json
    import struct

    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(n))


def weight_files(directory: str | Path) -> list[Path]:
    """The model's ``.safetensors`` files in ``directory`` (the calibration ids left out)."""
    return sorted(p for p in Path(directory).glob("*.safetensors") if p.name != CALIBRATION_FILE)


def tensor_inventory(files: list[Path]) -> dict[str, dict[str, int]]:
    """torch dtype name -> ``{"tensors": count, "elements": n, "bytes": n}`` over the tensors of ``files``
    (safetensors headers; a dtype code without a torch name is kept as it is)."""
    out: dict[str, dict[str, int]] = {}
    for f in files:
        for name, t in safetensors_header(f).items():
            if name == "__metadata__":
                continue
            numel = 1
            for d in t["shape"]:
                numel *= d
            row = out.setdefault(SAFETENSORS_DTYPES.get(t["dtype"], (t["dtype"], 0))[0],
                                 {"tensors": 0, "elements": 0, "bytes": 0})
            row["tensors"] += 1
            row["elements"] += numel
            row["bytes"] += t["data_offsets"][1] - t["data_offsets"][0]
    return out


def variant_bytes(model: str, placement=None, spec=None, storage: str = "dense",
                  extra_bytes: int = 0) -> int | None:
    """About how many bytes a variant of ``model`` takes on disk, known before any weight is read: the parameter
    count from the model's safetensors headers (a local directory, whose tokenizer files are saved with the
    variant too) or the Hub's safetensors metadata (``get_safetensors_metadata``), times the element size the
    variant is saved in (``placement``'s dtype: ``float32`` on the CPU, the checkpoint's own on an accelerator for
    ``auto``), plus ``extra_bytes`` (e.g. the calibration ids).

    With ``spec`` (a ``CompressSpec``) the decoder layers' weights (counted on the model built from its config on
    the meta device: ``device.empty_model``) take what the method stores: ``spec.bits`` per weight for a quantizer,
    whose other tensors are in ``UNQUANTIZED_DTYPE`` where it has one (scales and zero points, a few per cent, are
    not counted), and under ``storage="sparse"`` one mask bit plus the kept values. Without ``spec``, or when the
    config cannot be read, every parameter counts at the saved element size (an upper bound for quantizers). A GGUF
    file's requantized variant counts every parameter at 4 bytes (F32, the largest type). None
    when the size cannot be known (a Hub model offline, weights without safetensors)."""
    from kick_hub.models import resolve as resolve_model

    counts: dict[str, int] = {}  # safetensors dtype -> parameters
    path = Path(resolve_model(model))
    if path.is_file() and path.suffix.lower() == ".gguf":  # requantized: at most F32 (tensor headers only)
        try:
            from kick_hub.compress.methods.gguf import read_tensor_types

            return read_tensor_types(path)["parameters"] * 4 + extra_bytes
        except Exception:  # noqa: BLE001 - no gguf package, or not a readable GGUF: loading says why
            return None
    if path.is_dir():
        files = weight_files(path)
        if not files:
            return None
        for f in files:
            for name, t in safetensors_header(f).items():
                if name != "__metadata__":
                    numel = 1
                    for d in t["shape"]:
                        numel *= d
                    counts[t["dtype"]] = counts.get(t["dtype"], 0) + numel
        extra = sum(f.stat().st_size for f in path.glob("tokenizer*") if f.is_file())  # saved with every variant
    else:
        extra = 0
        try:
            from huggingface_hub import get_safetensors_metadata

            counts = dict(get_safetensors_metadata(str(model)).parameter_count)
        except Exception:  # offline, gated, no safetensors: the size is unknown, the check is skipped
            return None
    asked = getattr(placement, "dtype", None) or "auto"
    fixed = {"float32": 4, "bfloat16": 2, "float16": 2}.get(asked)
    if fixed is None:
        device = getattr(placement, "device", None) or "auto"
        fixed = 4 if device == "cpu" or (device == "auto" and not _accelerator()) else None
    total = sum(n * (fixed or SAFETENSORS_DTYPES.get(dtype, ("", 4))[1]) for dtype, n in counts.items())
    element = fixed or max((SAFETENSORS_DTYPES.get(d, ("", 4))[1] for d in counts), default=4)
    smaller = spec is not None and (not spec.prunes or storage == "sparse")  # else every parameter at full size
    layers = _layer_weights(path if path.is_dir() else model) if smaller else None
    if layers:
        layers = min(layers, sum(counts.values()))
        rest = sum(counts.values()) - layers
        if not spec.prunes:
            rest_element = {"float16": 2, "bfloat16": 2}.get(UNQUANTIZED_DTYPE.get(spec.method, ""), element)
            total = rest * rest_element + layers * (spec.bits or 8) // 8
        elif storage == "sparse":
            total = rest * element + layers // 8 + round(layers * (1 - (spec.sparsity or 0)) * element)
    return extra + total + extra_bytes


def _layer_weights(model) -> int | None:
    """Elements of the decoder layers' Linear / Conv1D weights of ``model`` (name or directory), counted on the
    model built from its config on the meta device; None when the config cannot be read or built."""
    try:
        from transformers import AutoConfig

        from kick_hub.compress.blockwise import prunable_layers
        from kick_hub.device import empty_model

        config = AutoConfig.from_pretrained(str(model))
        if getattr(config, "quantization_config", None) is not None:
            del config.quantization_config
        return sum(lin.weight.numel() for lin in prunable_layers(empty_model(config)).values()) or None
    except Exception:  # noqa: BLE001 - no readable config: every parameter counts at full size (upper bound)
        return None


def _accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


def check_space(output: str | Path, need: int | None, what: str = "the variant") -> None:
    """Refuse (ValueError naming ``output``, before any model work) when the filesystem that will hold ``output``
    has less than ``need`` bytes free; sizes in binary units (``io.format_size``). No check when ``need`` is None
    (size unknown)."""
    import shutil

    from kick_hub.io import format_size, mount_point

    if need is None:
        return
    output = Path(output)
    probe = next(p for p in [output.parent, *output.parent.resolve().parents] if p.exists())
    free = shutil.disk_usage(probe).free
    if need > free:
        raise ValueError(f"output: {format_size(free)} free on {mount_point(probe)} but {what} needs about "
                         f"{format_size(need)}; free some space or choose another --output")


def storage_summary(directory: str | Path, manifest: dict | None = None) -> dict:
    """How a saved variant stores its weights, from its files (safetensors headers; no tensor loaded):
    ``dtypes`` (``tensor_inventory`` of the weight files), ``weight_bytes`` (their tensors' bytes), ``file_bytes``
    (every file of the directory: weights, config, tokenizer, manifest, calibration ids), ``parameters`` (the base
    model's parameter count: the manifest's ``parameters``, else counted on the model built from the variant's
    config on the meta device; None when neither is known) and ``bits_per_weight`` (``weight_bytes`` x 8 /
    ``parameters``: scales, zero points and unquantized tensors included, so 4-bit GPTQ shows more than 4)."""
    directory = Path(directory)
    dtypes = tensor_inventory(weight_files(directory))
    weight_bytes = sum(row["bytes"] for row in dtypes.values())
    files = sum(p.stat().st_size for p in directory.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    parameters = (manifest or {}).get("parameters") or _parameter_count(directory)
    return {"dtypes": dtypes, "weight_bytes": weight_bytes, "file_bytes": files, "parameters": parameters,
            "bits_per_weight": weight_bytes * 8 / parameters if parameters else None}


def _parameter_count(directory: Path) -> int | None:
    try:
        from transformers import AutoConfig

        from kick_hub.device import empty_model

        config = AutoConfig.from_pretrained(str(directory))
        if getattr(config, "quantization_config", None) is not None:
            del config.quantization_config
        return sum(p.numel() for p in empty_model(config).parameters())
    except Exception:  # noqa: BLE001 - a config transformers cannot build: the count is unknown
        return None


def save(model, tokenizer, output: str | Path, manifest: dict, calibration: torch.Tensor | None = None,
         overwrite: bool = False, storage: str = "dense") -> Path:
    """Write the variant atomically: temp dir beside ``output``, then rename (replacing only with ``overwrite``).
    ``storage="sparse"`` stores the pruned layers' weights in the sparse-bitmask layout (``formats.sparse_bitmask``).
    The weights written are the model that ran, before or after forward passes: every method's save hook
    (``compress.registry.before_save``) undoes kernels that repack quantized weights at their first forward pass or
    uses their checkpoint tensors, and refuses a model where neither is possible. A model carrying
    ``kick_save_pretrained(directory)`` (GPTQModel's AWQ) is written by it instead of ``save_pretrained``."""
    from safetensors.torch import save_file

    from kick_hub.compress.registry import before_save
    from kick_hub.io import atomic_dir

    before_save(model)
    output = Path(output)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        if storage == "sparse":
            from kick_hub.compress.blockwise import prunable_module_names
            from kick_hub.formats import sparse_bitmask

            sparse_bitmask.save(model, tmp, prunable_module_names(model))
        elif getattr(model, "kick_save_pretrained", None) is not None:  # a method with its own writer (awq)
            model.kick_save_pretrained(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if calibration is not None:
            save_file({"input_ids": calibration.contiguous()}, str(tmp / CALIBRATION_FILE))
        (tmp / MANIFEST).write_text(dumps(manifest, indent=2) + "\n")
    return output


def load_manifest(path: str | Path) -> dict:
    """The parsed ``MANIFEST`` (kick_manifest.json) of the variant directory ``path``; its keys include method,
    spec, label, sparsity, layer_sparsity, wall_time_s (seconds), peak_rss_mb (MiB), calibration, versions,
    placement (device and dtype asked and resolved, ``kick_hub.device.Resolved.to_dict``) and compute_device.
    Raises ValueError when the directory has no manifest (not written by ``kick compress``), and
    ``json.JSONDecodeError`` (a ValueError) when it is not valid JSON."""
    file = Path(path) / MANIFEST
    if not file.exists():
        raise ValueError(f"variant: {path} has no {MANIFEST}; it was not written by `kick compress`")
    return loads(file.read_text())


def format_sparsity(rows: list[dict], verbose: bool = False) -> str:
    """Text report of ``check_sparsity`` rows: one line per failing row (every row when ``verbose``) with the
    manifest and measured sparsity (fractions of zero weights, 6 decimals; ``missing`` where a side lacks the layer),
    then a ``K/N layers match the manifest`` line."""
    show = lambda v: "missing " if v is None else f"{v:.6f}"  # noqa: E731
    lines = [f"{r['layer']:<40} manifest {show(r['manifest'])}  measured {show(r['measured'])}  "
             f"{'ok' if r['ok'] else 'MISMATCH'}" for r in rows if verbose or not r["ok"]]
    good = sum(bool(r["ok"]) for r in rows)
    return "\n".join([*lines, f"{good}/{len(rows)} layers match the manifest"])


def check_sparsity(path: str | Path, tolerance: float = 1e-6) -> list[dict]:
    """Re-measure every prunable layer's sparsity from the saved weights and compare with the manifest: one row per
    layer in either (``manifest`` or ``measured`` is None where one side lacks it, and the row fails). Under a
    layer-wise method (all but ``magnitude-global``) with sparsity > 0, a layer measured fully dense fails too: it
    was never pruned. Raises
    ValueError when the variant is not a pruned one or has no prunable layer to compare."""
    from transformers import AutoModelForCausalLM

    from kick_hub.compress.spec import PRUNING_METHODS
    from kick_hub.formats import sparse_bitmask  # noqa: F401 - registers the sparse-bitmask format

    manifest = load_manifest(path)
    if manifest.get("method") not in PRUNING_METHODS:
        raise ValueError(f"variant: {path} is a {manifest.get('method')!r} variant, not a pruned one "
                         f"({', '.join(PRUNING_METHODS)}); there is no sparsity to check")
    model = AutoModelForCausalLM.from_pretrained(path)
    measured = layer_sparsity(model)
    expected_all = manifest.get("layer_sparsity") or {}
    if not measured and not expected_all:
        raise ValueError(f"variant: {path} has no prunable layers ({type(model).__name__}) and its manifest lists "
                         "none; nothing was pruned")
    layerwise = manifest["method"] != "magnitude-global" and ((manifest.get("spec") or {}).get("sparsity") or 0) > 0
    rows = []
    for name in list(expected_all) + [n for n in measured if n not in expected_all]:
        expected, got = expected_all.get(name), measured.get(name)
        ok = expected is not None and got is not None and abs(got - expected) <= tolerance
        rows.append({"layer": name, "manifest": expected, "measured": got,
                     "ok": ok and not (layerwise and got == 0)})
    return rows
