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
  every model saved, whatever made it: a loaded checkpoint has no spec);
- ``make_variant(model_name, spec, output, ...)``: for a method whose variant is not a transformers checkpoint (gguf:
  a GGUF file), the whole of ``pipeline.make_variant``, which hands the spec to it.

Method plugins (``kick_hub.compress.api`` documents the contract) implement the same entry on an object or module of
their own, with ``kind`` (``"pruning"`` / ``"quantization"``), ``calibrated`` and optionally ``name``, ``version``,
``check_args(args) -> dict`` and ``label(spec) -> str``. They are found through the Python entry points of group
``kick_hub.methods`` (entry name = method name) or imported from a ``package.module:name`` reference
(``find_plugin``); their ``apply`` runs under ``run_plugin``, which turns what goes wrong into a ``PluginError``
naming the plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from kick_hub.compress.spec import METHODS

# method -> module in kick_hub.compress.methods
MODULES = {"magnitude": "magnitude", "magnitude-global": "magnitude", "random": "magnitude", "wanda": "wanda",
           "sparsegpt": "sparsegpt", "gptq": "gptq", "awq": "awq", "int8": "weight_only",
           "bnb-int8": "weight_only", "nf4": "weight_only", "gguf": "gguf"}
assert set(MODULES) == set(METHODS), "every method in spec.METHODS needs an implementation"


ENTRY_POINT_GROUP = "kick_hub.methods"
PLUGIN_KINDS = ("pruning", "quantization")
_REF = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class PluginError(ValueError):
    """A method plugin failed on a model (raised, returned something that is not the model it was given, changed
    its shapes, or compressed nothing); the message names the plugin and its version."""


@dataclass(frozen=True)
class Plugin:
    """A registered method plugin: its method ``name``, ``ref`` (``package.module:name``), the object implementing
    the registry entry, ``kind`` (one of ``PLUGIN_KINDS``), ``calibrated``, and the distribution and version that
    ship it (None when it is not an installed distribution's)."""

    name: str
    ref: str
    impl: Any
    kind: str
    calibrated: bool
    distribution: str | None
    version: str | None

    def check_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The plugin's ``check_args`` of ``args`` (key -> value as given on the command line or already typed);
        without one, any argument is refused. A ValueError names the plugin."""
        hook = getattr(self.impl, "check_args", None)
        if hook is None:
            if args:
                raise ValueError(f"method-arg: method plugin {self.name} takes no arguments, got {sorted(args)}")
            return {}
        try:
            out = hook(dict(args))
        except ValueError as e:
            raise ValueError(f"method-arg: method plugin {self.name}: {e}") from e
        if not isinstance(out, dict):
            raise ValueError(f"method-arg: method plugin {self.name}'s check_args returned {type(out).__name__}, "
                             "not a dict")
        return out

    @property
    def label(self) -> Callable | None:
        """The plugin's ``label(spec)``, or None (the spec's default label)."""
        return getattr(self.impl, "label", None)

    def describe(self) -> str:
        """``name`` with the distribution and version that ship it, e.g. ``owl (kick-owl 0.1.0)``."""
        return f"{self.name} ({self.distribution} {self.version})" if self.version else f"{self.name} ({self.ref})"

    def info(self) -> dict:
        """What a manifest records of the plugin: name, ref, kind, distribution, version."""
        return {"name": self.name, "ref": self.ref, "kind": self.kind, "distribution": self.distribution,
                "version": self.version}


_PLUGINS: dict[str, Plugin] = {}
_ENTRY_POINTS: dict[str, md.EntryPoint] | None = None


def _entry_points() -> dict[str, md.EntryPoint]:
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        _ENTRY_POINTS = {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
    return _ENTRY_POINTS


def _distribution(module: str) -> tuple[str | None, str | None]:
    """The installed distribution shipping top-level package ``module`` and its version, or (None, None)."""
    top = module.split(".")[0]
    for dist in md.packages_distributions().get(top, []):
        try:
            return dist, md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None, None


def load_plugin(ref: str, name: str | None = None) -> Plugin:
    """Import the method plugin ``ref`` (``package.module:name``), check its contract and register it under
    ``name`` (default: its ``name`` attribute, else the part after the colon). ValueError naming ``ref`` when it
    cannot be imported, lacks ``apply``, has no valid ``kind`` / ``calibrated``, or takes a built-in method's
    name."""
    if not _REF.match(ref):
        raise ValueError(f"method: a plugin is named package.module:name, got {ref!r}")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
        impl = getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"method: cannot import method plugin {ref} ({type(e).__name__}: {e}); install its "
                         f"package or put it on PYTHONPATH") from e
    name = name or getattr(impl, "name", None) or attr
    if name in METHODS:
        raise ValueError(f"method: plugin {ref} is named {name!r}, a built-in method's name; give it another name")
    if not callable(getattr(impl, "apply", None)):
        raise ValueError(f"method: plugin {ref} has no apply(model, spec, calibration, progress, device)")
    kind, calibrated = getattr(impl, "kind", None), getattr(impl, "calibrated", None)
    if kind not in PLUGIN_KINDS or not isinstance(calibrated, bool):
        raise ValueError(f"method: plugin {ref} must set kind (one of {list(PLUGIN_KINDS)}, got {kind!r}) and "
                         f"calibrated (a bool, got {calibrated!r})")
    dist, version = _distribution(module_name)
    version = getattr(impl, "version", None) or version or getattr(module, "__version__", None)
    plugin = Plugin(name, ref, impl, kind, calibrated, dist, version)
    known = _PLUGINS.get(name)
    if known is not None and known.ref != ref:
        raise ValueError(f"method: two plugins are named {name!r}: {known.ref} and {ref}")
    _PLUGINS[name] = plugin
    return plugin


def find_plugin(name: str, ref: str | None = None) -> Plugin:
    """The plugin ``name`` (a method name, or a ``package.module:name`` reference): registered already, imported
    from ``ref``, or found among the entry points of group ``kick_hub.methods``. ValueError naming the built-in
    methods and the plugins installed when there is none."""
    if ":" in name:
        return load_plugin(name)
    if name in _PLUGINS and (ref is None or _PLUGINS[name].ref == ref):
        return _PLUGINS[name]
    if ref is not None:
        return load_plugin(ref, name)
    ep = _entry_points().get(name)
    if ep is not None:
        return load_plugin(ep.value, name)
    installed = sorted(set(_entry_points()) | set(_PLUGINS))
    raise ValueError(f"method: must be one of {list(METHODS)}" + (f", a plugin ({', '.join(installed)})"
                                                                  if installed else "")
                     + f" or package.module:name of a method plugin, got {name!r}")


def plugins() -> dict[str, str]:
    """Method name -> ``package.module:name`` of every plugin installed (entry points) or registered."""
    return {**{n: ep.value for n, ep in _entry_points().items()}, **{n: p.ref for n, p in _PLUGINS.items()}}


def is_method(name: str) -> bool:
    """Whether ``name`` names a built-in method or a plugin that can be found (``find_plugin``)."""
    if name in MODULES:
        return True
    try:
        find_plugin(name)
    except ValueError:
        return False
    return True


def method(name: str) -> ModuleType | Any:
    """The module implementing method ``name`` (imported on first use: quantizer stacks load only when asked), or a
    plugin's implementation (``find_plugin``)."""
    if name not in MODULES:
        return find_plugin(name).impl
    return importlib.import_module(f"kick_hub.compress.methods.{MODULES[name]}")


