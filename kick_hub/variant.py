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
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".kick-probe-", dir=output.parent)
        Path(probe).rmdir()
    except OSError as e:
        raise ValueError(f"output: cannot write in {output.parent} ({e.strerror})") from e
    return output


STORAGES = ("dense", "sparse")


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
