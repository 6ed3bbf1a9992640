"""Sweep planning: which variants (cells) a ``kick bench`` run evaluates. Each cell is a ``CompressSpec``, dense, or
an external checkpoint (``kick_hub.external.ExternalSource``: ``--variant`` / ``--variants``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kick_hub.compress import GPTQ_BITS, METHODS, PRUNING_METHODS, CompressSpec, parse_pattern

if TYPE_CHECKING:
    from kick_hub.external import ExternalSource

DEFAULT_METHODS = ("magnitude", "wanda", "sparsegpt", "gptq")
DEFAULT_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
DEFAULT_PATTERNS = ("2:4", "4:8")
DEFAULT_BITS = (8, 4, 3)
DEFAULT_QUANT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_XS")  # gguf (docs/gguf.md)


@dataclass(frozen=True)
class Cell:
    """One sweep cell: its variant ``label`` (``CompressSpec.label``, ``dense`` for the base model, the user's
    label for an external checkpoint), its spec, and for an external checkpoint its resolved ``source``."""

    label: str
    spec: CompressSpec | None  # None = the dense base model, or an external checkpoint (``source``)
    source: "ExternalSource | None" = None

    @property
    def method(self) -> str:
        """The compression method of the cell, ``dense`` for the base model, ``external`` for a checkpoint."""
        return self.spec.method if self.spec else "external" if self.source is not None else "dense"

    @property
    def external(self) -> bool:
        """Whether the cell is an external checkpoint (evaluated as it is, never compressed)."""
        return self.source is not None

    def identity(self) -> dict | None:
        """What the store records as the cell's ``spec`` and compares on a resumed sweep: the spec's dict, the
        external source's identity (source, commit, weights digest), or None for dense."""
        if self.spec is not None:
            return self.spec.to_dict()
        return self.source.identity() if self.source is not None else None


def external_cells(cells: Sequence[Cell], sources: Sequence["ExternalSource"]) -> list[Cell]:
    """``cells`` followed by one cell per external source; ValueError naming the label when it is a built-in
    cell's or given twice."""
    taken = {c.label for c in cells}
    out = list(cells)
    for s in sources:
        if s.label in taken:
            raise ValueError(f"variant {s.label}: the label is already a cell of this sweep (source {s.source}); "
                             "choose another label")
        taken.add(s.label)
        out.append(Cell(s.label, None, s))
    return out


def plan(methods=DEFAULT_METHODS, sparsities=DEFAULT_SPARSITIES, patterns=DEFAULT_PATTERNS,
         bits=DEFAULT_BITS, group_size: int = 128, method_args: Mapping[str, Any] | None = None,
         quant_types: Sequence[str] = DEFAULT_QUANT_TYPES) -> list[Cell]:
    """Dense first, then every pruning method x (sparsities + patterns), then quantization x bits; a repeated
    method or value gives one cell. A method plugin (its name from the ``kick_hub.methods`` entry points, or
    ``package.module:name``) is planned as a built-in of its kind (a quantizer: one cell per bits value, or one cell
    when ``bits`` is empty), with ``method_args`` (key -> value, typed by the plugin's ``check_args``). Raises
    ValueError for an unknown method, a value out of range, a method left without a cell (its value lists all
    empty), ``method_args`` with no plugin among ``methods``, and two values whose cells share a label (e.g. 0.5
    and 0.504)."""
    from kick_hub.compress import registry

    unknown = [m for m in methods if m not in METHODS and not registry.is_method(m)]
    if unknown:
        for m in unknown:
            if ":" in m:
                registry.find_plugin(m)  # its own reason (cannot import, no apply, ...)
        raise ValueError(f"methods: unknown {unknown}; allowed: {list(METHODS)}"
                         + (f", plugins {sorted(registry.plugins())}" if registry.plugins() else "")
                         + " or package.module:name of a method plugin")
    method_args = dict(method_args or {})
    plugins = [m for m in methods if m not in METHODS]
    if method_args and not plugins:
        raise ValueError(f"method-arg: {', '.join(sorted(method_args))} given, but no method of this sweep is a "
                         f"plugin ({' '.join(methods)}); built-in methods take options of their own")
    for s in sparsities:
        if not 0 < s < 1:
            raise ValueError(f"sparsities: each must be in (0, 1), got {s}")
    patterns = [parse_pattern(p) for p in patterns]
    for b in bits:
        if b not in GPTQ_BITS:
            raise ValueError(f"bits: each must be one of {list(GPTQ_BITS)}, got {b}")
    cells = [Cell("dense", None)]
    for method in methods:
        if method not in METHODS:
            args = method_args
            if registry.find_plugin(method).kind == "pruning":
                specs = [CompressSpec(method, sparsity=s, args=args) for s in sparsities]
                specs += [CompressSpec(method, pattern=p, args=args) for p in patterns]
            else:
                specs = [CompressSpec(method, bits=b, args=args) for b in bits] or [CompressSpec(method, args=args)]
        elif method in PRUNING_METHODS:
            specs = [CompressSpec(method, sparsity=s) for s in sparsities]
            specs += [CompressSpec(method, pattern=p) for p in patterns]
        elif method == "gptq":
            specs = [CompressSpec(method, bits=b, group_size=group_size) for b in bits]
        elif method == "gguf":  # one cell per llama.cpp quant type (``quant_types``)
            specs = [CompressSpec(method, quant_type=q) for q in quant_types]
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
