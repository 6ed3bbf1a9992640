"""The compressor on tiny random models of every architecture family users bring: each is pruned for real (masks
right in the checkpoint that reloads, manifest and `kick sparsity` agree) or refused before anything is written.

Families: Llama, Mistral and Qwen2 (GQA), OPT, GPT-NeoX (fused query_key_value), GPT-2 (transformers' Conv1D,
weight [in, out]), Phi, Phi-3 (fused qkv_proj / gate_up_proj), Gemma, Gemma 3 (sliding and full attention layers with
their own masks and rotary tables) and its multimodal wrapper (text decoder under ``model.language_model``); the
calibration replay also with eager attention (masks as tensors, GPT-2's passed positionally). Refused: Mixtral (fused
3-D expert tensors) for pruning and quantization, torchao int8 on GPT-2's Conv1D.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import transformers as T
from torch import nn
from transformers.pytorch_utils import Conv1D

from kick_hub.cli import main as kick
from kick_hub.compress import CompressSpec, check_model, compress, make_variant
from kick_hub.compress.blockwise import capture_inputs, collect_statistics, decoder_layers, linear_layers
from kick_hub.compress.methods.sparsegpt import Hessian, fasterprune
from kick_hub.compress.methods.wanda import InputNorm
from kick_hub.variant import check_sparsity, load_manifest
from tests.plain_calibration import feed_layer_inputs

V = 2048  # the world tokenizer's vocabulary
SMALL = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
FAMILIES = {
    "llama": lambda: T.LlamaConfig(**SMALL),
    "mistral": lambda: T.MistralConfig(**SMALL, num_key_value_heads=2),
    "qwen2": lambda: T.Qwen2Config(**SMALL, num_key_value_heads=2),
    "opt": lambda: T.OPTConfig(vocab_size=V, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                               word_embed_proj_dim=64),
    "gpt_neox": lambda: T.GPTNeoXConfig(**SMALL),
    "gpt2": lambda: T.GPT2Config(vocab_size=V, n_positions=512, n_embd=64, n_layer=2, n_head=2, bos_token_id=0,
                                 eos_token_id=0),
    "phi": lambda: T.PhiConfig(**SMALL),
    "phi3": lambda: T.Phi3Config(**SMALL, num_key_value_heads=2, pad_token_id=0),
    "gemma": lambda: T.GemmaConfig(**SMALL, num_key_value_heads=1, head_dim=16),
    # sliding window shorter than the calibration rows, so the two layer kinds see different masks
    "gemma3": lambda: T.Gemma3TextConfig(**SMALL, num_key_value_heads=1, head_dim=16, sliding_window=16,
                                         layer_types=["sliding_attention", "full_attention"]),
    # Gemma 3 4B+: AutoModelForCausalLM gives Gemma3ForConditionalGeneration, text decoder under model.language_model
    "gemma3_mm": lambda: T.Gemma3Config(
        text_config=dict(**SMALL, num_key_value_heads=1, head_dim=16, sliding_window=16,
                         layer_types=["sliding_attention", "full_attention"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        mm_tokens_per_image=4, image_token_index=2000, boi_token_index=2001, eoi_token_index=2002),
}
SEQLEN = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: thread hand-offs cost more than the arithmetic (40x slower with 2 threads on a busy 2-core
    machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(family: str):
    """A random model of ``family``; ``<family>-eager`` with eager attention (masks passed as tensors)."""
    torch.manual_seed(0)
    name, _, attn = family.partition("-")
    model = T.AutoModelForCausalLM.from_config(FAMILIES[name](), attn_implementation=attn or None)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer():
    return T.AutoTokenizer.from_pretrained("kick_hub/world/model")


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory, tokenizer):
    """4 x 64 world calibration ids, tokenized once and handed to make_variant as a file."""
    from safetensors.torch import save_file

    from kick_hub.compress.calibration import calibration_ids

    path = tmp_path_factory.mktemp("calib") / "ids.safetensors"
    save_file({"input_ids": calibration_ids("world", tokenizer, nsamples=4, seqlen=SEQLEN)}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    """family -> directory of the tiny random model saved with the world tokenizer (built on first use)."""
    root, dirs = tmp_path_factory.mktemp("families"), {}

    def get(family: str) -> str:
        if family not in dirs:
            tiny(family).save_pretrained(root / family)
            tokenizer.save_pretrained(root / family)
            dirs[family] = str(root / family)
        return dirs[family]
    return get


def prunable(model) -> dict[str, nn.Module]:
    """Every Linear / Conv1D of the text decoder's blocks (``...layers.<i>.`` or GPT-2's ``h.<i>.``), found without
    the compressor's own helpers: not the LM head, not a vision tower."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, Conv1D)) and re.search(r"(^|\.)(layers|h)\.\d+\.", n) and "vision" not in n}


