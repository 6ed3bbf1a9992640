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
    """Fail before any work when the model cannot take ``spec``:

    - no decoder blocks, or blocks with no Linear / GPT-2 Conv1D layer;
    - weight matrices in the blocks that no such layer holds (transformers' fused MoE experts): every method would
      leave them as they are;
    - layers a quantizer's kernels cannot take (``gptq.check_layers``, ``weight_only.check_layers``) or that it
      passes over (torchao's int8 skips Conv1D);
    - an N:M pattern whose M does not divide a layer's input width (the reference code would silently prune a short
      last group)."""
    from kick_hub.compress.blocks import decoder_layers, in_features, linear_layers, unprunable_weights

    blocks = decoder_layers(model)
    kind = type(blocks[0]).__name__
    layers = {f"{i}.{n}": lin for i, b in enumerate(blocks) for n, lin in linear_layers(b).items()}
    if not layers:
        types = sorted({type(m).__name__ for b in blocks for m in b.modules() if not list(m.children())})
        raise ValueError(f"model: {kind} blocks of {type(model).__name__} hold no Linear or Conv1D layer (only "
                         f"{', '.join(types) or 'nothing'}); {spec.method} has nothing it can compress")
    # pruning and every quantizer (torchao, bitsandbytes, optimum's GPTQ) take Linear / Conv1D layers only
    loose = {f"{i}.{n}": t for i, b in enumerate(blocks) for n, t in unprunable_weights(b).items()}
    if loose:
        raise ValueError(f"model: {kind} holds weight matrices that are not Linear/Conv1D layers, which "
                         f"{spec.method} cannot compress and would leave as they are: "
                         + ", ".join(f"{n} ({t})" for n, t in list(loose.items())[:4])
                         + (f" and {len(loose) - 4} more" if len(loose) > 4 else ""))
    if spec.method == "gptq":  # every constraint GPTQModel's CPU kernels put on the layers, by layer
        from kick_hub.compress.gptq import check_layers

        check_layers(model, spec)
    elif spec.method in QUANT_METHODS:  # likewise for torchao / bitsandbytes
        from kick_hub.compress.weight_only import check_layers

        check_layers(model, spec)
    if spec.method in ("int8", "bnb-int8", "nf4"):
        # a block layer the quantizer passes over stays float32 under the label (torchao takes nn.Linear only, so a
        # GPT-2 "int8" variant would be the dense model)
        from kick_hub.compress.weight_only import quantized_layers
        from kick_hub.variant import pruned_linear_names

        taken = quantized_layers(model, spec.method)
        skipped = [n for n in pruned_linear_names(model) if n not in taken]
        if skipped:
            modules = dict(model.named_modules())
            types = sorted({type(modules[n]).__name__ for n in skipped})
            raise ValueError(f"method: {spec.method} would leave {len(skipped)} of {type(model).__name__}'s "
                             f"{len(layers)} block layers unquantized ({', '.join(types)}: {skipped[0]}, ...)"
                             + ("; torchao quantizes nn.Linear only (use bnb-int8)" if spec.method == "int8" else ""))
    if spec.pattern:
        m = spec.pattern[1]
        bad = sorted({f"{n} ({in_features(lin)})" for b in blocks for n, lin in linear_layers(b).items()
                      if in_features(lin) % m})
        if bad:
            raise ValueError(f"pattern: M={m} must divide every pruned layer's in_features; not: {', '.join(bad)}")


def check_compressed(model, spec: CompressSpec) -> None:
    """Fail, before anything is written, when compression left the model as it was: a pruning spec with sparsity > 0
    under which no prunable layer has a single zero, or a quantization after which every block layer is still a
    plain float matrix. A variant's label must describe its weights."""
    import torch

    from kick_hub.compress.blocks import decoder_layers, linear_layers

    layers = [lin for b in decoder_layers(model) for lin in linear_layers(b).values()]
    if spec.method in PRUNING_METHODS:
        if spec.sparsity > 0 and not any(bool((lin.weight == 0).any()) for lin in layers):
            raise ValueError(f"model: {spec.label} pruned none of {type(model).__name__}'s {len(layers)} "
                             "Linear/Conv1D layers; nothing written")
    elif layers and all(type(getattr(lin, "weight", None)) is torch.nn.Parameter and lin.weight.is_floating_point()
                        for lin in layers):
        raise ValueError(f"model: {spec.label} quantized none of {type(model).__name__}'s {len(layers)} "
                         f"{type(layers[0]).__name__} layers; nothing written")


