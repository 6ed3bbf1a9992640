"""GPTQ quantization (Frantar et al., 2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", section 4, Algorithm 1) through the ecosystem's own path: transformers ``GPTQConfig`` -> optimum ->
GPTQModel (ModelCloud/GPTQModel ``gptqmodel/quantization/gptq.py``).

Devices: the model is held in CPU memory and optimum's own device handling (``GPTQQuantizer.quantize_model``) moves
each decoder block to ``cuda:0`` for its Hessians and GPTQ updates whenever CUDA is present, and back; on CPU
everything runs on the CPU. ``--device cpu`` on a CUDA machine keeps optimum off the GPU (``device_choice``);
``cuda:N`` other than 0 and ``mps`` are refused (``check_device``): optimum moves blocks to device 0 only. The
packed model lives on the CPU with GPTQModel's CPU kernels, whatever device quantized it.

The calibration ids are handed to optimum pre-tokenized (so a run is reproducible from the saved ids) and removed
from the config before saving, so ``config.json`` never carries the calibration data. GPTQModel packs 2/3/4/8-bit
weights; symmetric checkpoints are saved in the v1 ``gptq`` format auto-gptq readers expect (see ``to_v1_format``).

``check_layers`` states, before any calibration, every constraint GPTQModel's CPU kernels put on the layers.
The quantized model stays in GPTQModel's own ``gptq_v2`` layout in memory (the layout its kernels compute with), and
its state dict gives the checkpoint tensors captured right after packing (``keep_checkpoint_state``): the CPU int4
kernels repack their weights at the first forward pass, so a model saved after use is still the model measured.

Hessians that do not factorise: GPTQModel's ``GPTQ.hessian_inverse`` (7.6) first tries ``damp_percent``, then walks
``damp_percent + k x damp_auto_increment`` (0.0015, the default ``fasterquant`` gives it under optimum) below 1.0,
then adds growing floors to the diagonal; it returns the damping used, which optimum discards, and when all of that
fails it returns no inverse and the layer is rounded to nearest with nothing said. A NaN loss makes it retry the
layer, and every later one (the setting is shared), with an identity inverse. ``recorded_hessian_inverse`` records
the first two per layer (the manifest's ``damp_raised`` / ``hessian_floor``) and turns the last two into a
ValueError naming the layer.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from kick_hub.compress.methods.hf_quantize import layer_features, quantize_in_memory

if TYPE_CHECKING:
    from kick_hub.compress.spec import CompressSpec

# dtype of the calibration forward passes: CPUs have fast bf16 matmuls and no fast fp16 ones (4-bit world model:
# 23 s in bf16, 108 s in fp16, 38 s in fp32, which would also double the working memory)
WORK_DTYPE = torch.bfloat16
INSTALL = "pip install 'kick-hub[gptq]'  (optimum>=2.3 and gptqmodel==7.6.0, the newest accepting torch 2.13)"


def check_available(method: str = "gptq") -> None:
    """Fail early with an ImportError naming the install command when the GPTQ stack (optimum, gptqmodel) is
    missing."""
    missing = []
    for module in ("optimum", "gptqmodel"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"gptq needs {', '.join(missing)}: {INSTALL}")


# GPTQModel packs every layer into 32-bit words along both dimensions (``PackableQuantLinear.pack_block``: "in_features
# must be divisible by 32", "pack_block extension requires out_features to be divisible by 32"), a rule its kernel
# classes do not declare (their SUPPORTS_IN/OUT_FEATURES_DIVISIBLE_BY are [1])
PACK_WORD_BITS = 32
# group sizes GPTQModel's kernels know; the ones its CPU kernels accept for ``spec.bits`` are listed in errors
GROUP_SIZES = (-1, 16, 32, 64, 128, 256, 512, 1024)
# CPU kernels that hand ``group_size`` to torch's int4 matmul (``aten::_weight_int4pack_mm_for_cpu``), which needs
# whole groups: a layer whose in_features it does not divide packs, then fails at its first forward pass
WHOLE_GROUP_KERNELS = ("TorchAtenLinear", "TorchFusedLinear")


def kernels(spec: CompressSpec) -> dict[str, type]:
    """GPTQModel's QuantLinear classes for ``spec`` on CPU, chosen as optimum (``"packing"``, when it writes the
    quantized weights) and transformers (``"inference"``, when it loads the checkpoint) choose them. A ValueError
    naming ``group_size`` and the sizes that would work when GPTQModel has no CPU kernel for ``spec``."""
    check_available()
    from gptqmodel.utils.importer import hf_select_quant_linear_v2

    def select(group_size: int, pack: bool) -> type:
        return hf_select_quant_linear_v2(bits=spec.bits, group_size=group_size, desc_act=spec.desc_act, sym=spec.sym,
                                         format="gptq", quant_method="gptq", meta=None, device_map={"": "cpu"},
                                         backend="auto", pack=pack)

    try:
        return {"packing": select(spec.group_size, True), "inference": select(spec.group_size, False)}
    except (ValueError, NotImplementedError) as e:
        reason = str(e)
    working = []
    for size in GROUP_SIZES:
        try:
            select(size, True), select(size, False)
        except (ValueError, NotImplementedError):
            continue
        working.append(size)
    raise ValueError(f"group_size: GPTQModel has no CPU kernel for {spec.bits}-bit GPTQ with group_size "
                     f"{spec.group_size} (desc_act={spec.desc_act}, sym={spec.sym}); it supports {working} "
                     f"({reason})")


def check_layers(model: torch.nn.Module, spec: CompressSpec) -> None:
    """Fail, before any calibration, when GPTQModel's CPU kernels cannot take one of the layers optimum would
    quantize (every Linear / Conv1D / Conv2d in the decoder blocks). The rules, from GPTQModel 7.6's CPU path:

    - a kernel exists for bits / group_size / desc_act / sym (``kernels``);
    - in_features and out_features are multiples of 32 (weights are packed into 32-bit words);
    - group_size divides in_features, for the kernels that run torch's int4 matmul (4-bit: TorchAtenLinear and
      TorchFusedLinear, whose per-row group is in_features itself);
    - each kernel's own ``validate`` (its declared bits, group sizes, shape divisors) passes for the layer's shape.

    The ValueError names every layer that breaks a rule (as ``<name in block> (<size>)``) and the rule."""
    from gptqmodel.models._const import DEVICE
    from optimum.gptq.utils import get_layers

    from kick_hub.compress.blockwise import decoder_layers

    chosen = kernels(spec)
    whole_groups = sorted({c.__name__ for c in chosen.values()} & set(WHOLE_GROUP_KERNELS))
    pack = f"for GPTQModel to pack {spec.bits}-bit weights into {PACK_WORD_BITS}-bit words"
    widths = {layer_features(layer)[0] for block in decoder_layers(model) for layer in get_layers(block).values()}
    fitting = [g for g in GROUP_SIZES if g > 0 and all(w % g == 0 for w in widths)]
    bad: dict[tuple[str, str], set[str]] = {}  # (rule, hint) -> layers breaking it
    for block in decoder_layers(model):
        for name, layer in get_layers(block).items():
            fin, fout = layer_features(layer)
            if fin % PACK_WORD_BITS:
                bad.setdefault((f"model: in_features must be a multiple of {PACK_WORD_BITS}", pack), set()).add(
                    f"{name} ({fin})")
            if fout % PACK_WORD_BITS:
                bad.setdefault((f"model: out_features must be a multiple of {PACK_WORD_BITS}", pack), set()).add(
                    f"{name} ({fout})")
            if whole_groups and spec.group_size != -1 and fin % spec.group_size:
                bad.setdefault((f"group_size: {spec.group_size} must divide every quantized Linear's in_features",
                                f"GPTQModel's CPU kernel {whole_groups[0]} computes whole groups; group sizes that "
                                f"fit: {fitting or 'none'}"), set()).add(f"{name} ({fin})")
            for role, kernel in chosen.items():
                ok, err = kernel.validate(bits=spec.bits, group_size=spec.group_size, desc_act=spec.desc_act,
                                          sym=spec.sym, in_features=fin, out_features=fout, pack_dtype=torch.int32,
                                          device=DEVICE.CPU)
                if not ok:
                    bad.setdefault((f"model: GPTQModel's {role} kernel {kernel.__name__} refuses these layers",
                                    re.sub(r"^<class '[^']*'>:?\s*", "", str(err))), set()).add(name)
    if bad:
        raise ValueError("; ".join(f"{rule}; not: {', '.join(sorted(layers))} ({hint})"
                                   for (rule, hint), layers in bad.items()))


def check_device(spec: CompressSpec, device: str) -> None:
    """Refuse, before any work, a compute device optimum's GPTQ path cannot use: it quantizes on ``cuda:0`` when
    CUDA is present and on the CPU otherwise; ``cuda:N`` (N > 0) and ``mps`` raise a ValueError naming ``device``."""
    if device not in ("cpu", "cuda:0"):
        raise ValueError(f"device: gptq runs through optimum, which quantizes on cuda:0 (or the CPU); got {device!r}; "
                         "use --device cuda or cpu (select another GPU with CUDA_VISIBLE_DEVICES)")


def work_dtype(model: torch.nn.Module, device: str) -> torch.dtype:
    """The dtype of GPTQ's calibration forward passes: ``WORK_DTYPE`` (bfloat16) on CPU; on CUDA the model's own
    16-bit dtype, float16 for a float32 model (GPTQ's usual working dtype on GPUs)."""
    if device == "cpu":
        return WORK_DTYPE
    return model.dtype if model.dtype in (torch.float16, torch.bfloat16) else torch.float16


@contextlib.contextmanager
def device_choice(device: str) -> Iterator[None]:
    """While in the block, optimum's GPTQ moves blocks to CUDA only when ``device`` is a CUDA device: with ``cpu``
    its ``has_device_more_than_cpu`` answers False, so ``--device cpu`` quantizes on the CPU on a GPU machine too."""
    import optimum.gptq.quantizer as quantizer

    original = quantizer.has_device_more_than_cpu
    if not device.startswith("cuda"):
        quantizer.has_device_more_than_cpu = lambda: False
    try:
        yield
    finally:
        quantizer.has_device_more_than_cpu = original


def quantize(model: torch.nn.Module, calibration: torch.Tensor, spec: CompressSpec,
             device: str = "cpu") -> torch.nn.Module:
    """Quantize a loaded model with GPTQ on ``calibration`` token ids ``[nsamples, seqlen]`` (each row one
    calibration sample, all-ones attention mask); ``spec.bits`` per weight, ``spec.group_size`` input columns per
    scale (-1: one per output row), ``spec.damp`` a fraction of mean(diag H). Returns the GPTQ model in fp16 (the
    dtype GPTQ checkpoints are read in), in eval mode, its layers in GPTQModel's ``gptq_v2`` layout and its state
    dict the checkpoint's (``keep_checkpoint_state``).
    ``device``: ``cpu`` or ``cuda:0`` (``check_device``), where optimum computes each block (``device_choice``).
    The input model's weights are cast in place to ``work_dtype`` and released once handed over. The returned model's
    ``kick_damp_raised`` / ``kick_hessian_floor`` hold GPTQModel's Hessian recoveries (``recorded_hessian_inverse``);
    a ValueError naming the layer when a Hessian does not factorise at all."""
    check_available()
    from transformers import GPTQConfig

    dataset = [{"input_ids": row[None], "attention_mask": torch.ones_like(row)[None]} for row in calibration]
    # the ids are pre-tokenized, so optimum needs no tokenizer; act_group_aware (GPTQModel's group-aware ordering)
    # exists only for grouped, non-desc_act quantization and GPTQModel refuses it otherwise
    config = GPTQConfig(bits=spec.bits, dataset=dataset, group_size=spec.group_size, desc_act=spec.desc_act,
                        act_group_aware=spec.group_size != -1 and not spec.desc_act, sym=spec.sym,
                        damp_percent=spec.damp, model_seqlen=calibration.shape[1], batch_size=1,
                        modules_in_block_to_quantize=shared_input_groups(model, calibration[0]))
    raised: dict[str, float] = {}
    floor: dict[str, float] = {}
    try:
        with recorded_hessian_inverse(raised, floor), device_choice(device):
            quantized = quantize_in_memory(model, config, work_dtype(model, device))
    except NameError as e:  # optimum without gptqmodel fails with `NameError: QuantizeConfig`
        raise ImportError(f"gptq: optimum could not reach GPTQModel ({e}): {INSTALL}") from e
    quantized.kick_damp_raised, quantized.kick_hessian_floor = raised, floor
    _to_fp16(quantized)
    quantized.config.quantization_config.dataset = None  # never ship calibration data in config.json
    # the grouping only saved forward passes; without it a loader converts the same layers (every one in the blocks)
    quantized.config.quantization_config.modules_in_block_to_quantize = None
    quantized.config.quantization_config.tokenizer = None  # transformers fills in the model's path
    quantized.eval()
    keep_checkpoint_state(quantized)
    return quantized


@torch.no_grad()
def shared_input_groups(model: torch.nn.Module, row: torch.Tensor) -> list[list[str]] | None:
    """optimum's ``modules_in_block_to_quantize`` that quantizes exactly as its default (one layer at a time, in
    ``get_layers`` order, each after a forward pass over the calibration set with the layers before it quantized)
    with fewer forward passes: consecutive layers that take the very same input tensor share one pass, e.g.
    ``[[q, k, v], [o], [gate, up], [down]]`` for a Llama block (5 passes per block instead of 8). Their inputs do not
    depend on each other's weights, so every Hessian, and so every quantized weight, is unchanged.

    Found from one forward pass of the model over the first 16 ids of ``row`` (``[seqlen]``), stopped after the first
    block. None (optimum's default) when a layer of that block is called other than exactly once, or when the blocks
    do not all hold the same layer names."""
    from optimum.gptq.utils import get_block_name_with_pattern, get_layers

    from kick_hub.compress.blockwise import StopForward

    blocks = model.get_submodule(get_block_name_with_pattern(model))
    layers = get_layers(blocks[0])
    names = list(layers)
    if not names or any(list(get_layers(b)) != names for b in blocks[1:]):
        return None
    calls: list[tuple[str, torch.Tensor]] = []
    handles = [layers[n].register_forward_pre_hook(lambda m, args, n=n: calls.append((n, args[0]))) for n in names]

    def stop(*_):
        raise StopForward

    handles.append(blocks[0].register_forward_hook(stop))
    try:
        model(input_ids=row[None, :16], use_cache=False)
    except StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    if sorted(n for n, _ in calls) != sorted(names):
        return None
    inputs = dict(calls)
    groups = [[names[0]]]
    for name in names[1:]:
        if inputs[name] is inputs[groups[-1][-1]]:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


@contextlib.contextmanager
def recorded_hessian_inverse(raised: dict[str, float], floor: dict[str, float]) -> Iterator[None]:
    """While in the block, GPTQModel's ``GPTQ.hessian_inverse`` (the damped Cholesky inverse of GPTQ, Frantar et al.
    2023, IST-DASLab/gptq ``fasterquant``) records into ``raised`` each layer (``layers.<block>.<name>``, as
    ``variant.layer_sparsity`` names them) whose Hessian ``[in, in]`` needed more damping than the requested
    ``damp_percent``, with the damping used, and into ``floor`` each layer whose diagonal GPTQModel had to raise,
    with the smallest amount added; each is printed to stderr. A ValueError naming the layer where GPTQModel finds
    no inverse (it would round the layer to nearest) or retries after a NaN loss (with an identity inverse, for
    every later layer too). Layer names come from the model optimum's ``GPTQQuantizer.quantize_model`` is given."""
    from gptqmodel.quantization.gptq import GPTQ
    from optimum.gptq.quantizer import GPTQQuantizer

    from kick_hub.compress.blockwise import prunable_layers

    names: dict[int, str] = {}
    quantize_model, hessian_inverse, mock_inverse = (GPTQQuantizer.quantize_model, GPTQ.hessian_inverse,
                                                     GPTQ.mock_hessian_inverse)
    remedy = "give more calibration (--nsamples / --seqlen) or a larger --damp"

    def named_quantize_model(self, model, *args, **kwargs):
        names.update({id(lin): name for name, lin in prunable_layers(model).items()})
        return quantize_model(self, model, *args, **kwargs)

    def recording_inverse(self, H):
        name = names.get(id(self.module), type(self.module).__name__)
        requested = float(self.qcfg.damp_percent)
        diag = H.diagonal().clone()
        factor, damp = hessian_inverse(self, H)
        if factor is None:
            if not bool(torch.isfinite(H).all()):
                raise ValueError(f"calibration: {name}'s Hessian holds NaN or inf: the layer's calibration inputs "
                                 "overflow")
            raise ValueError(f"calibration: {name}'s Hessian is not positive definite even after GPTQModel's "
                             f"recovery (damp_percent from {requested:g} up to 1, then diagonal floors); {remedy}")
        added = H.diagonal() - diag
        if bool((added != 0).any()):
            floor[name] = float(f"{added.min().item():.3g}")
            print(f"gptq: {name}: Hessian not positive definite; GPTQModel raised its diagonal by "
                  f"{floor[name]:g}", file=sys.stderr)
        if damp != requested:
            raised[name] = float(damp)
            print(f"gptq: {name}: Hessian not positive definite with damp={requested:g}; GPTQModel used "
                  f"damp={damp:g}", file=sys.stderr)
        return factor, damp

    def refused_mock_inverse(self, H):
        name = names.get(id(self.module), type(self.module).__name__)
        if not bool(torch.isfinite(self.module.weight).all()):
            raise ValueError(f"model: {name}'s weight holds NaN or inf; GPTQ cannot quantize it")
        raise ValueError(f"calibration: GPTQ's loss for {name} is NaN (GPTQModel would quantize it and every later "
                         f"layer without error compensation); {remedy}")

    GPTQQuantizer.quantize_model, GPTQ.hessian_inverse = named_quantize_model, recording_inverse
    GPTQ.mock_hessian_inverse = refused_mock_inverse
    try:
        yield
    finally:
        GPTQQuantizer.quantize_model, GPTQ.hessian_inverse = quantize_model, hessian_inverse
        GPTQ.mock_hessian_inverse = mock_inverse


def _to_fp16(model) -> None:
    """Cast the quantized model's float tensors (scales, embeddings, norms) to fp16 in place; the packed integer
    weights are untouched. ``model.to(dtype)`` refuses GPTQ models; non-persistent buffers (rotary frequencies)
    keep their precision, as they are recomputed on load anyway."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.data = p.data.to(torch.float16)
        for module in model.modules():
            for name, buf in module._buffers.items():
                if buf is not None and buf.is_floating_point() and name not in module._non_persistent_buffers_set:
                    module._buffers[name] = buf.to(torch.float16)
    model.config.dtype = torch.float16


def to_v1_format(model: torch.nn.Module) -> torch.nn.Module:
    """GPTQModel works in its ``gptq_v2`` layout; symmetric checkpoints are converted back to ``gptq`` (v1), the
    format auto-gptq and older readers load (optimum's own ``save`` does this; transformers' save path does not).
    Asymmetric checkpoints stay ``gptq_v2`` (v1 cannot represent them). Converts the layers in place: GPTQModel's
    kernels compute with v2, so a converted model is for saving, not for running."""
    from gptqmodel.utils.model import hf_convert_gptq_v2_to_v1_format

    q = model.hf_quantizer.optimum_quantizer
    model, converted = hf_convert_gptq_v2_to_v1_format(model, q.sym, q.bits, q.quant_linear, q.format, q.meta)
    if converted:
        model.config.quantization_config.format = "gptq"
        model.config.quantization_config.checkpoint_format = "gptq"
    return model


def keep_checkpoint_state(model: torch.nn.Module) -> None:
    """Make ``model.state_dict()`` (and so ``save_pretrained``) give the checkpoint tensors as they are right now,
    whatever the model does later, while the model itself keeps computing in ``gptq_v2``.

    GPTQModel's CPU int4 kernels (TorchAtenLinear, TorchFusedLinear) replace ``qweight`` / ``qzeros`` / ``scales``
    with torch's int4-matmul layout at their first forward pass in eval mode, and every kernel computes with v2 zero
    points while the checkpoint holds v1 (``to_v1_format``). The packed tensors are kept by reference (the v1 zero
    points as a copy, 1/group_size of the weight count), so nothing is copied until a forward pass replaces them;
    a state-dict hook substitutes them. Call once, on a model whose layers are in v2 and not yet run."""
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module

    layers = {name: m for name, m in model.named_modules() if isinstance(m, BaseQuantLinear)}
    to_v1_format(model)
    saved = {f"{name}.{key}": getattr(m, key).clone() if key == "qzeros" else getattr(m, key)
             for name, m in layers.items() for key in ("qweight", "qzeros", "scales", "g_idx")
             if getattr(m, key, None) is not None}
    for m in layers.values():
        if m.qzero_format() == 1 and getattr(m, "REQUIRES_FORMAT_V2", False):
            convert_gptq_v1_to_v2_format_module(m, bits=m.bits, pack_dtype=m.pack_dtype)

    def checkpoint_tensors(module, state_dict, prefix, local_metadata) -> None:
        for key, tensor in saved.items():
            if prefix + key in state_dict:
                state_dict[prefix + key] = tensor

    model.register_state_dict_post_hook(checkpoint_tensors)
    model.kick_checkpoint_state = True


def check_savable(model: torch.nn.Module) -> None:
    """Refuse to save a GPTQ model whose checkpoint tensors were not kept by ``keep_checkpoint_state`` (one loaded
    from a checkpoint rather than quantized by ``quantize``): its layers hold v2 zero points, and after a forward
    pass torch's int4-matmul layout, under a config that names the checkpoint's format. A no-op for other models."""
    if getattr(model, "kick_checkpoint_state", False) or "gptqmodel" not in sys.modules:
        return
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    layers = [name for name, m in model.named_modules() if isinstance(m, BaseQuantLinear)]
    if layers:
        raise ValueError(f"model: its GPTQ layers ({layers[0]} and {len(layers) - 1} more) hold GPTQModel's working "
                         "layout, not the checkpoint's (loaded models convert zero points, and a forward pass "
                         "repacks the weights); save the model kick_hub.compress returned, or copy the checkpoint "
                         "it was loaded from")


def apply(model, spec, calibration, progress: bool = True, device: str | None = None):
    """The registry entry: ``quantize`` on ``device`` (None: the CPU; GPTQModel's own progress output, ``progress``
    is not used)."""
    return quantize(model, calibration, spec, "cpu" if device is None else str(device))


def manifest_entries(model) -> dict:
    """``damp_raised`` (layer -> damping GPTQModel used above ``spec.damp``) and ``hessian_floor`` (layer -> the
    smallest amount GPTQModel added to its Hessian diagonal), as ``recorded_hessian_inverse`` recorded them."""
    return {"damp_raised": dict(getattr(model, "kick_damp_raised", {})),
            "hessian_floor": dict(getattr(model, "kick_hessian_floor", {}))}


def before_save(model) -> None:
    """The registry's save hook: ``check_savable``."""
    check_savable(model)
