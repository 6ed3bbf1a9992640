"""Compression methods, one file each: pruning (magnitude, magnitude-global, random, Wanda, SparseGPT; unstructured
or N:M) and quantization (GPTQ via transformers -> optimum -> GPTQModel; int8 / LLM.int8 / NF4 weight-only).

``CompressSpec`` validates a request before any work; ``compress(model, spec, calib)`` applies it in place (pruning)
or returns the quantized model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PRUNING_METHODS = ("magnitude", "magnitude-global", "random", "wanda", "sparsegpt")
QUANT_METHODS = ("gptq", "int8", "bnb-int8", "nf4")
METHODS = PRUNING_METHODS + QUANT_METHODS
CALIBRATED = ("wanda", "sparsegpt", "gptq")
GPTQ_BITS = (2, 3, 4, 8)


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
    """What to do to a model. Exactly one of ``sparsity`` / ``pattern`` for pruning, ``bits`` for GPTQ."""

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
            implied = {"int8": 8, "bnb-int8": 8, "nf4": 4}.get(self.method)
            if implied is not None:
                if self.bits not in (None, implied):
                    raise ValueError(f"bits: {self.method} is {implied}-bit, got {self.bits!r}")
                object.__setattr__(self, "bits", implied)
            if not (self.group_size == -1 or self.group_size > 0):
                raise ValueError(f"group_size: must be -1 (per row) or positive, got {self.group_size}")
        if not 0 < self.damp < 1:
            raise ValueError(f"damp: must be in (0, 1), got {self.damp}")

    @property
    def calibrated(self) -> bool:
        return self.method in CALIBRATED

    @property
    def label(self) -> str:
        """Short name, e.g. ``wanda-50``, ``sparsegpt-2of4``, ``gptq-4bit``."""
        if self.method == "gptq":
            return f"gptq-{self.bits}bit"
        if self.method in QUANT_METHODS:
            return self.method
        if self.pattern:
            return f"{self.method}-{self.pattern[0]}of{self.pattern[1]}"
        return f"{self.method}-{round(self.sparsity * 100):g}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pattern"] = f"{self.pattern[0]}:{self.pattern[1]}" if self.pattern else None
        return d


def check_model(model, spec: CompressSpec) -> None:
    """Fail before any work when the model cannot take ``spec``: no decoder blocks, or an N:M pattern whose M does
    not divide a Linear's input width (the reference code would silently prune a short last group)."""
    from kick_hub.compress.blocks import decoder_layers, linear_layers

    blocks = decoder_layers(model)
    if spec.method == "gptq" and spec.group_size != -1:
        bad = sorted({f"{n} ({lin.in_features})" for b in blocks for n, lin in linear_layers(b).items()
                      if lin.in_features % spec.group_size})
        if bad:  # GPTQModel quantizes these, but its CPU int4 kernel then fails at the first forward pass
            raise ValueError(f"group_size: {spec.group_size} must divide every quantized Linear's in_features; not: "
                             f"{', '.join(bad)} (try --group-size 64 or 32)")
    if spec.pattern:
        m = spec.pattern[1]
        bad = sorted({f"{n} ({lin.in_features})" for b in blocks for n, lin in linear_layers(b).items()
                      if lin.in_features % m})
        if bad:
            raise ValueError(f"pattern: M={m} must divide every pruned Linear's in_features; not: {', '.join(bad)}")


def compress(model, spec: CompressSpec, calibration=None, progress: bool = True):
    """Apply ``spec``; pruning modifies ``model`` in place and returns it, quantization returns a new model and
    leaves the input on the meta device (its weights released, so memory stays near one model copy)."""
    if spec.calibrated and calibration is None:
        raise ValueError(f"calibration: method {spec.method!r} needs calibration ids")
    check_model(model, spec)
    if spec.method in ("magnitude", "magnitude-global", "random"):
        from kick_hub.compress import magnitude

        magnitude.prune(model, spec)
    elif spec.method == "wanda":
        from kick_hub.compress import wanda

        wanda.prune(model, calibration, spec, progress)
    elif spec.method == "sparsegpt":
        from kick_hub.compress import sparsegpt

        sparsegpt.prune(model, calibration, spec, progress)
    elif spec.method == "gptq":
        from kick_hub.compress import gptq

        return gptq.quantize(model, calibration, spec)
    else:
        from kick_hub.compress import weight_only

        return weight_only.quantize(model, spec)
    return model


def make_variant(model_name: str, spec: CompressSpec, output, calibration: str = "world", nsamples: int = 128,
                 seqlen: int | None = None, overwrite: bool = False, progress: bool = True, storage: str = "dense"):
    """Load ``model_name``, compress it by ``spec`` and save the variant with its manifest to ``output``.

    Everything that can be checked is checked before the model is touched; the variant is written atomically.
    """
    import time

    import torch

    from kick_hub import variant
    from kick_hub.compress.blocks import release_freed_memory
    from kick_hub.compress.calibration import calibration_ids, ids_hash
    from kick_hub.engine import load_model, resolve_model

    if storage not in variant.STORAGES:
        raise ValueError(f"storage: must be one of {list(variant.STORAGES)}, got {storage!r}")
    if storage == "sparse" and spec.method not in PRUNING_METHODS:
        raise ValueError(f"storage: 'sparse' stores pruned weights; {spec.method!r} is a quantization method")
    output = variant.prepare_output(output, overwrite)
    if spec.method == "gptq":
        from kick_hub.compress.gptq import check_available

        check_available()
    elif spec.method in QUANT_METHODS:
        from kick_hub.compress.weight_only import check_available

        check_available(spec.method)
    start = time.perf_counter()
    model, tokenizer = load_model(model_name)
    check_model(model, spec)  # a clear error now if the blocks cannot be found or the pattern does not fit
    max_pos = getattr(model.config, "max_position_embeddings", None) or 2048
    seqlen = seqlen or min(2048, max_pos)
    if seqlen > max_pos:
        raise ValueError(f"seqlen: {seqlen} exceeds the model's context ({max_pos})")
    ids = calibration_ids(calibration, tokenizer, nsamples, seqlen, spec.seed) if spec.calibrated else None
    release_freed_memory()  # the tokenized calibration text is gone; do not carry its heap into the compression
    torch.manual_seed(spec.seed)
    model = compress(model, spec, ids, progress=progress)
    sparsity = variant.layer_sparsity(model) if spec.method in PRUNING_METHODS else {}
    manifest = {
        "base_model": model_name, "base_model_path": resolve_model(model_name),
        "base_revision": getattr(model.config, "_commit_hash", None), "method": spec.method, "label": spec.label,
        "spec": spec.to_dict(),
        "calibration": ({"source": calibration, "nsamples": nsamples, "seqlen": seqlen, "seed": spec.seed,
                         "ids_sha256": ids_hash(ids), "file": variant.CALIBRATION_FILE} if ids is not None else None),
        "layer_sparsity": sparsity,
        "sparsity": variant.overall(sparsity, model) if sparsity else 0.0,
        "wall_time_s": round(time.perf_counter() - start, 2), "peak_rss_mb": round(variant.peak_rss_mb(), 1),
        "versions": variant.versions(), "storage": storage,
    }
    return variant.save(model, tokenizer, output, manifest, ids, overwrite, storage)
