"""Compression as one pipeline: load -> check -> calibrate -> apply -> measure -> save.

``make_variant`` is that pipeline, from a model name to a variant directory; ``compress`` is its apply step, the
library entry for a model already in memory. The method itself comes from ``registry``; nothing here branches on a
method's name.
"""

from __future__ import annotations

from collections.abc import Sequence

from kick_hub.compress import registry
from kick_hub.compress.spec import CompressSpec


def check_model(model, spec: CompressSpec) -> None:
    """Fail before any work when the model cannot take ``spec``:

    - no decoder blocks, or blocks with no Linear / GPT-2 Conv1D layer;
    - weight matrices in the blocks that no such layer holds (transformers' fused MoE experts): every method would
      leave them as they are;
    - layers the method's kernels cannot take or would pass over (its ``check_layers``: GPTQModel's CPU kernels,
      bitsandbytes' NF4 shapes, torchao's int8 skipping Conv1D);
    - an N:M pattern whose M does not divide a layer's input width (the reference code would silently prune a short
      last group)."""
    from kick_hub.compress.blockwise import decoder_layers, in_features, linear_layers, unprunable_weights

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
    registry.check_layers(model, spec)
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
    if spec.plugin is not None:  # a plugin that compressed nothing: its cell fails with the plugin named
        if spec.prunes and not spec.sparsity:
            return
        try:
            check_compressed(model, CompressSpec("magnitude", sparsity=0.5) if spec.prunes else CompressSpec("int8"))
        except ValueError as e:
            plugin = registry.find_plugin(spec.method, spec.plugin)
            what = "pruned" if spec.prunes else "quantized"
            raise registry.PluginError(f"method plugin {plugin.describe()} {what} none of the model's layers "
                                       f"({spec.label}; {str(e).split(': ', 1)[-1].split(';')[0]})") from e
        return
    import torch

    from kick_hub.compress.blockwise import prunable_layers

    layers = list(prunable_layers(model).values())
    if spec.prunes:
        if spec.sparsity > 0 and not any(bool((lin.weight == 0).any()) for lin in layers):
            raise ValueError(f"model: {spec.label} pruned none of {type(model).__name__}'s {len(layers)} "
                             "Linear/Conv1D layers; nothing written")
    elif layers and all(type(getattr(lin, "weight", None)) is torch.nn.Parameter and lin.weight.is_floating_point()
                        for lin in layers):
        raise ValueError(f"model: {spec.label} quantized none of {type(model).__name__}'s {len(layers)} "
                         f"{type(layers[0]).__name__} layers; nothing written")


def compress(model, spec: CompressSpec, calibration=None, progress: bool = True, device=None):
    """Apply ``spec`` to ``model``; ``calibration``: token ids ``[nsamples, seqlen]`` for the calibrated methods
    (wanda, sparsegpt, gptq, awq), else unused. ``device`` (None: where the model is) is the compute device: the
    model stays where it is and the methods move one decoder block (wanda, sparsegpt: block offload,
    ``blockwise.run_blockwise``) or one matrix (magnitude, random) at a time to it; gptq and awq hand it to
    GPTQModel / optimum (``registry.check_device`` refuses a device the method cannot use). Pruning modifies
    ``model`` in place and returns it, quantization returns a new model and leaves the input on the meta device (its
    weights released, so memory stays near one model copy).

    SparseGPT and GPTQ set ``kick_damp_raised`` on the returned model: the layers whose Hessian only factorised
    with more damping than ``spec.damp``, and the damping used (``sparsegpt.prune``, ``gptq.quantize``). A
    ValueError when the ids or the model cannot take ``spec`` (``calibration.check_ids``, ``check_model``)."""
    if spec.calibrated:
        from kick_hub.compress.calibration import check_ids, model_limits

        if calibration is None:
            raise ValueError(f"calibration: method {spec.method!r} needs calibration ids")
        check_ids(calibration, *model_limits(model))
    check_model(model, spec)
    if device is not None:
        registry.check_device(spec, str(device))
    if spec.plugin is not None:  # foreign code: its failures become a PluginError naming it
        return registry.run_plugin(model, spec, calibration, progress, device)
    return registry.method(spec.method).apply(model, spec, calibration, progress, device=device)


def check_calibration_options(specs: list[CompressSpec], calibration: str = "world", nsamples: int | None = None,
                              seqlen: int | None = None) -> None:
    """Refuse calibration options given to methods that read none (magnitude, random, int8, ...): a ValueError
    naming them, instead of silently dropping them (and a bad calibration file going unnoticed)."""
    given = [option for option, value in (("--calibration", None if calibration == "world" else calibration),
                                          ("--nsamples", nsamples), ("--seqlen", seqlen)) if value is not None]
    if given and not any(s.calibrated for s in specs):
        from kick_hub.compress.spec import CALIBRATED

        methods = ", ".join(sorted({s.method for s in specs}))
        raise ValueError(f"calibration: {', '.join(given)} not used by {methods} (only {', '.join(CALIBRATED)} "
                         f"calibrate); drop {', '.join(given)}")


