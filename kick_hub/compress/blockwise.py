"""The model structure every method works on (decoder blocks, their prunable layers, each layer's ``[out, in]``
weight view) and the block-by-block calibration loop shared by the calibration-based pruning methods.

Prunable layers are the matrices inside the decoder blocks: ``nn.Linear`` (weight ``[out, in]``, forward
``x @ W.T + b``) and transformers' ``Conv1D`` of the GPT-2 family (weight ``[in, out]``, forward ``x @ W + b``).
Every method works on ``weight_view(layer)``, the ``[out, in]`` view of either, so rows are output channels and N:M
groups run along the input dimension for both.

Capture the first decoder block's inputs and every block's own call arguments (attention mask, position ids, rotary
``position_embeddings``; models with sliding-window and full-attention layers pass each kind its own), then for each
block: collect statistics on its layers' inputs with hooks (``collect_statistics``), let the method rewrite the
weights, recompute the block's outputs with the new weights and feed them to the next block (the last block's outputs
feed nothing and are not computed). Peak memory is one model copy plus one block's activations for the calibration
set. With a ``device`` (block offload), the model stays in CPU memory and one block at a time moves to the device:
device memory is one block plus the calibration activations.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
from collections.abc import Callable, Iterator

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from kick_hub.compress.memory import release_freed_memory
from kick_hub.device import empty_cache

# Llama / Mistral / Qwen2 / Phi / Gemma..., OPT, GPT-2 / GPT-J / Falcon / Bloom, GPT-NeoX, MPT / DBRX, OLMo-style
# blocks, and multimodal wrappers whose text decoder is ``model.language_model`` (Gemma 3 4B+).
_BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "transformer.blocks",
                "model.blocks", "model.language_model.layers")
PRUNABLE_TYPES = (nn.Linear, Conv1D)
# call arguments that carry a KV cache: calibration runs without one
_CACHE_ARGS = ("past_key_values", "past_key_value", "layer_past", "cache")


def decoder_layers(model) -> nn.ModuleList:
    """The model's decoder blocks, or a clear error naming the paths tried."""
    for path in _BLOCK_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj):
            return obj
    raise ValueError(f"model: cannot find decoder blocks in {type(model).__name__} (looked for {list(_BLOCK_PATHS)})")


def linear_layers(block: nn.Module) -> dict[str, nn.Module]:
    """Every prunable layer inside one decoder block, by qualified name (q/k/v/o, gate/up/down, c_attn, fc1, ...):
    ``nn.Linear`` and transformers' ``Conv1D`` (GPT-2). Use ``weight_view`` / ``in_features`` rather than the raw
    weight's orientation."""
    return {name: m for name, m in block.named_modules() if isinstance(m, PRUNABLE_TYPES)}


def in_features(layer: nn.Module) -> int:
    """Input width of a prunable layer (``Linear.in_features``, ``Conv1D.nx``)."""
    return layer.nx if isinstance(layer, Conv1D) else layer.in_features


def weight_view(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as a ``[out, in]`` tensor sharing its storage: ``W`` for ``nn.Linear`` (stored
    ``[out, in]``), ``W.t()`` for ``Conv1D`` (stored ``[in, out]``). In-place writes (masking, ``copy_``) reach the
    parameter."""
    w = layer.weight.data
    return w.t() if isinstance(layer, Conv1D) else w


def prunable_layers(model) -> dict[str, nn.Module]:
    """Every prunable layer of ``model`` (decoder-block Linear / GPT-2 Conv1D) as ``layers.<block>.<name>`` ->
    module, in block order: the names the manifest's ``layer_sparsity`` and ``damp_raised`` use."""
    return {f"layers.{i}.{name}": lin for i, block in enumerate(decoder_layers(model))
            for name, lin in linear_layers(block).items()}


def prunable_module_names(model) -> list[str]:
    """Module names (``model.named_modules()``'s) of the prunable layers, in block order."""
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(lin)] for lin in prunable_layers(model).values()]


