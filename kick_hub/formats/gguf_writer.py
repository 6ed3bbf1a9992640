"""Hugging Face causal LM -> GGUF (F32 / F16 / BF16), written with the ``gguf`` package (``GGUFWriter``,
``get_tensor_name_map``, ``SpecialVocab``) the way llama.cpp's ``convert_hf_to_gguf.py`` writes it, for the families
kick converts itself (``FAMILIES``): Llama and Mistral (llama.cpp arch ``llama``), Qwen2 and Qwen3.

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
  add-BOS flag and the chat template (``SpecialVocab`` reads them from the saved tokenizer);
- ``general.name`` the model's public name (``io.public_name``: never a local path);
- the context length (Mistral: at most its sliding window, which llama.cpp's ``llama`` arch does not apply).

Checked by next-token logits against transformers on the world model (tests/test_gguf.py; docs/gguf.md gives the
tolerance). The file is written to a temp file beside ``output`` and renamed, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FAMILIES", "OUTTYPES", "convert", "write_gguf", "pre_tokenizer_name", "permute", "check_family"]

# transformers model_type -> (llama.cpp arch, gguf MODEL_ARCH member, q/k rows permuted for interleaved RoPE)
FAMILIES = {"llama": ("llama", "LLAMA", True), "mistral": ("llama", "LLAMA", True),
            "qwen2": ("qwen2", "QWEN2", False), "qwen3": ("qwen3", "QWEN3", False)}
OUTTYPES = ("f32", "f16", "bf16")
INSTALL = 'pip install -e ".[gguf]"'

# the split regexes of tokenizer.json pre-tokenizers llama.cpp knows by name (llama-vocab.cpp: LLAMA3, QWEN2)
_SPLIT_REGEXES = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
}


def check_family(config) -> tuple[str, str, bool]:
    """``FAMILIES[config.model_type]``; ValueError naming ``model`` and the families kick converts for any other, or
    for RoPE scaling it does not write (anything but the default rotary embedding)."""
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES:
        raise ValueError(f"model: kick converts {sorted(FAMILIES)} checkpoints to GGUF, not {kind!r}; convert it with "
                         "llama.cpp's convert_hf_to_gguf.py and pass the .gguf file")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in (None, "default"):
        raise ValueError(f"model: RoPE scaling {rope_type!r} is not written by kick's GGUF converter; convert with "
                         "llama.cpp's convert_hf_to_gguf.py")
    return FAMILIES[kind]


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for a byte-level BPE ``tokenizer.json``: ``gpt-2`` (byte level with its
    own regex), ``smollm`` (single digits, then byte level), ``llama-bpe`` / ``qwen2`` (their split regex, then byte
    level). ValueError naming ``tokenizer`` for anything else (a SentencePiece / Unigram model, another regex)."""
    model = (tokenizer_json.get("model") or {}).get("type")
    if model != "BPE" or (tokenizer_json.get("decoder") or {}).get("type") != "ByteLevel":
        raise ValueError(f"tokenizer: kick writes byte-level BPE vocabularies to GGUF, not a {model} model with a "
                         f"{(tokenizer_json.get('decoder') or {}).get('type')} decoder; convert with llama.cpp's "
                         "convert_hf_to_gguf.py")
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


def _vocab(tokenizer, n_rows: int) -> tuple[list[str], list[int]]:
    """Token strings by id and their llama.cpp token types, padded to the embedding's ``n_rows``."""
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
        elif tok in added:
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if added[tok] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(tok)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def write_gguf(model, tokenizer, output: str | os.PathLike, outtype: str = "f32", name: str | None = None) -> dict:
    """Write ``model`` (a transformers causal LM of a ``FAMILIES`` type) with ``tokenizer`` (a fast byte-level BPE
    tokenizer) to the GGUF file ``output`` in ``outtype`` (``OUTTYPES``); ``name``: ``general.name`` (a public
    name). Returns ``{"arch", "pre", "outtype", "tensors", "bytes"}``. ValueError for a family, RoPE scaling,
    tokenizer or ``outtype`` it does not write, before anything is written; ImportError naming the install when the
    ``gguf`` package is missing. Atomic: a temp file beside ``output``, renamed at the end."""
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
    pre = pre_tokenizer_name(tok_json)
    n_rows = model.get_input_embeddings().weight.shape[0]
    tokens, types = _vocab(tokenizer, n_rows)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    theta = theta or getattr(config, "rope_theta", None) or 10000.0
    tied = bool(getattr(config, "tie_word_embeddings", False))
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
        writer.add_name(name or getattr(config, "_name_or_path", "") or config.model_type)
        context = getattr(config, "max_position_embeddings", None) or 2048
        window = getattr(config, "sliding_window", None) if config.model_type == "mistral" else None
        # llama.cpp's llama arch attends to the whole context: the context written stops at Mistral's window, so
        # every position sees what it sees in transformers
        writer.add_context_length(min(context, window) if window else context)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_rope_freq_base(float(theta))
        writer.add_rope_dimension_count(head_dim)
        if head_dim != config.hidden_size // heads or arch == "qwen3":
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        writer.add_vocab_size(n_rows)
        writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                              "bf16": gguf.LlamaFileType.MOSTLY_BF16}[outtype])
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        with tempfile.TemporaryDirectory() as tok_dir:  # SpecialVocab reads a saved tokenizer, whatever its source
            tokenizer.save_pretrained(tok_dir)
            special = gguf.SpecialVocab(tok_dir, load_merges=True, n_vocab=n_rows)
            if not special.merges:
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
