"""What to do to a model: ``CompressSpec`` (method, sparsity / N:M pattern / bits, quantizer and calibration
settings), validated on construction so a bad request fails before any model is loaded.

The built-in method names live here (the CLI's choices, the bench plan and the manifest's ``method`` read them); the
code behind each name is ``registry.method(name)``. A method plugin (``kick_hub.compress.api``: an entry point of group
``kick_hub.methods`` or a ``package.module:name`` reference) is a method too: its name, kind (pruning or quantization),
whether it calibrates, its typed ``args`` (``--method-arg key=value``) and its reference are part of the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

PRUNING_METHODS = ("magnitude", "magnitude-global", "random", "wanda", "sparsegpt")
QUANT_METHODS = ("gptq", "awq", "int8", "bnb-int8", "nf4", "gguf")
METHODS = PRUNING_METHODS + QUANT_METHODS
CALIBRATED = ("wanda", "sparsegpt", "gptq", "awq", "gguf")  # gguf: the importance matrix
# the settings each method reads (the rest of a CompressSpec's fields: every method); a setting given to a method
# that does not read it is refused, not silently dropped
READ_BY = {"group_size": ("gptq", "awq"), "desc_act": ("gptq",), "sym": ("gptq", "awq"),
           "damp": ("sparsegpt", "gptq"), "blocksize": ("sparsegpt",)}
GPTQ_BITS = (2, 3, 4, 8)
AWQ_BITS = (4,)  # GPTQModel's AWQ GEMM kernel


def parse_pattern(pattern: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4); validates 0 < N < M."""
    if pattern is None:
        return None
    if isinstance(pattern, str):
        try:
            n, m = (int(x) for x in pattern.split(":"))
        except ValueError:
            raise ValueError(f"pattern: must look like N:M (e.g. 2:4, 4:8, 1:2), got {pattern!r}") from None
    else:
        n, m = pattern
    if not 0 < n < m:
        raise ValueError(f"pattern: needs 0 < N < M (N weights pruned in every M), got {n}:{m}")
    return n, m