def unprunable_weights(block: nn.Module) -> dict[str, str]:
    """Matrices (parameters with >= 2 dims) inside ``block`` that no prunable layer owns, e.g. the fused 3-D expert
    tensors of transformers' MoE blocks (Mixtral ``mlp.experts.gate_up_proj``): name -> "Type [shape]". Pruning
    would leave these dense while the label promises a sparse model."""
    owned = {id(p) for m in linear_layers(block).values() for p in m.parameters(recurse=False)}
    modules = dict(block.named_modules())
    out = {}
    for name, p in block.named_parameters():
        if p.dim() >= 2 and id(p) not in owned:
            owner = modules[name.rpartition(".")[0]]
            out[name] = f"{type(owner).__name__} {list(p.shape)}"
    return out


class StopForward(Exception):
    """Raised by a hook to end a forward pass once it has taken what it needs (the rest of the pass is not run)."""


def _call_kwargs(block: nn.Module, args: tuple, kwargs: dict) -> tuple[torch.Tensor, dict]:
    """Split one block call into its hidden states and every other argument by name. Positional arguments are named
    from ``forward``'s signature (GPT-2 passes its attention mask positionally); cache arguments are dropped."""
    sig = inspect.signature(block.forward)
    bound = sig.bind_partial(*args, **kwargs).arguments
    first = next(iter(sig.parameters))
    hidden = bound.pop(first)
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            bound.update(bound.pop(name, {}))
        elif p.kind is p.VAR_POSITIONAL and bound.pop(name, ()):
            raise ValueError(f"model: {type(block).__name__}.forward takes extra positional arguments (*{name}); "
                             "cannot replay its calls for calibration")
    for name in _CACHE_ARGS:
        bound.pop(name, None)
    if "use_cache" in bound:
        bound["use_cache"] = False
    return hidden, bound


def _outside_blocks(model, layers: nn.ModuleList) -> list[list[tuple[nn.Module, str, bool]]]:
    """Every parameter and buffer of ``model`` outside its decoder blocks (embeddings, final norm, rotary tables,
    output head), one entry per tensor: the list of its ``(owner module, name, is_parameter)`` references (a tied
    parameter or shared buffer has several)."""
    inside = {id(m) for m in layers.modules()}
    refs: dict[int, list[tuple[nn.Module, str, bool]]] = {}
    for module in model.modules():
        if id(module) in inside:
            continue
        for store, is_param in ((module._parameters, True), (module._buffers, False)):
            for name, t in store.items():
                if t is not None:
                    refs.setdefault(id(t), []).append((module, name, is_param))
    return list(refs.values())


def _set(module: nn.Module, name: str, is_param: bool, tensor: torch.Tensor) -> None:
    (module._parameters if is_param else module._buffers)[name] = tensor


@contextlib.contextmanager
def outside_blocks_on(model, layers: nn.ModuleList, device: torch.device) -> Iterator[None]:
    """While in the block, everything of ``model`` outside its decoder blocks sits on ``device`` (embeddings, norm,
    rotary tables, head: what the forward pass needs before the first block); afterwards the original tensors are put
    back in every owner as they were (not copied back: those modules are not changed by calibration). Each tensor is
    copied once, so tied weights stay tied."""
    saved = []
    for owners in _outside_blocks(model, layers):
        module, name, is_param = owners[0]
        original = (module._parameters if is_param else module._buffers)[name]
        if original.device == device:
            continue
        saved.append((owners, original))
        copy = original.detach().to(device)
        if is_param:
            copy = nn.Parameter(copy, requires_grad=original.requires_grad)
        for owner, owner_name, owner_is_param in owners:
            _set(owner, owner_name, owner_is_param, copy)
    try:
        yield
    finally:
        for owners, original in saved:
            for owner, owner_name, owner_is_param in owners:
                _set(owner, owner_name, owner_is_param, original)


