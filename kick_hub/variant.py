"""A compressed variant on disk: ``save_pretrained`` weights + tokenizer, ``kick_manifest.json`` and the calibration
ids, written to a temp dir and renamed into place, so a failure never leaves a half-written variant."""

from __future__ import annotations

import json
import platform
import resource
import tempfile
from pathlib import Path

import torch

MANIFEST = "kick_manifest.json"
CALIBRATION_FILE = "calibration_ids.safetensors"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux's ``VmHWM`` counts from this process's own start; ``ru_maxrss`` (the fallback elsewhere) survives
    ``execve``, so a child process would report its parent's peak if that were higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prunable(model) -> dict[str, torch.nn.Module]:
    """Every prunable layer (decoder-block Linear / GPT-2 Conv1D) as ``layers.<block>.<name>`` -> module."""
    from kick_hub.compress.blocks import decoder_layers, linear_layers

    return {f"layers.{i}.{name}": lin for i, block in enumerate(decoder_layers(model))
            for name, lin in linear_layers(block).items()}


def layer_sparsity(model) -> dict[str, float]:
    """Share of exact zeros in every prunable layer's weight (decoder-block Linear and GPT-2 Conv1D), by
    ``layers.<block>.<name>``; orientation does not matter for a share."""
    out = {}
    for name, lin in _prunable(model).items():
        w = lin.weight.data
        out[name] = float((w == 0).sum()) / w.numel()
    return out


def overall(sparsity: dict[str, float], model) -> float:
    """Weight-count-weighted mean of ``sparsity`` (from ``layer_sparsity``) over ``model``'s prunable layers."""
    layers = _prunable(model)
    sizes = {name: layers[name].weight.numel() for name in sparsity}
    return sum(sparsity[n] * k for n, k in sizes.items()) / max(sum(sizes.values()), 1)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("kick-hub", "torch", "transformers", "safetensors", "optimum", "gptqmodel"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def prepare_output(output: str | Path, overwrite: bool) -> Path:
    """Validate the output dir before any work: it must not exist unless ``overwrite``; its parent must be
    writable."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ValueError(f"output: {output} exists; pass --overwrite to replace it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".kick-probe-", dir=output.parent)
        Path(probe).rmdir()
    except OSError as e:
        raise ValueError(f"output: cannot write in {output.parent} ({e.strerror})") from e
    return output


STORAGES = ("dense", "sparse")


def pruned_linear_names(model) -> list[str]:
    """Module names of the prunable layers (decoder-block Linear and GPT-2 Conv1D: the ones pruning touches)."""
    from kick_hub.compress.blocks import decoder_layers, linear_layers

    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(lin)] for b in decoder_layers(model) for lin in linear_layers(b).values()]


def save(model, tokenizer, output: str | Path, manifest: dict, calibration: torch.Tensor | None = None,
         overwrite: bool = False, storage: str = "dense") -> Path:
    """Write the variant atomically: temp dir beside ``output``, then rename (replacing only with ``overwrite``).
    ``storage="sparse"`` stores the pruned Linear weights in the sparse-bitmask layout (``sparse_storage``).
    The weights written are the model that ran, before or after forward passes: kernels that repack quantized
    weights at their first forward pass (bitsandbytes NF4, GPTQModel's CPU int4) are undone or their checkpoint
    tensors used, and a model where neither is possible is refused (``gptq.check_savable``)."""
    from safetensors.torch import save_file

    from kick_hub.compress.gptq import check_savable
    from kick_hub.compress.weight_only import restore_4bit_layouts
    from kick_hub.io import atomic_dir

    check_savable(model)  # a GPTQ model its kernels repacked, without its checkpoint tensors: refused
    restore_4bit_layouts(model)  # NF4 layers repacked by a forward pass are saved as quantized, not half-restored
    output = Path(output)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        if storage == "sparse":
            from kick_hub.compress import sparse_storage

            sparse_storage.save(model, tmp, pruned_linear_names(model))
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if calibration is not None:
            save_file({"input_ids": calibration.contiguous()}, str(tmp / CALIBRATION_FILE))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return output


def load_manifest(path: str | Path) -> dict:
    file = Path(path) / MANIFEST
    if not file.exists():
        raise ValueError(f"variant: {path} has no {MANIFEST}; it was not written by `kick compress`")
    return json.loads(file.read_text())


def check_sparsity(path: str | Path, tolerance: float = 1e-6) -> list[dict]:
    """Re-measure every prunable layer's sparsity from the saved weights and compare with the manifest: one row per
    layer in either (``manifest`` or ``measured`` is None where one side lacks it, and the row fails). Under a
    layer-wise method (all but ``magnitude-global``) with sparsity > 0, a layer measured fully dense fails too: it
    was never pruned. Raises
    ValueError when the variant is not a pruned one or has no prunable layer to compare."""
    from transformers import AutoModelForCausalLM

    from kick_hub.compress import PRUNING_METHODS
    from kick_hub.compress import sparse_storage  # noqa: F401 - registers the sparse-bitmask format

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