@dataclass(frozen=True)
class CompressSpec:
    """What to do to a model. Exactly one of ``sparsity`` / ``pattern`` for pruning, ``bits`` for GPTQ (AWQ:
    4, the default)."""

    method: str
    sparsity: float | None = None
    pattern: tuple[int, int] | None = None
    bits: int | None = None
    group_size: int = 128
    desc_act: bool = False
    sym: bool = True
    damp: float = 0.01
    blocksize: int = 128
    seed: int = 0
    args: tuple[tuple[str, Any], ...] = ()  # a plugin's parameters, typed by its ``check_args``; sorted by key
    plugin: str | None = None  # a plugin's ``package.module:name`` (filled in from the registry)
    quant_type: str | None = None  # gguf: llama.cpp's quant type (Q4_K_M ...; compress.methods.gguf.QUANT_TYPES)

    def __post_init__(self) -> None:
        found = None
        if self.method not in METHODS or self.plugin is not None:
            from kick_hub.compress import registry

            found = registry.find_plugin(self.method, self.plugin)  # ValueError naming built-ins and plugins
            object.__setattr__(self, "method", found.name)
            object.__setattr__(self, "plugin", found.ref)
            given = dict(self.args) if isinstance(self.args, Mapping) else dict(tuple(a) for a in self.args)
            object.__setattr__(self, "args", tuple(sorted(found.check_args(given).items())))
        elif self.args:
            raise ValueError(f"method-arg: only method plugins take --method-arg; {self.method!r} is built in "
                             f"(its settings have options of their own), got {dict(self.args)}")
        else:
            object.__setattr__(self, "args", ())
        if self.quant_type is not None and self.method != "gguf":
            raise ValueError(f"quant_type: only for gguf, not {self.method!r}; drop --quant-type")
        object.__setattr__(self, "pattern", parse_pattern(self.pattern))
        if self.method in PRUNING_METHODS or (found is not None and found.kind == "pruning"):
            if self.bits is not None:
                raise ValueError(f"bits: only for quantization methods {list(QUANT_METHODS)}, not {self.method!r}")
            if self.sparsity is None and self.pattern is None:
                raise ValueError("sparsity/pattern: pruning needs --sparsity R (0 <= R < 1) or --pattern N:M")
            if self.sparsity is not None and not (isinstance(self.sparsity, (int, float)) and 0 <= self.sparsity < 1):
                raise ValueError(f"sparsity: must be in [0, 1), got {self.sparsity!r}")
            if self.pattern is not None and self.sparsity is not None:
                n, m = self.pattern
                if abs(self.sparsity - n / m) > 1e-9:
                    raise ValueError(f"sparsity/pattern: pattern {n}:{m} prunes {n / m:g}, which contradicts "
                                     f"sparsity {self.sparsity:g}; give one of them")
            if self.pattern is not None:
                object.__setattr__(self, "sparsity", self.pattern[0] / self.pattern[1])
        else:
            if self.sparsity is not None or self.pattern is not None:
                raise ValueError(f"sparsity/pattern: not used by {self.method!r}; give --bits")
            if found is not None and self.bits is not None and not (isinstance(self.bits, int) and 0 < self.bits <= 32):
                raise ValueError(f"bits: must be an integer in [1, 32], got {self.bits!r}")
            if self.method == "gguf":
                from kick_hub.compress.methods.gguf import check_quant_type

                check_quant_type(self.quant_type)
                if self.bits is not None:
                    raise ValueError(f"bits: gguf's bits come from --quant-type, got --bits {self.bits!r}")
            if self.method == "gptq" and self.bits not in GPTQ_BITS:
                raise ValueError(f"bits: must be one of {list(GPTQ_BITS)} for gptq, got {self.bits!r}")
            if self.method == "awq":
                if self.bits is None:
                    object.__setattr__(self, "bits", AWQ_BITS[0])
                if self.bits not in AWQ_BITS:
                    raise ValueError(f"bits: must be one of {list(AWQ_BITS)} for awq, got {self.bits!r}")
            implied = {"int8": 8, "bnb-int8": 8, "nf4": 4}.get(self.method)
            if implied is not None:
                if self.bits not in (None, implied):
                    raise ValueError(f"bits: {self.method} is {implied}-bit, got {self.bits!r}")
                object.__setattr__(self, "bits", implied)
            if not (self.group_size == -1 or self.group_size > 0):
                raise ValueError(f"group_size: must be -1 (per row) or positive, got {self.group_size}")
        if not 0 < self.damp < 1:
            raise ValueError(f"damp: must be in (0, 1), got {self.damp}")
        for name, methods in READ_BY.items():
            default = type(self).__dataclass_fields__[name].default
            if self.method not in methods and getattr(self, name) != default:
                option = "--asym" if name == "sym" else f"--{name.replace('_', '-')}"
                raise ValueError(f"{name}: not used by {self.method!r} (only by {', '.join(methods)}); drop "
                                 f"{option}")

    def __reduce__(self):
        """Pickled (a Ray worker) as the constructor's arguments, so unpickling imports and registers a plugin."""
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))

    def _plugin(self):
        if self.plugin is None:
            return None
        from kick_hub.compress import registry

        return registry.find_plugin(self.method, self.plugin)

    @property
    def calibrated(self) -> bool:
        """Whether the method needs calibration token ids (a plugin: its ``calibrated``)."""
        p = self._plugin()
        return p.calibrated if p is not None else self.method in CALIBRATED

    @property
    def prunes(self) -> bool:
        """Whether the method prunes (zeroes weights in place) rather than quantizes (returns a new model)."""
        p = self._plugin()
        return p.kind == "pruning" if p is not None else self.method in PRUNING_METHODS

    @property
    def label(self) -> str:
        """Short name, e.g. ``wanda-50``, ``sparsegpt-2of4``, ``gptq-4bit``; a plugin's own ``label(spec)``, else
        its name as a built-in of its kind would show it, then ``-<key><value>`` per method argument
        (``owl-50-m5``)."""
        p = self._plugin()
        if p is not None and p.label is not None:
            return p.label(self)
        if self.method == "gguf":
            base = f"gguf-{self.quant_type}"
        elif self.method in ("gptq", "awq") or (p is not None and not self.prunes and self.bits):
            base = f"{self.method}-{self.bits}bit"
        elif self.method in QUANT_METHODS or (p is not None and not self.prunes):
            base = self.method
        elif self.pattern:
            base = f"{self.method}-{self.pattern[0]}of{self.pattern[1]}"
        else:
            base = f"{self.method}-{round(self.sparsity * 100):g}"
        return base + "".join(f"-{k}{v:g}" if isinstance(v, float) else f"-{k}{v}" for k, v in self.args)

    def to_dict(self) -> dict:
        """The manifest's ``spec``: every field, the pattern as ``"N:M"``; ``args`` (a dict) and ``plugin`` only for
        a method plugin, so a built-in spec's dict (and the sweep identity made of it) is what it always was."""
        d = asdict(self)
        d["pattern"] = f"{self.pattern[0]}:{self.pattern[1]}" if self.pattern else None
        if self.quant_type is None:
            del d["quant_type"]
        if self.plugin is None:
            del d["args"], d["plugin"]
        else:
            d["args"] = dict(self.args)
        return d
