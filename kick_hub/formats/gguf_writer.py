"""Hugging Face causal LM -> GGUF (F32 / F16 / BF16), written with the ``gguf`` package (``GGUFWriter``,
``get_tensor_name_map``, ``SpecialVocab``) the way llama.cpp's ``convert_hf_to_gguf.py`` writes it, for the families
kick converts itself (``FAMILIES``): Llama and Mistral (llama.cpp arch ``llama``), Qwen2, Qwen3, Gemma 2, Gemma 3
(text, ``Gemma3ForCausalLM``) and Phi-3.

Why not llama.cpp's converter: it ships in llama-cpp-python's sdist but is not installed, and it recognises a
tokenizer's pre-tokenizer only by hashing its output on a test string, so small or custom byte-level BPE tokenizers
(the world model's) fail with "BPE pre-tokenizer was not recognized". Here the pre-tokenizer is read from
``tokenizer.json`` itself (``pre_tokenizer_name``): plain GPT-2 byte level, SmolLM's digits + byte level, and the
Llama-3 / Qwen2 split regexes; anything else is refused with the way out.

What llama.cpp expects and this writes:

- tensors under llama.cpp's names (``get_tensor_name_map``); for the ``llama`` arch the rows of ``q_proj`` /
  ``k_proj`` permuted from Hugging Face's rotate-half RoPE layout to llama.cpp's interleaved one (``permute``, the
  converter's ``LlamaModel.permute``); a tied output embedding written once (``token_embd``, llama.cpp reuses it);
- F16 / BF16 for matrices, F32 for 1-D tensors (norms, biases), as the converter does;
- the vocabulary as tokenizer model ``gpt2`` (byte-level BPE): tokens by id, merges, token types (special added
  tokens CONTROL, other added tokens USER_DEFINED, embedding rows past the tokenizer UNUSED), special token ids, the
  add-BOS flag and the chat template (``SpecialVocab`` reads them from the saved tokenizer); or, for a SentencePiece
  BPE vocabulary (``is_sentencepiece_bpe``: Llama 2, Mistral v0.1, Gemma, Phi-3), as tokenizer model ``llama``:
  tokens with scores that make llama.cpp's highest-score-first merging pick Hugging Face's lowest-rank merges
  (``_spm_scores``), ``<0xXX>`` tokens BYTE, the unknown token UNKNOWN, and the space prefix flag
  (``add_space_prefix``). llama.cpp prefixes a space to every text when the flag is set, where Hugging Face's
  ``Metaspace`` skips it for a text that already starts with one: such texts (none of the tasks' prompts) get one
  more ``▁`` token in llama.cpp, as they do in the GGUFs llama.cpp's own converter writes;
- ``general.name`` the model's public name (``io.public_name``: never a local path);
- the context length (Mistral and Phi-3: at most their sliding window, which llama.cpp's ``llama`` and ``phi3``
  archs do not apply);
- Gemma 2 / 3 (``_gemma_rules``): every ``*norm.weight`` stored + 1 (Hugging Face's Gemma RMSNorm scales by
  ``1 + weight``, llama.cpp's by ``weight``: ``Gemma2Model`` / ``Gemma3Model.modify_tensors``), key / value length,
  Gemma 2's attention and final logit soft-capping, the sliding window; the rules llama.cpp fixes rather than reads
  (sliding-window layer pattern, Gemma 3's local RoPE base, the attention scale) are checked against the config and
  a checkpoint that differs is refused;
- Phi-3: the fused ``qkv_proj`` written as ``attn_qkv`` and the fused ``gate_up_proj`` as ``ffn_up`` (llama.cpp splits
  them itself; gate first, as Hugging Face's ``Phi3MLP`` chunks it), the RoPE dimensions of a partial rotary factor
  (``Phi3MiniModel.set_gguf_parameters``).

Checked by next-token logits against transformers on the world model (tests/test_gguf.py; docs/gguf.md gives the
tolerance). The file is written to a temp file beside ``output`` and renamed, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FAMILIES", "OUTTYPES", "convert", "write_gguf", "pre_tokenizer_name", "permute", "check_family"]

# transformers model_type -> (llama.cpp arch, gguf MODEL_ARCH member, q/k rows permuted for interleaved RoPE); the
# archs without permutation run rotate-half ("NEOX") RoPE in llama.cpp (llama-model.cpp, llama_model_rope_type)
FAMILIES = {"llama": ("llama", "LLAMA", True), "mistral": ("llama", "LLAMA", True),
            "qwen2": ("qwen2", "QWEN2", False), "qwen3": ("qwen3", "QWEN3", False),
            "gemma2": ("gemma2", "GEMMA2", False), "gemma3_text": ("gemma3", "GEMMA3", False),
            "phi3": ("phi3", "PHI3", False)}
# llama.cpp's sliding-window layer pattern n (llama_hparams::set_swa_pattern: layer i slides iff i % n < n - 1), its
# layer count of the 27B models (whose attention scale is 1 / sqrt(hidden / heads), else 1 / sqrt(head_dim)), and
# Gemma 3's local RoPE base, all fixed in llama-model.cpp's load_hparams rather than read from the file
_GEMMA = {"gemma2": {"pattern": 2, "layers_27b": 46}, "gemma3_text": {"pattern": 6, "layers_27b": 62}}
_GEMMA3_LOCAL_ROPE_BASE = 10000.0
OUTTYPES = ("f32", "f16", "bf16")
INSTALL = 'pip install -e ".[gguf]"'

# the split regexes of tokenizer.json pre-tokenizers llama.cpp knows by name (llama-vocab.cpp: LLAMA3, QWEN2)
_SPLIT_REGEXES = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
}


def _ropes(config) -> dict[str, dict]:
    """The RoPE parameters of ``config`` by layer type: ``{"full_attention": {...}, "sliding_attention": {...}}`` for
    Gemma 3 (transformers keeps one dict per layer type there), ``{"full_attention": {...}}`` for the others."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not isinstance(rope, dict):
        return {"full_attention": {}}
    nested = {k: v for k, v in rope.items() if isinstance(v, dict)}
    return nested if nested else {"full_attention": rope}