@contextlib.contextmanager
def blocks_visit(layers: nn.ModuleList, device: torch.device, home: torch.device) -> Iterator[None]:
    """While in the block, each decoder block moves to ``device`` when it is called and back to ``home`` when it
    returns (forward pre- and post-hooks), so a forward pass over the whole model needs one block on the device."""
    def arrive(module, args, kwargs):
        module.to(device)

    def leave(module, args, kwargs, output):
        module.to(home)

    handles = [h for layer in layers for h in (layer.register_forward_pre_hook(arrive, with_kwargs=True),
                                               layer.register_forward_hook(leave, with_kwargs=True, always_call=True))]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def capture_inputs(model, ids: torch.Tensor, device: torch.device | str | None = None
                   ) -> tuple[list[torch.Tensor], list[dict]]:
    """The first decoder block's input for each calibration row (``[1, seqlen, hidden]``), and every block's own call
    arguments (a dict per block, hidden states excluded). The arguments come from one full forward pass over the
    first row: they depend on the sequence length and on the block (sliding-window vs full attention, local vs
    global rotary tables in Gemma 3), not on the tokens, since calibration rows have equal length and no padding.
    The other rows stop at the first block.

    ``device`` None: the pass runs where the model is. Otherwise (block offload) the modules outside the blocks move
    to ``device`` for the capture and each block visits it during the first row's pass (``blocks_visit``); the
    inputs and arguments are returned on ``device`` and the model is back where it was. The first block's hook
    that stops the other rows runs before ``blocks_visit`` would move the block."""
    layers = decoder_layers(model)
    home = next(model.parameters()).device
    offloading = device is not None
    device = home if device is None else torch.device(device)
    inputs: list[torch.Tensor] = []
    kwargs: list[dict | None] = [None] * len(layers)

    def record(i):
        def hook(module, args, kw):
            hidden, kwargs[i] = _call_kwargs(module, args, kw)
            if i == 0:
                inputs.append(hidden)
        return hook

    offload = contextlib.ExitStack()
    if offloading:  # also when device is home: the same code path, moves that change nothing (tested on CPU)
        offload.enter_context(outside_blocks_on(model, layers, device))
        offload.enter_context(blocks_visit(layers, device, home))
    with offload:
        handles = [layer.register_forward_pre_hook(record(i), with_kwargs=True) for i, layer in enumerate(layers)]
        try:
            model(input_ids=ids[:1].to(device), use_cache=False)
        finally:
            for h in handles:
                h.remove()
        missing = [i for i, kw in enumerate(kwargs) if kw is None]
        if missing:
            raise ValueError(f"model: the forward pass of {type(model).__name__} never called decoder blocks "
                             f"{missing}")

        def first_only(module, args, kw):
            inputs.append(_call_kwargs(module, args, kw)[0])
            raise StopForward

        # registered first, so it stops the call before blocks_visit would move block 0
        handle = layers[0].register_forward_pre_hook(first_only, with_kwargs=True, prepend=True)
        try:
            for row in ids[1:]:
                try:
                    model(input_ids=row[None].to(device), use_cache=False)
                except StopForward:
                    pass
        finally:
            handle.remove()
    return inputs, kwargs


def check_finite(stats: object, name: str, desc: str) -> None:
    """Refuse a layer's calibration statistics (every tensor attribute of ``stats``: Wanda's input norms,
    SparseGPT's Hessian) holding NaN or inf, which NaN / inf inputs and inputs whose squares overflow float32 give:
    every score and update computed from them would be NaN, inf, or a tie broken by column order."""
    for key, value in vars(stats).items():
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            raise ValueError(f"calibration: {name}'s {desc} statistics ({key}) hold NaN or inf: its inputs on the "
                             "calibration text are not finite or overflow float32 when squared")


def _same_statistics(a: object, b: object) -> bool:
    """Whether two statistics objects hold equal values in every attribute (tensors bit for bit)."""
    va, vb = vars(a), vars(b)
    if va.keys() != vb.keys():
        return False
    for key, x in va.items():
        y = vb[key]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True