def run_plugin(model, spec, calibration, progress: bool, device):
    """A plugin's ``apply`` under watch: whatever it raises, a result that is not a torch module, or (pruning) a
    model whose parameter shapes changed becomes a ``PluginError`` naming the plugin (``Plugin.describe``)."""
    import torch

    plugin = find_plugin(spec.method, spec.plugin)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    try:
        out = plugin.impl.apply(model, spec, calibration, progress, device)
    except Exception as e:  # noqa: BLE001 - any failure of foreign code is this cell's, with the plugin named
        raise PluginError(f"method plugin {plugin.describe()} failed: {type(e).__name__}: {e}") from e
    if not isinstance(out, torch.nn.Module):
        raise PluginError(f"method plugin {plugin.describe()} returned {type(out).__name__}, not the model")
    if plugin.kind == "pruning":
        after = {n: tuple(p.shape) for n, p in out.named_parameters()}
        changed = [f"{n} {shapes[n]} -> {after.get(n)}" for n in shapes if after.get(n) != shapes[n]]
        if changed:
            raise PluginError(f"method plugin {plugin.describe()} returned a model with other shapes (a pruning "
                              f"method zeroes weights in place): {', '.join(changed[:3])}"
                              + (f" and {len(changed) - 3} more" if len(changed) > 3 else ""))
    return out


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
    out = entries(model) if entries is not None else {}
    if spec.plugin is not None:  # a plugin's name and version, wherever a built-in method's name appears
        out = {**out, "plugin": find_plugin(spec.method, spec.plugin).info()}
    return out


def before_save(model) -> None:
    """Every method module's ``before_save(model)``, in registry order: a model is refused or restored to its
    checkpoint layout by whichever method's kind it is."""
    for module in dict.fromkeys(MODULES.values()):
        hook = getattr(importlib.import_module(f"kick_hub.compress.methods.{module}"), "before_save", None)
        if hook is not None:
            hook(model)
    for plugin in list(_PLUGINS.values()):  # plugins loaded in this process
        hook = getattr(plugin.impl, "before_save", None)
        if hook is not None:
            hook(model)
