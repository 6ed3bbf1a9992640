"""Sweep planning: which variants (cells) a ``kick bench`` run evaluates. Each cell is a ``CompressSpec`` or dense."""

from __future__ import annotations

from dataclasses import dataclass

from kick_hub.compress import GPTQ_BITS, METHODS, PRUNING_METHODS, CompressSpec, parse_pattern

DEFAULT_METHODS = ("magnitude", "wanda", "sparsegpt", "gptq")
DEFAULT_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
DEFAULT_PATTERNS = ("2:4", "4:8")
DEFAULT_BITS = (8, 4, 3)


@dataclass(frozen=True)
class Cell:
    """One sweep cell: its variant ``label`` (``CompressSpec.label``, ``dense`` for the base model) and spec."""

    label: str
    spec: CompressSpec | None  # None = the dense base model

    @property
    def method(self) -> str:
        """The compression method of the cell, ``dense`` for the base model."""
        return self.spec.method if self.spec else "dense"


def plan(methods=DEFAULT_METHODS, sparsities=DEFAULT_SPARSITIES, patterns=DEFAULT_PATTERNS,
         bits=DEFAULT_BITS, group_size: int = 128) -> list[Cell]:
    """Dense first, then every pruning method x (sparsities + patterns), then quantization x bits; a repeated
    method or value gives one cell. Raises ValueError for an unknown method, a value out of range, a method left
    without a cell (its value lists all empty) and two values whose cells share a label (e.g. 0.5 and 0.504)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; allowed: {list(METHODS)}")
    for s in sparsities:
        if not 0 < s < 1:
            raise ValueError(f"sparsities: each must be in (0, 1), got {s}")
    patterns = [parse_pattern(p) for p in patterns]
    for b in bits:
        if b not in GPTQ_BITS:
            raise ValueError(f"bits: each must be one of {list(GPTQ_BITS)}, got {b}")
    cells = [Cell("dense", None)]
    for method in methods:
        if method in PRUNING_METHODS:
            specs = [CompressSpec(method, sparsity=s) for s in sparsities]
            specs += [CompressSpec(method, pattern=p) for p in patterns]
        elif method == "gptq":
            specs = [CompressSpec(method, bits=b, group_size=group_size) for b in bits]
        else:
            specs = [CompressSpec(method)]
        if not specs:
            raise ValueError(f"methods: {method} gets no cell (its --sparsities / --patterns / --bits are all "
                             "empty); give it a value or drop the method")
        cells += [Cell(s.label, s) for s in specs]
    unique: dict[str, Cell] = {}
    for cell in cells:  # the store keys a cell by its label: a repeated value is one cell, a clash is refused
        seen = unique.setdefault(cell.label, cell)
        if seen.spec != cell.spec:
            raise ValueError(f"sparsities: {seen.spec.sparsity} and {cell.spec.sparsity} are both cell "
                             f"{cell.label!r} (labels round the sparsity to a percent); give values at least 1 % apart")
    return list(unique.values())