@torch.no_grad()
def collect_statistics(block: nn.Module, linears: dict[str, nn.Module], inputs: list[torch.Tensor], kwargs: dict,
                       make_stats: Callable[[nn.Module], object]) -> dict[str, object]:
    """Each prunable layer's statistics (``make_stats(layer)``, fed ``add_batch(inp)`` with the layer's input
    ``[1, seqlen, in]``) over the calibration rows ``inputs``, one forward pass of ``block`` per row; returns
    name -> statistics for every name of ``linears``.

    Every statistic equals, bit for bit, what feeding every layer on every full forward pass gives; two savings make
    it cheaper, both decided from the first row, on which every layer feeds its own statistics:

    - layers called with the very same input tensor (q/k/v on one normalised input, gate/up on another) whose
      statistics after the first row are equal keep one accumulator for the other rows, and each gets its own copy
      at the end (SparseGPT's Hessians and Wanda's norms are computed once instead of three times);
    - the forward pass of the other rows stops at the last layer to be called, once its input is taken (the rest of
      the block, e.g. ``down_proj``'s matmul, feeds no statistic).

    Both need each layer called exactly once per forward pass (a layer called twice, or not at all, as an MoE
    expert the row does not route to, keeps the plain path: every layer fed on every whole pass)."""
    stats = {name: make_stats(lin) for name, lin in linears.items()}
    calls: list[tuple[str, torch.Tensor]] = []  # the first row's calls, in order, with their input tensors

    def first_row(name):
        def hook(module, args):
            calls.append((name, args[0]))
            stats[name].add_batch(args[0].data)
        return hook

    handles = [lin.register_forward_pre_hook(first_row(name)) for name, lin in linears.items()]
    try:
        block(inputs[0], **kwargs)
    finally:
        for h in handles:
            h.remove()
    names = [name for name, _ in calls]
    leader = {name: name for name in linears}  # whose accumulator a layer's statistics come from
    last = None
    if sorted(names) == sorted(linears):  # each layer called exactly once
        last = names[-1]
        for i, (name, x) in enumerate(calls):
            for earlier, y in calls[:i]:
                if leader[earlier] == earlier and x is y and _same_statistics(stats[earlier], stats[name]):
                    leader[name] = earlier
                    break
    calls.clear()

    def later_row(name):
        def hook(module, args):
            if leader[name] == name:
                stats[name].add_batch(args[0].data)
            if name == last:
                raise StopForward
        return hook

    handles = [lin.register_forward_pre_hook(later_row(name)) for name, lin in linears.items()]
    try:
        for x in inputs[1:]:
            try:
                block(x, **kwargs)
            except StopForward:
                pass
    finally:
        for h in handles:
            h.remove()
    return {name: stats[name] if leader[name] == name else copy.deepcopy(stats[leader[name]]) for name in linears}


# The first block's statistics depend on nothing a method changes (its weights are still the model's, its inputs the
# embeddings of the calibration ids): the next variant of the same model and calibration reuses them (a sweep's 9
# Wanda cells, then its 9 SparseGPT cells). Keyed by ``_first_block_key``; the last two kept, each at most
# ``MEMO_MAX_BYTES`` (Wanda's norms always, SparseGPT's Hessians up to about a 1B Llama's: 228 MB for TinyLlama).
_FIRST_BLOCK: dict[str, dict[str, object]] = {}
MEMO_MAX_BYTES = 256 * 2**20