def _theta(rope: dict, config, default: float = 10000.0) -> float:
    return float(rope.get("rope_theta") or getattr(config, "rope_theta", None) or default)


def _gemma_rules(config) -> None:
    """ValueError naming ``model`` where a Gemma 2 / Gemma 3 config differs from what llama.cpp fixes for the arch
    instead of reading it from the file (llama-model.cpp, ``load_hparams`` / ``load_tensors`` for GEMMA2 / GEMMA3):

    - the sliding-window layers: llama.cpp's pattern (Gemma 2: every 2nd layer global, ``set_swa_pattern(2)``;
      Gemma 3: every 6th, ``set_swa_pattern(6)``) must give ``config.layer_types``;
    - the attention scale: llama.cpp uses ``1 / sqrt(head_dim)``, or ``1 / sqrt(hidden / heads)`` for its 27B layer
      counts (46 / 62), where transformers uses ``query_pre_attn_scalar ** -0.5``: the two must agree;
    - Gemma 2: both logit soft-caps set (llama.cpp's gemma2 graph always applies them) and a tied output embedding
      (llama.cpp's gemma2 has no ``output`` tensor and reads ``token_embd``);
    - Gemma 3: no attention soft-cap (its graph has none) and a local RoPE base of 10000 (``rope_freq_base_train_swa``);
    - a sliding window, causal attention, the GELU (tanh) activation and no attention biases, as the graphs have."""
    kind = config.model_type
    rules = _GEMMA[kind]
    n_layers, heads = config.num_hidden_layers, config.num_attention_heads
    pattern = rules["pattern"]
    expected = ["sliding_attention" if i % pattern < pattern - 1 else "full_attention" for i in range(n_layers)]
    layer_types = list(getattr(config, "layer_types", None) or expected)
    if layer_types != expected:
        raise ValueError(f"model: {kind} layer_types {layer_types} differ from llama.cpp's fixed sliding-window "
                         f"pattern (every {pattern}th layer global): {expected}")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    scale = config.hidden_size // heads if n_layers == rules["layers_27b"] else head_dim
    if float(getattr(config, "query_pre_attn_scalar", scale)) != float(scale):
        raise ValueError(f"model: {kind} query_pre_attn_scalar {config.query_pre_attn_scalar} is not the attention "
                         f"scale llama.cpp uses for {n_layers} layers ({scale})")
    if getattr(config, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        raise ValueError(f"model: {kind} hidden_activation {config.hidden_activation!r}; llama.cpp runs GELU (tanh)")
    if getattr(config, "attention_bias", False):
        raise ValueError(f"model: {kind} with attention biases has no llama.cpp tensors to hold them")
    if getattr(config, "use_bidirectional_attention", False):
        raise ValueError(f"model: {kind} with bidirectional attention is not a causal LM llama.cpp's {kind} runs")
    if not getattr(config, "sliding_window", None):
        raise ValueError(f"model: {kind} without a sliding window; llama.cpp's {kind} slides its local layers")
    if kind == "gemma2":
        if not getattr(config, "tie_word_embeddings", True):
            raise ValueError("model: gemma2 with an untied output embedding; llama.cpp's gemma2 reads token_embd")
        if not (config.attn_logit_softcapping and config.final_logit_softcapping):
            raise ValueError("model: gemma2 without attention and final logit soft-capping; llama.cpp's gemma2 always "
                             "applies both")
    else:
        if getattr(config, "attn_logit_softcapping", None) is not None:
            raise ValueError("model: gemma3 attention logit soft-capping is not in llama.cpp's gemma3 graph")
        local = float(_ropes(config).get("sliding_attention", {}).get("rope_theta")
                      or getattr(config, "rope_local_base_freq", None) or _GEMMA3_LOCAL_ROPE_BASE)
        if local != _GEMMA3_LOCAL_ROPE_BASE:
            raise ValueError(f"model: gemma3 local RoPE base {local}; llama.cpp fixes it at "
                             f"{_GEMMA3_LOCAL_ROPE_BASE}")


def check_family(config) -> tuple[str, str, bool]:
    """``FAMILIES[config.model_type]``; ValueError naming ``model`` and the families kick converts for any other, for
    RoPE scaling it does not write (anything but the default rotary embedding, on any layer type), for a Phi-3 whose
    activation is not SiLU, and for a Gemma whose config differs from what llama.cpp fixes (``_gemma_rules``)."""
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES:
        raise ValueError(f"model: kick converts {sorted(FAMILIES)} checkpoints to GGUF, not {kind!r}; convert it with "
                         "llama.cpp's convert_hf_to_gguf.py and pass the .gguf file")
    for rope in _ropes(config).values():
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in (None, "default"):
            raise ValueError(f"model: RoPE scaling {rope_type!r} is not written by kick's GGUF converter; convert "
                             "with llama.cpp's convert_hf_to_gguf.py")
    if kind in _GEMMA:
        _gemma_rules(config)
    if kind == "phi3" and getattr(config, "hidden_act", "silu") != "silu":
        raise ValueError(f"model: phi3 hidden_act {config.hidden_act!r}; llama.cpp's phi3 runs SwiGLU")
    return FAMILIES[kind]


def is_sentencepiece_bpe(tokenizer_json: dict) -> bool:
    """Whether ``tokenizer.json`` is a SentencePiece BPE vocabulary as transformers converts one (Llama 2, Mistral
    v0.1, Gemma, Phi-3, TinyLlama, llama2.c): a BPE model with byte fallback (``<0xXX>`` tokens) and a decoder that
    turns ``▁`` back into spaces, which llama.cpp runs as tokenizer model ``llama``."""
    model = tokenizer_json.get("model") or {}
    decoder = tokenizer_json.get("decoder") or {}
    steps = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    return (model.get("type") == "BPE" and bool(model.get("byte_fallback"))
            and any(d.get("type") == "ByteFallback" for d in steps)
            and any(d.get("type") in ("Replace", "Metaspace") for d in steps))


def add_space_prefix(tokenizer_json: dict) -> bool:
    """Whether a SentencePiece BPE ``tokenizer.json`` puts ``▁`` before the text (llama.cpp's
    ``tokenizer.ggml.add_space_prefix``): a ``Metaspace`` pre-tokenizer with prepend scheme ``always`` / ``first``
    or a ``Prepend("▁")`` normalizer (Llama 2, Mistral); Gemma's replaces spaces only."""
    def steps(part: dict | None) -> list[dict]:
        part = part or {}
        return part.get("pretokenizers", part.get("normalizers", [part])) if part.get("type") == "Sequence" else [part]

    for step in steps(tokenizer_json.get("pre_tokenizer")):
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always" if step.get("add_prefix_space", True) else "never") != "never"
    return any(step.get("type") == "Prepend" and step.get("prepend") == "\u2581"
               for step in steps(tokenizer_json.get("normalizer")))


def _spm_scores(tokenizer_json: dict, tokens: list[str]) -> list[float]:
    """llama.cpp's SentencePiece tokenizer merges, at each step, the adjacent pair whose joined text is the vocabulary
    token of highest score; Hugging Face's BPE merges the pair of lowest merge rank. So a token made by merge ``r``
    scores ``-r`` and every other token 0 (never the result of a merge), which makes the two pick the same merges."""
    rank: dict[str, int] = {}
    for r, merge in enumerate((tokenizer_json.get("model") or {}).get("merges") or []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(a + b, r)
    return [-float(rank[t]) if t in rank else 0.0 for t in tokens]


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for a byte-level BPE ``tokenizer.json``: ``gpt-2`` (byte level with its
    own regex), ``smollm`` (single digits, then byte level), ``llama-bpe`` / ``qwen2`` (their split regex, then byte
    level). ValueError naming ``tokenizer`` for anything else (a SentencePiece / Unigram model, another regex)."""
    model = (tokenizer_json.get("model") or {}).get("type")
    if model != "BPE" or (tokenizer_json.get("decoder") or {}).get("type") != "ByteLevel":
        raise ValueError(f"tokenizer: kick writes byte-level BPE and SentencePiece BPE (byte fallback) vocabularies to "
                         f"GGUF, not a {model} model with a {(tokenizer_json.get('decoder') or {}).get('type')} "
                         "decoder; convert with llama.cpp's convert_hf_to_gguf.py")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex in _SPLIT_REGEXES:
            return _SPLIT_REGEXES[regex]
    raise ValueError(f"tokenizer: pre-tokenizer {kinds} is not one kick maps to llama.cpp's (gpt-2, smollm, "
                     "llama-bpe, qwen2); convert with llama.cpp's convert_hf_to_gguf.py")


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a ``q_proj`` / ``k_proj`` weight ``[n_head * head_dim, in]`` from Hugging Face's rotate-half RoPE order
    to llama.cpp's interleaved one (``convert_hf_to_gguf.py``'s ``LlamaModel.permute``; ``n_head``: the query heads
    for q, the key/value heads for k)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _vocab(tokenizer, n_rows: int, spm: bool = False) -> tuple[list[str], list[int]]:
    """Token strings by id and their llama.cpp token types, padded to the embedding's ``n_rows``; with ``spm`` (a
    SentencePiece vocabulary) ``<0xXX>`` tokens are BYTE and the unknown token UNKNOWN, as llama.cpp's converter
    types them."""
    import gguf

    vocab = tokenizer.get_vocab()
    added = {tok.content: tok.special for tok in tokenizer.added_tokens_decoder.values()}
    by_id = {i: t for t, i in vocab.items()}
    if max(by_id) >= n_rows:
        raise ValueError(f"tokenizer: has ids up to {max(by_id)} but the model embeds only {n_rows} tokens")
    tokens, types = [], []
    for i in range(n_rows):
        tok = by_id.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif spm and tok == tokenizer.unk_token:
            tokens.append(tok)
            types.append(gguf.TokenType.UNKNOWN)
        elif spm and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", tok):
            tokens.append(tok)
            types.append(gguf.TokenType.BYTE)
        elif tok in added:
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if added[tok] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(tok)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


# llama-vocab.cpp ("set attributes by model/tokenizer/architecture name"): for a general.name containing "phi-3" or
# "phi3" (any case) llama.cpp sets attributes of these tokens looked up by text (std::unordered_map::at), so a
# vocabulary without them does not load ("error loading model vocabulary: unordered_map::at", measured with 0.3.36)
_PHI3_NAME_TOKENS = ("</s>", "<unk>", "<s>", "<|endoftext|>")


def _check_phi3_name(general_name: str, tokens: list[str]) -> None:
    """ValueError naming ``name`` when llama.cpp would refuse to load the file for its ``general.name`` alone: a name
    like Phi-3's (``phi-3`` / ``phi3``) with a vocabulary lacking one of ``_PHI3_NAME_TOKENS`` (Phi-3's own has them
    all)."""
    if any(key in general_name.lower() for key in ("phi-3", "phi3")):
        missing = [t for t in _PHI3_NAME_TOKENS if t not in set(tokens)]
        if missing:
            raise ValueError(f"name: llama.cpp's vocabulary loader looks up {list(_PHI3_NAME_TOKENS)} in a model "
                             f"named like Phi-3 ({general_name!r}) and this vocabulary lacks {missing}; give the GGUF "
                             "another name")


def write_gguf(model, tokenizer, output: str | os.PathLike, outtype: str = "f32", name: str | None = None) -> dict:
    """Write ``model`` (a transformers causal LM of a ``FAMILIES`` type) with ``tokenizer`` (a fast byte-level or
    SentencePiece BPE tokenizer) to the GGUF file ``output`` in ``outtype`` (``OUTTYPES``); ``name``:
    ``general.name`` (a public name). Returns ``{"arch", "pre", "outtype", "tensors", "bytes"}``. ValueError for a
    family, RoPE scaling, tokenizer or ``outtype`` it does not write, or a name llama.cpp would not load
    (``_check_phi3_name``), before anything is written; ImportError naming the install when the ``gguf`` package is
    missing. Atomic: a temp file beside ``output``, renamed at the end."""
    try:
        import gguf
    except ImportError as e:
        raise ImportError(f"gguf: writing GGUF files needs the gguf package: {INSTALL}") from e
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype: must be one of {list(OUTTYPES)}, got {outtype!r}")
    config = model.config
    arch, member, permuted = check_family(config)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenizer: kick's GGUF converter needs a fast (tokenizers) tokenizer")
    tok_json = json.loads(tokenizer.backend_tokenizer.to_str())
    spm = is_sentencepiece_bpe(tok_json)
    pre = "default" if spm else pre_tokenizer_name(tok_json)
    n_rows = model.get_input_embeddings().weight.shape[0]
    tokens, types = _vocab(tokenizer, n_rows, spm)
    kind = config.model_type
    gemma = kind in _GEMMA
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = _ropes(config)["full_attention"]  # Gemma 3: the global layers' (llama.cpp's rope_freq_base)
    theta = _theta(rope, config, 1_000_000.0 if kind == "gemma3_text" else 10000.0)
    # Phi-3's partial rotary factor: int(factor * hidden) // heads rotated dims (Phi3MiniModel.set_gguf_parameters)
    partial = rope.get("partial_rotary_factor") or getattr(config, "partial_rotary_factor", None) or 1.0
    rope_dims = int(partial * config.hidden_size) // heads if kind == "phi3" else head_dim
    tied = bool(getattr(config, "tie_word_embeddings", False))
    general_name = name or getattr(config, "_name_or_path", "") or config.model_type
    _check_phi3_name(general_name, tokens)
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, member), config.num_hidden_layers)
    # tensors first, so an unmapped one fails before the file is opened
    tensors: list[tuple[str, np.ndarray, object]] = []
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads the output projection from token_embd when output.weight is absent
        new = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"model: cannot map tensor {hf_name!r} of {config.model_type} to a GGUF name")
        data = tensor.detach().float().cpu().numpy()
        if gemma and hf_name.endswith("norm.weight"):
            data = data + 1.0  # x * (1 + w) in transformers' Gemma RMSNorm, x * w in llama.cpp (Gemma2Model / 3)
        if permuted and hf_name.endswith("self_attn.q_proj.weight"):
            data = permute(data, heads)
        elif permuted and hf_name.endswith("self_attn.k_proj.weight"):
            data = permute(data, kv_heads)
        raw = None
        if data.ndim > 1 and outtype == "f16":
            data = data.astype(np.float16)
        elif data.ndim > 1 and outtype == "bf16":
            data, raw = gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16), gguf.GGMLQuantizationType.BF16
        tensors.append((new, np.ascontiguousarray(data), raw))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_name(general_name)
        context = getattr(config, "max_position_embeddings", None) or 2048
        window = getattr(config, "sliding_window", None)
        # llama.cpp's llama arch attends to the whole context, and so does its phi3 arch (its load_hparams turns a
        # written sliding window off: "Phi SWA is currently disabled"): the context written stops at Mistral's and
        # Phi-3's window, so every position sees what it sees in transformers. Gemma's windows llama.cpp applies.
        capped = window and kind in ("mistral", "phi3")
        writer.add_context_length(min(context, window) if capped else context)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_rope_freq_base(theta)
        writer.add_rope_dimension_count(rope_dims)
        if head_dim != config.hidden_size // heads or arch == "qwen3" or gemma:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        if gemma:  # Gemma2Model / Gemma3Model.set_gguf_parameters
            writer.add_sliding_window(config.sliding_window)
            if kind == "gemma2":
                writer.add_attn_logit_softcapping(float(config.attn_logit_softcapping))
            if getattr(config, "final_logit_softcapping", None):
                writer.add_final_logit_softcapping(float(config.final_logit_softcapping))
        if kind == "phi3":  # Phi3MiniModel.set_gguf_parameters (0: no window, as the converter writes Phi-4's)
            writer.add_rope_scaling_orig_ctx_len(getattr(config, "original_max_position_embeddings", None) or context)
            writer.add_sliding_window(window or 0)
        writer.add_vocab_size(n_rows)
        writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                              "bf16": gguf.LlamaFileType.MOSTLY_BF16}[outtype])
        writer.add_tokenizer_model("llama" if spm else "gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        if spm:  # SentencePiece: merges as scores, the space prefix as a flag (no merges list)
            writer.add_token_scores(_spm_scores(tok_json, tokens))
            writer.add_add_space_prefix(add_space_prefix(tok_json))
        writer.add_token_types(types)
        with tempfile.TemporaryDirectory() as tok_dir:  # SpecialVocab reads a saved tokenizer, whatever its source
            tokenizer.save_pretrained(tok_dir)
            special = gguf.SpecialVocab(tok_dir, load_merges=not spm, n_vocab=n_rows)
            if not spm and not special.merges:
                raise ValueError("tokenizer: has no BPE merges to write")
            if getattr(tokenizer, "chat_template", None) and special.chat_template is None:
                special.chat_template = tokenizer.chat_template
            special.add_to_gguf(writer, quiet=True)
        for new, data, raw in tensors:
            writer.add_tensor(new, data, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"arch": arch, "pre": pre, "outtype": outtype, "tensors": len(tensors), "bytes": output.stat().st_size}


def convert(name: str, output: str | os.PathLike, outtype: str = "f32") -> Path:
    """Load ``name`` (an alias, directory or Hub id: ``kick_hub.models.load_model`` on the CPU in float32) and write
    it as a GGUF file ``output`` in ``outtype`` (``write_gguf``); returns ``output``. The family is checked from the
    config before any weight is read."""
    from kick_hub.device import CPU
    from kick_hub.io import public_name
    from kick_hub.models import load_config, load_model

    if outtype not in OUTTYPES:
        raise ValueError(f"outtype: must be one of {list(OUTTYPES)}, got {outtype!r}")
    check_family(load_config(name))
    model, tokenizer = load_model(name, CPU, purpose="compress")
    write_gguf(model, tokenizer, output, outtype, name=public_name(name))
    return Path(output)