def groups(layer: nn.Module, m: int) -> torch.Tensor:
    """Zero counts of every group of ``m`` consecutive input features: [out, in // m]. Linear stores W [out, in];
    Conv1D stores W [in, out], its input dimension is dim 0."""
    w = layer.weight.detach()
    w = w.t() if isinstance(layer, Conv1D) else w
    return (w == 0).reshape(w.shape[0], -1, m).sum(-1)


@pytest.mark.parametrize("family", [*FAMILIES, "gpt2-eager", "opt-eager", "gemma3-eager"])
def test_calibration_replays_every_block_exactly(family):
    """Each block, called with its captured arguments on the previous block's output, gives what it gives inside the
    model's own forward (GPT-2's attention mask, passed positionally; NeoX / rotary position_embeddings; Gemma 3's
    per-layer-type masks and rotary tables)."""
    model = tiny(family)
    ids = torch.randint(0, V, (2, 32), generator=torch.Generator().manual_seed(0))
    layers = decoder_layers(model)
    seen = {i: [] for i in range(len(layers))}
    hooks = [b.register_forward_hook(lambda mod, a, out, i=i: seen[i].append(out[0] if isinstance(out, tuple)
                                                                                else out))
             for i, b in enumerate(layers)]
    with torch.no_grad():
        for row in ids:
            model(input_ids=row[None], use_cache=False)
    for h in hooks:
        h.remove()
    inputs, kwargs = capture_inputs(model, ids)
    assert len(inputs) == 2 and len(kwargs) == len(layers)
    with torch.no_grad():
        for i, block in enumerate(layers):
            inputs = [block(x, **kwargs[i]) for x in inputs]
            inputs = [x[0] if isinstance(x, tuple) else x for x in inputs]
            for got, want in zip(inputs, seen[i]):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def plain_statistics(block: nn.Module, inputs: list, kwargs: dict, make_stats) -> dict:
    """Every layer's statistics the plain way: a forward hook on every layer, the whole block run on every row."""
    stats = {name: make_stats(lin) for name, lin in linear_layers(block).items()}
    feed_layer_inputs(block, inputs, kwargs, lambda name, x: stats[name].add_batch(x))
    return stats