def _first_block_key(block: nn.Module, inputs: list[torch.Tensor], kwargs: dict, make_stats) -> str | None:
    """A digest (BLAKE2b) of everything the first block's statistics depend on: ``make_stats``'s module and name,
    torch's thread count, the block's parameters and buffers, its calibration inputs and its call arguments (a value
    that is not a tensor enters as its ``repr``, so an object without a stable one never matches). None off the CPU,
    where copying the inputs to hash them would cost more than the pass it saves."""
    if inputs[0].device.type != "cpu":
        return None
    digest = hashlib.blake2b(digest_size=32)

    def add(name: str, value) -> None:
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(value.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                add(f"{name}[{i}]", item)
        else:
            digest.update(repr(value).encode())

    add("stats", f"{make_stats.__module__}.{make_stats.__qualname__} threads {torch.get_num_threads()}")
    for name, tensor in block.state_dict().items():
        add(name, tensor)
    for i, x in enumerate(inputs):
        add(f"input {i}", x)
    for name in sorted(kwargs):
        add(name, kwargs[name])
    return digest.hexdigest()


def _statistics_bytes(stats: dict[str, object]) -> int:
    return sum(v.nbytes for s in stats.values() for v in vars(s).values() if isinstance(v, torch.Tensor))


def _block_out(out):
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_blockwise(model, ids: torch.Tensor, make_stats: Callable[[nn.Module], object],
                  rewrite: Callable[[str, nn.Module, object], None], desc: str = "blocks",
                  progress: bool = True, device: torch.device | str | None = None, memo: bool = False) -> None:
    """Drive ``make_stats`` (one accumulator per prunable layer, fed with ``add_batch(inp)``, ``inp`` the layer's
    input ``[1, seqlen, in]``; it must keep its statistics on the layer's device) and ``rewrite`` (changes the
    layer's weight from its statistics) over every decoder block in order. ``ids``: calibration token ids
    ``[nsamples, seqlen]``. A ValueError naming the layer when its statistics are not finite (``check_finite``).

    ``device`` None: everything runs where the model is (in place). Otherwise block offload, as the reference code
    (IST-DASLab/sparsegpt ``llama.py`` ``llama_sequential``, locuslab/wanda ``lib/prune.py``): the model stays where it
    is (CPU memory), the calibration inputs are caught on ``device`` (``capture_inputs``), then each block moves to
    ``device`` for its statistics, its rewrite and the forward pass that makes the next block's inputs, and goes
    back. Device memory: one block plus the calibration activations. With ``device`` equal to the model's own
    device the same code path runs (the moves are no-ops), which is how it is tested on CPU.

    ``memo``: ``make_stats`` is a class whose statistics are a pure function of the layer and its inputs (Wanda's,
    SparseGPT's), so the first block's may be reused from an earlier call in this process with the same block,
    inputs and arguments (``_first_block_key``), and kept for a later one (copies both ways: ``rewrite`` may consume
    them). Off by default: a plugin's ``make_stats`` may hold state of its own."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    home = next(model.parameters()).device
    offload = device is not None
    inputs, block_kwargs = capture_inputs(model, ids, device)
    layers = decoder_layers(model)
    for index, (block, kwargs) in enumerate(tqdm(zip(layers, block_kwargs), total=len(layers), desc=desc,
                                                  unit="block", disable=not progress)):
        if offload:
            block.to(device)
        linears = linear_layers(block)
        key = _first_block_key(block, inputs, kwargs, make_stats) if memo and index == 0 else None
        if key in _FIRST_BLOCK:
            stats = copy.deepcopy(_FIRST_BLOCK[key])
        else:
            stats = collect_statistics(block, linears, inputs, kwargs, make_stats)
            if key is not None and _statistics_bytes(stats) <= MEMO_MAX_BYTES:
                while len(_FIRST_BLOCK) >= 2:
                    _FIRST_BLOCK.pop(next(iter(_FIRST_BLOCK)))
                _FIRST_BLOCK[key] = copy.deepcopy(stats)
        for name, lin in linears.items():
            check_finite(stats[name], f"layers.{index}.{name}", desc)
            rewrite(name, lin, stats.pop(name))
            release_freed_memory(collect=False)
        if index + 1 < len(layers):  # the last block's outputs feed nothing
            inputs = [_block_out(block(x, **kwargs)) for x in inputs]
        if offload:
            block.to(home)
            empty_cache()
    model.train(was_training)
