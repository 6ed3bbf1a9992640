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


def layer_sparsity(model) -> dict[str, float]:
    """Share of exact zeros in every decoder-block Linear weight, by parameter name."""
    from kick_hub.compress.blocks import decoder_layers, linear_layers

    out = {}
    prefix = {id(b): i for i, b in enumerate(decoder_layers(model))}
    for block in decoder_layers(model):
        for name, lin in linear_layers(block).items():
            w = lin.weight.data
            out[f"layers.{prefix[id(block)]}.{name}"] = float((w == 0).sum()) / w.numel()
    return out


def overall(sparsity: dict[str, float], model) -> float:
    from kick_hub.compress.blocks import decoder_layers, linear_layers

    sizes = [lin.weight.numel() for b in decoder_layers(model) for lin in linear_layers(b).values()]
    return sum(s * n for s, n in zip(sparsity.values(), sizes)) / max(sum(sizes), 1)


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
    """Module names of the decoder-block Linear layers (the ones pruning touches)."""
    from kick_hub.compress.blocks import decoder_layers, linear_layers

    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(lin)] for b in decoder_layers(model) for lin in linear_layers(b).values()]


def save(model, tokenizer, output: str | Path, manifest: dict, calibration: torch.Tensor | None = None,
         overwrite: bool = False, storage: str = "dense") -> Path:
    """Write the variant atomically: temp dir beside ``output``, then rename (replacing only with ``overwrite``).
    ``storage="sparse"`` stores the pruned Linear weights in the sparse-bitmask layout (``sparse_storage``)."""
    from safetensors.torch import save_file

    from kick_hub.io import atomic_dir

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
    """Re-measure every layer's sparsity from the saved weights and compare with the manifest."""
    from transformers import AutoModelForCausalLM

    from kick_hub.compress import sparse_storage  # noqa: F401 - registers the sparse-bitmask format

    manifest = load_manifest(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    measured = layer_sparsity(model)
    rows = []
    for name, expected in manifest.get("layer_sparsity", {}).items():
        got = measured.get(name)
        rows.append({"layer": name, "manifest": expected, "measured": got,
                     "ok": got is not None and abs(got - expected) <= tolerance})
    return rows