def assert_same_statistics(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        a, b = vars(got[name]), vars(want[name])
        assert a.keys() == b.keys()
        for key in b:
            assert (torch.equal(a[key], b[key]) if isinstance(b[key], torch.Tensor) else a[key] == b[key]), (name, key)


@pytest.mark.parametrize("family", [*FAMILIES, "gpt2-eager", "opt-eager", "gemma3-eager"])
def test_statistics_equal_the_plain_passes_bit_for_bit(family):
    """``collect_statistics`` shares one accumulator among layers fed the very same input and stops each pass after
    the last layer's input; Wanda's norms and SparseGPT's Hessians must still be exactly the plain passes', in every
    block of every family (fused q/k/v, Conv1D, parallel attention and MLP in Phi / NeoX, Gemma 3's two kinds)."""
    model = tiny(family)
    ids = torch.randint(0, V, (3, 32), generator=torch.Generator().manual_seed(1))
    inputs, kwargs = capture_inputs(model, ids)
    for index, block in enumerate(decoder_layers(model)):
        for make_stats in (InputNorm, Hessian):
            want = plain_statistics(block, inputs, kwargs[index], make_stats)
            assert_same_statistics(collect_statistics(block, linear_layers(block), inputs, kwargs[index], make_stats),
                                   want)
        with torch.no_grad():
            inputs = [block(x, **kwargs[index]) for x in inputs]
        inputs = [x[0] if isinstance(x, tuple) else x for x in inputs]


def test_statistics_share_inputs_and_stop_at_the_last_layer():
    """On a Llama block: after the first row, q/k/v feed one accumulator and gate/up another (4 additions per row
    instead of 7), and down_proj (called last) never runs its matmul again."""
    model = tiny("llama")
    ids = torch.randint(0, V, (3, 32), generator=torch.Generator().manual_seed(1))
    inputs, kwargs = capture_inputs(model, ids)
    block = decoder_layers(model)[0]
    added: list[str] = []

    names = {lin: name for name, lin in linear_layers(block).items()}
    owner: dict[int, str] = {}  # id of an accumulator -> its layer (not an attribute: it would make them unequal)

    class Counted(InputNorm):
        def add_batch(self, inp):
            added.append(owner[id(self)])
            super().add_batch(inp)

    def make(lin):
        stats = Counted(lin)
        owner[id(stats)] = names[lin]
        return stats

    ran = []
    hook = block.mlp.down_proj.register_forward_hook(lambda *_: ran.append(1))
    try:
        got = collect_statistics(block, linear_layers(block), inputs, kwargs[0], make)
    finally:
        hook.remove()
    assert len(added) == 7 + 2 * 4 and sorted(set(added[7:])) == ["mlp.down_proj", "mlp.gate_proj", "self_attn.o_proj",
                                                                    "self_attn.q_proj"]
    assert ran == [1]  # the first row only
    assert got["self_attn.k_proj"] is not got["self_attn.q_proj"]  # each layer owns its statistics
    assert torch.equal(got["self_attn.k_proj"].scaler_row, got["self_attn.q_proj"].scaler_row)


def test_statistics_of_a_layer_called_twice_take_every_call():
    """A layer called twice in one pass (weights shared) gets both inputs on every row: no sharing, no early stop."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.a(self.b(self.a(x)))

    torch.manual_seed(0)
    block = Twice()
    inputs = [torch.randn(1, 5, 8) for _ in range(3)]
    got = collect_statistics(block, linear_layers(block), inputs, {}, InputNorm)
    assert got["a"].nsamples == 6 and got["b"].nsamples == 3
    assert_same_statistics(got, plain_statistics(block, inputs, {}, InputNorm))


@pytest.mark.parametrize("spec", [CompressSpec("wanda", sparsity=0.5), CompressSpec("sparsegpt", pattern="2:4")])
def test_pruned_weights_equal_the_plain_calibration_loop(spec, monkeypatch):
    """End to end: the weights Wanda and SparseGPT write with ``collect_statistics`` (and no output pass after the
    last block) are bit for bit those of the plain loop (every hook on every whole pass)."""
    import kick_hub.compress.blockwise as blockwise

    ids = torch.randint(0, V, (4, 32), generator=torch.Generator().manual_seed(2))
    ours = compress(tiny("llama"), spec, ids, progress=False).state_dict()
    monkeypatch.setattr(blockwise, "collect_statistics",
                        lambda block, linears, inputs, kwargs, make: plain_statistics(block, inputs, kwargs, make))
    plain = compress(tiny("llama"), spec, ids, progress=False).state_dict()
    assert ours.keys() == plain.keys() and all(torch.equal(ours[k], plain[k]) for k in ours)
    assert any(bool((v == 0).any()) for k, v in ours.items() if "layers" in k and k.endswith("proj.weight"))


def test_first_block_statistics_are_reused_by_the_next_variant(monkeypatch):
    """Wanda's and SparseGPT's first-block statistics are computed once per process for a model and calibration
    (``run_blockwise(memo=True)``): the next variant at another sparsity reuses them and gets exactly the weights
    it gets without the memo; other calibration ids, another method's statistics or a changed first block miss."""
    import kick_hub.compress.blockwise as blockwise

    collected = []
    plain = blockwise.collect_statistics
    monkeypatch.setattr(blockwise, "collect_statistics",
                        lambda block, *a: (collected.append(block), plain(block, *a))[1])
    ids = torch.randint(0, V, (4, 32), generator=torch.Generator().manual_seed(3))
    blockwise._FIRST_BLOCK.clear()
    compress(tiny("llama"), CompressSpec("wanda", sparsity=0.5), ids, progress=False)
    assert len(collected) == 2  # both blocks
    collected.clear()
    model = tiny("llama")
    reused = compress(model, CompressSpec("wanda", sparsity=0.3), ids, progress=False).state_dict()
    assert collected == [decoder_layers(model)[1]]  # the first block's statistics came from the memo
    blockwise._FIRST_BLOCK.clear()
    fresh = compress(tiny("llama"), CompressSpec("wanda", sparsity=0.3), ids, progress=False).state_dict()
    assert all(torch.equal(reused[k], fresh[k]) for k in fresh)
    collected.clear()
    compress(tiny("llama"), CompressSpec("sparsegpt", sparsity=0.5), ids, progress=False)  # Hessians, not norms
    compress(tiny("llama"), CompressSpec("wanda", sparsity=0.5), ids.flip(0), progress=False)  # other rows
    changed = tiny("llama")
    with torch.no_grad():
        decoder_layers(changed)[0].mlp.up_proj.weight[0, 0] += 1
    compress(changed, CompressSpec("wanda", sparsity=0.5), ids, progress=False)
    assert len(collected) == 3 * 2
    monkeypatch.setattr(blockwise, "MEMO_MAX_BYTES", 0)  # statistics over the bound are not kept
    blockwise._FIRST_BLOCK.clear()
    compress(tiny("llama"), CompressSpec("wanda", sparsity=0.5), ids, progress=False)
    assert not blockwise._FIRST_BLOCK


def test_gemma3_blocks_get_their_own_arguments():
    model = tiny("gemma3")
    _, kwargs = capture_inputs(model, torch.randint(0, V, (1, 32)))
    cos0, cos1 = kwargs[0]["position_embeddings"][0], kwargs[1]["position_embeddings"][0]
    assert not torch.equal(cos0, cos1)  # local (sliding) and global rotary tables


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("spec", [CompressSpec("magnitude", sparsity=0.5), CompressSpec("wanda", pattern="2:4"),
                                  CompressSpec("sparsegpt", sparsity=0.5)], ids=lambda s: s.label)
def test_family_variant_pruned_for_real(family, spec, saved, calib_file, tmp_path, capsys):
    out = make_variant(saved(family), spec, tmp_path / "v", calibration=calib_file, nsamples=4, seqlen=SEQLEN,
                       progress=False)
    manifest = load_manifest(out)
    model = T.AutoModelForCausalLM.from_pretrained(out)
    layers = prunable(model)
    assert len(layers) >= 4 and len(manifest["layer_sparsity"]) == len(layers)
    for name, layer in layers.items():
        w = layer.weight.detach()
        zeros = int((w == 0).sum())
        if spec.pattern:  # exactly 2 of every 4 along the input dimension (SparseGPT may add zeros; Wanda never)
            assert torch.all(groups(layer, 4) == 2), name
            assert zeros == w.numel() // 2, name
        elif spec.method == "magnitude":  # `<=` the value at int(numel / 2): one more than half, no ties here
            assert zeros == w.numel() // 2 + 1, name
        else:  # SparseGPT: the same rule per block of 128 input columns
            n_in = w.shape[0] if isinstance(layer, Conv1D) else w.shape[1]
            assert w.numel() // 2 <= zeros <= w.numel() // 2 + -(-n_in // 128), name
    measured = sum(int((m.weight == 0).sum()) for m in layers.values()) / sum(m.weight.numel() for m in layers.values())
    assert manifest["sparsity"] == pytest.approx(measured, abs=1e-9)
    assert manifest["sparsity"] == pytest.approx(0.5, abs=2e-3)
    base = T.AutoModelForCausalLM.from_pretrained(saved(family)).state_dict()
    pruned = {f"{n}.weight" for n in layers}
    for key, value in model.state_dict().items():  # nothing else is touched (embeddings, LM head, vision tower)
        assert key in pruned or torch.equal(value, base[key]), key
    rows = check_sparsity(out)
    assert len(rows) == len(layers) and all(r["ok"] for r in rows)
    assert kick(["sparsity", str(out)]) == 0
    assert f"{len(layers)}/{len(layers)} layers match" in capsys.readouterr().out


def test_issue_gpt2_cli_magnitude_and_wanda(saved, calib_file, tmp_path, capsys):
    """The reported case: `kick compress` on a tiny GPT-2 gives 50 % sparse Conv1D weights and `kick sparsity` passes
    with all 8 layers compared."""
    try:
        for args in (["--method", "magnitude", "--sparsity", "0.5"],
                     ["--method", "wanda", "--pattern", "2:4", "--calibration", calib_file, "--nsamples", "4",
                      "--seqlen", str(SEQLEN)]):
            out = tmp_path / args[1]
            assert kick(["compress", "--model", saved("gpt2"), *args, "--output", str(out)]) == 0
            assert kick(["sparsity", str(out)]) == 0
            printed = capsys.readouterr().out
            assert "8/8 layers match" in printed
            sparsity = float(printed.split("sparsity ")[1].split(",")[0])
            assert sparsity == pytest.approx(0.5, abs=2e-4)
            model = T.AutoModelForCausalLM.from_pretrained(out)
            for name, layer in prunable(model).items():
                assert isinstance(layer, Conv1D) and float((layer.weight == 0).float().mean()) >= 0.5, name
    finally:
        torch.set_num_threads(1)  # `kick compress` takes every core


def test_conv1d_wanda_uses_input_norms_along_dim0():
    """GPT-2's Conv1D: Wanda's score is |W^T| x ||X|| per input feature, the 2:4 groups run along dim 0 of the stored
    weight; checked against the direct computation for every layer of the first block."""
    model = tiny("gpt2")
    ids = torch.randint(0, V, (3, 32), generator=torch.Generator().manual_seed(1))
    block = decoder_layers(model)[0]
    layers = linear_layers(block)
    assert sorted(layers) == ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    assert all(isinstance(m, Conv1D) for m in layers.values())
    seen = {n: [] for n in layers}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen[n].append(i[0].reshape(-1, i[0].shape[-1])))
             for n, m in layers.items()]
    with torch.no_grad():
        for row in ids:
            model(input_ids=row[None], use_cache=False)
    for h in hooks:
        h.remove()
    expected = {}
    for n, m in layers.items():
        metric = m.weight.detach().t().abs() * torch.cat(seen[n]).norm(dim=0)[None, :]  # [out, in]
        low = torch.topk(metric.reshape(metric.shape[0], -1, 4), 2, dim=-1, largest=False)[1]
        mask = torch.zeros(metric.shape[0], metric.shape[1] // 4, 4, dtype=torch.bool).scatter_(-1, low, True)
        expected[n] = mask.reshape(metric.shape).t()  # back to the stored [in, out]
    compress(model, CompressSpec("wanda", pattern="2:4"), ids, progress=False)
    for n, m in linear_layers(decoder_layers(model)[0]).items():
        assert torch.equal(m.weight.detach() == 0, expected[n]), n


@pytest.mark.parametrize("pattern", [None, (2, 4)])
def test_sparsegpt_conv1d_equals_linear(pattern):
    """SparseGPT on a Conv1D gives exactly the transpose of SparseGPT on the equivalent Linear (same H)."""
    torch.manual_seed(0)
    conv = Conv1D(24, 32)  # nf = out 24, nx = in 32: weight [32, 24]
    lin = nn.Linear(32, 24)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.t())
    stats = Hessian(conv)
    for _ in range(3):
        stats.add_batch(torch.randn(1, 16, 32))
    H = stats.take()
    assert H.shape == (32, 32)
    fasterprune(conv, H.clone(), 0.5, pattern)
    fasterprune(lin, H.clone(), 0.5, pattern)
    assert torch.equal(conv.weight.detach(), lin.weight.detach().t())
    assert int((conv.weight == 0).sum()) >= 32 * 24 // 2
    if pattern:
        assert torch.all(groups(conv, 4) >= 2)