def check_gguf_model(model_name: str, methods: Sequence[str]) -> bool:
    """Whether ``model_name`` is a GGUF file (``backends.llamacpp.find_gguf``); for one, ValueError naming
    ``methods`` when any of ``methods`` is not ``gguf``: llama.cpp requantizes a GGUF, the other methods need a
    transformers checkpoint."""
    from kick_hub.backends.llamacpp import find_gguf
    from kick_hub.io import public_name

    if find_gguf(model_name) is None:
        return False
    others = sorted({m for m in methods if m != "gguf"})
    if others:
        raise ValueError(f"methods: {public_name(model_name)} is a GGUF file, which kick requantizes (--methods gguf) "
                         f"but cannot compress with {', '.join(others)}; give the transformers checkpoint as the "
                         "model for those (docs/gguf.md)")
    return True


def check_plan(model_name: str, specs: list[CompressSpec], calibration: str = "world", nsamples: int | None = None,
               seqlen: int | None = None, placement=None) -> None:
    """Check every spec against ``model_name``, ``placement`` and the calibration options before any of them
    runs: the methods' packages, the device and dtype compression would use (``device.resolve`` for ``compress``:
    e.g. float16 on CPU is refused) and each method's ``check_device``, ``check_model`` on the model's layers (an
    empty model built from its config on the meta device: no weights are read) and, when a spec calibrates,
    ``calibration.check_calibration``. For runs of many variants, which would otherwise meet a bad one only when
    they reach it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kick_hub.compress.calibration import check_calibration
    from kick_hub.device import resolve as resolve_placement
    from kick_hub.models import resolve as resolve_model

    for method in sorted({s.method for s in specs}):
        registry.check_available(method)
    if check_gguf_model(model_name, [s.method for s in specs]):  # requantized by llama.cpp, no config to read
        from kick_hub.compress.methods.gguf import check_quant_type

        for spec in specs:
            check_quant_type(spec.quant_type)
        if any(s.calibrated for s in specs):
            check_calibration(calibration, model_name, nsamples, seqlen)
        return
    config = AutoConfig.from_pretrained(resolve_model(model_name))
    device = resolve_placement(placement, config, "compress").device
    for spec in specs:
        registry.check_device(spec, device)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    for spec in specs:
        check_model(skeleton, spec)
    if any(s.calibrated for s in specs):
        check_calibration(calibration, model_name, nsamples, seqlen)


def _calibration_bytes(model_name: str, spec: CompressSpec, calibration: str, nsamples: int | None,
                       seqlen: int | None) -> int:
    """About the bytes of the calibration ids a variant keeps (int64 ``nsamples`` x ``seqlen``; an id file's own
    size), 0 for a data-free method or when the sizes cannot be known before loading."""
    from kick_hub.compress import calibration as calib

    if not spec.calibrated:
        return 0
    if calib.is_id_file(calibration):
        from pathlib import Path

        file = Path(calibration)
        return file.stat().st_size if file.is_file() else 0  # at most the ids kept (they may be cut)
    if seqlen is None:
        try:
            from transformers import AutoConfig

            from kick_hub.models import resolve as resolve_model

            seqlen = min(2048, calib.model_limits(AutoConfig.from_pretrained(resolve_model(model_name)))[1] or 2048)
        except Exception:  # noqa: BLE001 - the config is read (and its errors reported) when the model loads
            return 0
    return (nsamples or calib.DEFAULT_NSAMPLES) * seqlen * 8


def make_variant(model_name: str, spec: CompressSpec, output, calibration: str = "world",
                 nsamples: int | None = None, seqlen: int | None = None, overwrite: bool = False,
                 progress: bool = True, storage: str = "dense", placement=None):
    """Load ``model_name``, compress it by ``spec`` and save the variant with its manifest to ``output``; returns
    the variant's path.

    Calibration (wanda, sparsegpt, gptq): ``nsamples`` x ``seqlen`` ids from ``calibration``; unset sizes are a
    ``.pt`` / ``.safetensors`` id file's own shape, else 128 windows of min(2048, context) tokens. The manifest
    records the ids' actual shape.

    ``placement`` (``kick_hub.device.Placement``; None: auto device, auto dtype): the model is loaded into CPU
    memory in the resolved dtype and the method computes on the resolved device (``compress``); a device that is not
    there, a dtype the device cannot compress in (16-bit on CPU), a device map, or a device the method cannot use
    (awq off CUDA) is refused before the model is loaded. The manifest's ``placement`` records what was asked and
    what it resolved to, and ``compute_device`` where the method computed.

    Everything that can be checked is checked before the model is touched, the free space on ``output``'s
    filesystem included (``variant.check_space`` with ``variant.variant_bytes``: ValueError naming ``output`` with
    both sizes); the variant is written atomically (``io.atomic_dir``: a full disk midway is a ``NoSpaceError``
    and nothing is left behind). The manifest records the base model's ``parameters`` and the versions of the
    libraries that wrote quantized weights (``quantizer_versions``, also in ``versions``).
    """
    import time

    import torch

    from kick_hub import variant, versions
    from kick_hub.compress import calibration as calib
    from kick_hub.compress.memory import peak_rss_mb, release_freed_memory
    from kick_hub.models import load_model
    from kick_hub.io import public_name

    own = getattr(registry.method(spec.method), "make_variant", None)
    if own is not None:  # a method that writes its own artifact (gguf: a GGUF file beside the manifest)
        return own(model_name, spec, output, calibration=calibration, nsamples=nsamples, seqlen=seqlen,
                   overwrite=overwrite, progress=progress, storage=storage, placement=placement)
    # check: options, output dir, the method's packages
    if storage not in variant.STORAGES:
        raise ValueError(f"storage: must be one of {list(variant.STORAGES)}, got {storage!r}")
    if storage == "sparse" and not spec.prunes:
        raise ValueError(f"storage: 'sparse' stores pruned weights; {spec.method!r} is a quantization method")
    output = variant.prepare_output(output, overwrite)
    registry.check_available(spec.method)
    # where: resolved and checked before any weight is read (load_model resolves it again with the config)
    from kick_hub.device import resolve as resolve_placement

    registry.check_device(spec, resolve_placement(placement, None, "compress").device)
    # space: the variant's size from the parameter count and dtype (safetensors headers, no weight read)
    variant.check_space(output, variant.variant_bytes(model_name, placement, spec, storage,
                                                      _calibration_bytes(model_name, spec, calibration, nsamples,
                                                                         seqlen)),
                        f"the {spec.label} variant of {public_name(model_name)}")
    # load, then check the model before the calibration is built
    start = time.perf_counter()
    model, tokenizer = load_model(model_name, placement, purpose="compress")
    resolved = model.kick_placement
    parameters = sum(p.numel() for p in model.parameters())  # before compression: shared (tied) tensors once
    check_model(model, spec)  # a clear error now if the blocks cannot be found or the pattern does not fit
    max_pos = calib.model_limits(model)[1] or 2048  # the text config's context (multimodal wrappers too)
    if seqlen is not None and seqlen > max_pos:
        raise ValueError(f"seqlen: {seqlen} exceeds the model's context ({max_pos})")
    # calibrate
    ids = None
    if spec.calibrated:
        default_seqlen = None if calib.is_id_file(calibration) else min(2048, max_pos)
        ids = calib.calibration_ids(calibration, tokenizer, nsamples, seqlen or default_seqlen, spec.seed)
        calib.check_ids(ids, *calib.model_limits(model), calibration)
    release_freed_memory()  # the tokenized calibration text is gone; do not carry its heap into the compression
    # apply
    torch.manual_seed(spec.seed)
    # on the CPU the model is where it computes (in place); elsewhere it stays in CPU memory and the method moves one
    # block or matrix at a time to the device
    model = compress(model, spec, ids, progress=progress, device=None if resolved.device == "cpu" else resolved.device)
    check_compressed(model, spec)  # a variant that is not what its label says is never written
    # measure
    sparsity = variant.layer_sparsity(model) if spec.prunes else {}
    manifest = {
        "base_model": public_name(model_name),  # published with the variant: no path of this machine
        "base_revision": getattr(model.config, "_commit_hash", None), "method": spec.method, "label": spec.label,
        "spec": spec.to_dict(),
        "calibration": ({"source": calibration, "nsamples": ids.shape[0], "seqlen": ids.shape[1], "seed": spec.seed,
                         "ids_sha256": calib.ids_hash(ids), "file": variant.CALIBRATION_FILE}
                        if ids is not None else None),
        "layer_sparsity": sparsity,
        "sparsity": variant.overall(sparsity, model) if sparsity else 0.0,
        "wall_time_s": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
        "versions": {**versions(), **variant.library_versions(spec.method)}, "storage": storage,
        "quantizer_versions": variant.library_versions(spec.method),  # the libraries that wrote the weights
        "parameters": parameters,  # of the base model: the denominator of the card's bits per weight
        "threads": torch.get_num_threads(),  # SparseGPT and GPTQ weights depend on it (see hub.card.reproduce_argv)
        "placement": resolved.to_dict(),  # device and dtype, asked and resolved
        "compute_device": registry.compute_device(spec, resolved.device),
        **registry.manifest_entries(model, spec),  # what the method recorded (e.g. sparsegpt's damp_raised)
    }
    # save
    return variant.save(model, tokenizer, output, manifest, ids, overwrite, storage)
