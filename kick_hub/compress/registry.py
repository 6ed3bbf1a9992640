"""Method name -> the module that implements it. The pipeline and the variant artifact ask the registry; they never
branch on method names.

Every module in ``kick_hub.compress.methods`` exposes the same entry:

- ``apply(model, spec, calibration, progress, device) -> model``: compress ``model`` by ``spec`` (pruning in place,
  quantization returns a new model); ``calibration`` is token ids ``[nsamples, seqlen]`` or None; ``device`` the
  resolved compute device (``kick_hub.device.resolve``; None: where the model is), to which the methods move one
  block or one matrix at a time while the model stays in CPU memory.

and, where it has something to say:

- ``check_available(method)``: raise ImportError naming the install command when the method's packages are missing;
- ``check_layers(model, spec)``: raise ValueError naming the layers the method's kernels cannot take, before any work;
- ``check_device(spec, device)``: raise ValueError naming ``device`` when the method cannot run there (awq: CUDA only);
- ``compute_device(spec, device) -> str``: where the method really computes when it is not ``device`` (the
  round-to-nearest quantizers: the CPU);
- ``manifest_entries(model) -> dict``: what ``apply`` recorded that the manifest keeps (e.g. ``damp_raised``);
- ``before_save(model)``: refuse or restore a model of the method's kind before its weights are written (run for
  every model saved, whatever made it: a loaded checkpoint has no spec).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kick_hub.compress.spec import METHODS

# method -> module in kick_hub.compress.methods
MODULES = {"magnitude": "magnitude", "magnitude-global": "magnitude", "random": "magnitude", "wanda": "wanda",
           "sparsegpt": "sparsegpt", "gptq": "gptq", "awq": "awq", "int8": "weight_only",
           "bnb-int8": "weight_only", "nf4": "weight_only"}
assert set(MODULES) == set(METHODS), "every method in spec.METHODS needs an implementation"


def method(name: str) -> ModuleType:
    """The module implementing method ``name`` (imported on first use: quantizer stacks load only when asked)."""
    if name not in MODULES:
        raise ValueError(f"method: must be one of {list(METHODS)}, got {name!r}")
    return importlib.import_module(f"kick_hub.compress.methods.{MODULES[name]}")


def _hook(name: str, hook: str):
    return getattr(method(name), hook, None)


def check_available(name: str) -> None:
    """The method's ``check_available`` (ImportError naming the install command), if it has one."""
    check = _hook(name, "check_available")
    if check is not None:
        check(name)


def check_layers(model, spec) -> None:
    """The method's ``check_layers`` (ValueError naming the layers its kernels cannot take), if it has one."""
    check = _hook(spec.method, "check_layers")
    if check is not None:
        check(model, spec)


def check_device(spec, device: str) -> None:
    """The method's ``check_device`` (ValueError naming ``device`` where the method cannot run), if it has one."""
    check = _hook(spec.method, "check_device")
    if check is not None:
        check(spec, device)


def compute_device(spec, device: str) -> str:
    """Where the method computes for the resolved ``device``: its ``compute_device`` hook, else ``device``."""
    hook = _hook(spec.method, "compute_device")
    return hook(spec, device) if hook is not None else device


def manifest_entries(model, spec) -> dict:
    """What the method's ``apply`` recorded on ``model`` for the manifest (empty for most methods)."""
    entries = _hook(spec.method, "manifest_entries")
    return entries(model) if entries is not None else {}


def before_save(model) -> None:
    """Every method module's ``before_save(model)``, in registry order: a model is refused or restored to its
    checkpoint layout by whichever method's kind it is."""
    for module in dict.fromkeys(MODULES.values()):
        hook = getattr(importlib.import_module(f"kick_hub.compress.methods.{module}"), "before_save", None)
        if hook is not None:
            hook(model)