def test_moe_fused_experts_refused_before_writing(saved, tokenizer, tmp_path):
    """Mixtral keeps its experts as 3-D tensors outside any Linear: pruning (or bitsandbytes / torchao
    quantization) would leave most weights as they are."""
    torch.manual_seed(0)
    model = T.MixtralForCausalLM(T.MixtralConfig(**SMALL, num_key_value_heads=2, num_local_experts=4))
    model.save_pretrained(tmp_path / "mixtral")
    tokenizer.save_pretrained(tmp_path / "mixtral")
    for spec in (CompressSpec("magnitude", sparsity=0.5), CompressSpec("wanda", pattern="2:4"), CompressSpec("nf4")):
        with pytest.raises(ValueError, match=r"model: MixtralDecoderLayer holds weight matrices that are not "
                                             r"Linear/Conv1D layers.*0\.mlp\.experts\.gate_up_proj \(MixtralExperts "
                                             r"\[4, 256, 64\]\)"):
            make_variant(str(tmp_path / "mixtral"), spec, tmp_path / "v", nsamples=2, seqlen=32, progress=False)
    assert not (tmp_path / "v").exists()


def test_int8_refuses_conv1d_before_writing(saved, tmp_path):
    """torchao's int8 quantizes nn.Linear only: on GPT-2 it would write an unquantized 'int8' variant."""
    pytest.importorskip("torchao")
    with pytest.raises(ValueError, match=r"method: int8 would leave 8 of GPT2LMHeadModel's 8 block layers "
                                         r"unquantized \(Conv1D: transformer.h.0.attn.c_attn, ...\); torchao "
                                         r"quantizes nn.Linear only"):
        make_variant(saved("gpt2"), CompressSpec("int8"), tmp_path / "v")
    assert not (tmp_path / "v").exists()


