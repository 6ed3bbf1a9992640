"""What to do to a model: ``CompressSpec`` (method, sparsity / N:M pattern / bits, quantizer and calibration
settings), validated on construction so a bad request fails before any model is loaded.

The method names live here (the CLI's choices, the bench plan and the manifest's ``method`` read them); the code
behind each name is ``registry.method(name)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PRUNING_METHODS = ("magnitude", "magnitude-global", "random", "wanda", "sparsegpt")
QUANT_METHODS = ("gptq", "awq", "int8", "bnb-int8", "nf4")
METHODS = PRUNING_METHODS + QUANT_METHODS
CALIBRATED = ("wanda", "sparsegpt", "gptq", "awq")
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

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: must be one of {list(METHODS)}, got {self.method!r}")
        object.__setattr__(self, "pattern", parse_pattern(self.pattern))
        if self.method in PRUNING_METHODS:
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

    @property
    def calibrated(self) -> bool:
        """Whether the method needs calibration token ids."""
        return self.method in CALIBRATED

    @property
    def prunes(self) -> bool:
        """Whether the method prunes (zeroes weights in place) rather than quantizes (returns a new model)."""
        return self.method in PRUNING_METHODS

    @property
    def label(self) -> str:
        """Short name, e.g. ``wanda-50``, ``sparsegpt-2of4``, ``gptq-4bit``."""
        if self.method in ("gptq", "awq"):
            return f"{self.method}-{self.bits}bit"
        if self.method in QUANT_METHODS:
            return self.method
        if self.pattern:
            return f"{self.method}-{self.pattern[0]}of{self.pattern[1]}"
        return f"{self.method}-{round(self.sparsity * 100):g}"

    def to_dict(self) -> dict:
        """The manifest's ``spec``: every field, the pattern as ``"N:M"``."""
        d = asdict(self)
        d["pattern"] = f"{self.pattern[0]}:{self.pattern[1]}" if self.pattern else None
        return d