def compress(model, spec: CompressSpec, calibration=None, progress: bool = True):
    """Apply ``spec``; pruning modifies ``model`` in place and returns it, quantization returns a new model and
    leaves the input on the meta device (its weights released, so memory stays near one model copy).

    SparseGPT and GPTQ set ``kick_damp_raised`` on the returned model: the layers whose Hessian only factorised
    with more damping than ``spec.damp``, and the damping used (``sparsegpt.prune``, ``gptq.quantize``)."""
    if spec.calibrated:
        from kick_hub.compress.calibration import check_ids, model_limits

        if calibration is None:
            raise ValueError(f"calibration: method {spec.method!r} needs calibration ids")
        check_ids(calibration, *model_limits(model))
    check_model(model, spec)
    if spec.method in ("magnitude", "magnitude-global", "random"):
        from kick_hub.compress import magnitude

        magnitude.prune(model, spec)
    elif spec.method == "wanda":
        from kick_hub.compress import wanda

        wanda.prune(model, calibration, spec, progress)
    elif spec.method == "sparsegpt":
        from kick_hub.compress import sparsegpt

        model.kick_damp_raised = sparsegpt.prune(model, calibration, spec, progress)
    elif spec.method == "gptq":
        from kick_hub.compress import gptq

        return gptq.quantize(model, calibration, spec)
    else:
        from kick_hub.compress import weight_only

        return weight_only.quantize(model, spec)
    return model


def check_plan(model_name: str, specs: list[CompressSpec], calibration: str = "world", nsamples: int | None = None,
               seqlen: int | None = None) -> None:
    """Check every spec against ``model_name`` and the calibration options before any of them runs: the method's
    packages, ``check_model`` on the model's layers (an empty model built from its config on the meta device: no
    weights are read) and, when a spec calibrates, ``calibration.check_calibration``. For runs of many variants,
    which would otherwise meet a bad one only when they reach it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kick_hub.compress.calibration import check_calibration
    from kick_hub.engine import resolve_model

    for method in sorted({s.method for s in specs} & set(QUANT_METHODS)):
        if method == "gptq":
            from kick_hub.compress.gptq import check_available

            check_available()
        else:
            from kick_hub.compress.weight_only import check_available

            check_available(method)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(model_name)))
    for spec in specs:
        check_model(skeleton, spec)
    if any(s.calibrated for s in specs):
        check_calibration(calibration, model_name, nsamples, seqlen)


def make_variant(model_name: str, spec: CompressSpec, output, calibration: str = "world",
                 nsamples: int | None = None, seqlen: int | None = None, overwrite: bool = False,
                 progress: bool = True, storage: str = "dense"):
    """Load ``model_name``, compress it by ``spec`` and save the variant with its manifest to ``output``.

    Calibration (wanda, sparsegpt, gptq): ``nsamples`` x ``seqlen`` ids from ``calibration``; unset sizes are a
    ``.pt`` / ``.safetensors`` id file's own shape, else 128 windows of min(2048, context) tokens. The manifest
    records the ids' actual shape.

    Everything that can be checked is checked before the model is touched; the variant is written atomically.
    """
    import time

    import torch

    from kick_hub import variant
    from kick_hub.compress.blocks import release_freed_memory
    from kick_hub.compress.calibration import calibration_ids, check_ids, ids_hash, is_id_file, model_limits
    from kick_hub.engine import load_model
    from kick_hub.io import public_name

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
    if seqlen is not None and seqlen > max_pos:
        raise ValueError(f"seqlen: {seqlen} exceeds the model's context ({max_pos})")
    ids = None
    if spec.calibrated:
        default_seqlen = None if is_id_file(calibration) else min(2048, max_pos)
        ids = calibration_ids(calibration, tokenizer, nsamples, seqlen or default_seqlen, spec.seed)
        check_ids(ids, *model_limits(model), calibration)
    release_freed_memory()  # the tokenized calibration text is gone; do not carry its heap into the compression
    torch.manual_seed(spec.seed)
    model = compress(model, spec, ids, progress=progress)
    check_compressed(model, spec)  # a variant that is not what its label says is never written
    sparsity = variant.layer_sparsity(model) if spec.method in PRUNING_METHODS else {}
    manifest = {
        "base_model": public_name(model_name),  # published with the variant: no path of this machine
        "base_revision": getattr(model.config, "_commit_hash", None), "method": spec.method, "label": spec.label,
        "spec": spec.to_dict(),
        "calibration": ({"source": calibration, "nsamples": ids.shape[0], "seqlen": ids.shape[1], "seed": spec.seed,
                         "ids_sha256": ids_hash(ids), "file": variant.CALIBRATION_FILE} if ids is not None else None),
        "layer_sparsity": sparsity,
        "sparsity": variant.overall(sparsity, model) if sparsity else 0.0,
        "wall_time_s": round(time.perf_counter() - start, 2), "peak_rss_mb": round(variant.peak_rss_mb(), 1),
        "versions": variant.versions(), "storage": storage,
        "threads": torch.get_num_threads(),  # SparseGPT and GPTQ weights depend on it (see hub.card.reproduce_argv)
    }
    if spec.method in ("sparsegpt", "gptq"):
        # layer -> damping used where the Hessian did not factorise with spec.damp; rerunning the same spec on the
        # same calibration raises the same layers to the same damping
        manifest["damp_raised"] = dict(getattr(model, "kick_damp_raised", {}))
        if spec.method == "gptq":
            manifest["hessian_floor"] = dict(getattr(model, "kick_hessian_floor", {}))
    return variant.save(model, tokenizer, output, manifest, ids, overwrite, storage)