def test_blocks_without_prunable_layers_refused():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(8)

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block(), Block()])

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()

    with pytest.raises(ValueError, match=r"model: Block blocks of Model hold no Linear or Conv1D layer \(only "
                                         r"LayerNorm\); magnitude has nothing it can compress"):
        check_model(Model(), CompressSpec("magnitude", sparsity=0.5))


def test_variant_with_no_pruned_layer_never_written(saved, tmp_path, monkeypatch):
    """Whatever skips the layers, make_variant refuses a 'magnitude-50' whose layers are all dense."""
    from kick_hub.compress.methods import magnitude

    monkeypatch.setattr(magnitude, "prune", lambda model, spec: None)
    with pytest.raises(ValueError, match=r"model: magnitude-50 pruned none of GPT2LMHeadModel's 8 Linear/Conv1D "
                                         r"layers; nothing written"):
        make_variant(saved("gpt2"), CompressSpec("magnitude", sparsity=0.5), tmp_path / "v")
    assert not (tmp_path / "v").exists()


def test_sparsity_check_fails_when_layers_are_missing_from_the_manifest(saved, tmp_path, capsys):
    """A manifest that lists no layer is a failure, never '0/0 match'."""
    out = make_variant(saved("gpt2"), CompressSpec("magnitude", sparsity=0.5), tmp_path / "v", progress=False)
    manifest = json.loads((out / "kick_manifest.json").read_text())
    manifest["layer_sparsity"] = {}
    (out / "kick_manifest.json").write_text(json.dumps(manifest))
    rows = check_sparsity(out)
    assert len(rows) == 8 and not any(r["ok"] for r in rows) and all(r["manifest"] is None for r in rows)
    assert kick(["sparsity", str(out)]) == 1
    assert "0/8 layers match" in capsys.readouterr().out
    # dense weights under a layer-wise spec fail even where the manifest agrees they are dense
    shutil.copy(Path(saved("gpt2")) / "model.safetensors", out / "model.safetensors")
    manifest["layer_sparsity"] = {r["layer"]: 0.0 for r in rows}
    (out / "kick_manifest.json").write_text(json.dumps(manifest))
    rows = check_sparsity(out)
    assert all(r["measured"] == r["manifest"] == 0.0 for r in rows) and not any(r["ok"] for r in rows)
    # a quantized variant has no sparsity to check: an error (exit 2), not a pass
    manifest["method"] = "int8"
    (out / "kick_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"is a 'int8' variant, not a pruned one"):
        check_sparsity(out)
    with pytest.raises(SystemExit) as exit_:
        kick(["sparsity", str(out)])
    assert exit_.value.code == 2


def test_gpt2_sparse_storage_round_trip(saved, calib_file, tmp_path):
    """--storage sparse stores GPT-2's Conv1D weights ([in, out]) in the bitmask layout and reloads them exactly."""
    spec = CompressSpec("wanda", pattern="2:4")
    dense = make_variant(saved("gpt2"), spec, tmp_path / "dense", calibration=calib_file, nsamples=4, seqlen=SEQLEN,
                         progress=False)
    sparse = make_variant(saved("gpt2"), spec, tmp_path / "sparse", calibration=calib_file, nsamples=4,
                          seqlen=SEQLEN, progress=False, storage="sparse")
    targets = json.loads((sparse / "config.json").read_text())["quantization_config"]["targets"]
    assert len(targets) == 8 and all(t.rsplit(".", 1)[1] in ("c_attn", "c_proj", "c_fc") for t in targets)
    rows = check_sparsity(sparse)
    assert len(rows) == 8 and all(r["ok"] for r in rows)
    a, b = (T.AutoModelForCausalLM.from_pretrained(p).state_dict() for p in (dense, sparse))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
