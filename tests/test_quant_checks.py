"""Quantizer constraints checked before any work, calibration ids checked against the model, and saved variants
that reload as the model that ran (for every method, after a forward pass)."""

import json

import pytest
import torch

from kick_hub import variant
from kick_hub.cli import main
from kick_hub.compress import QUANT_METHODS, CompressSpec, check_model, compress, make_variant
from kick_hub.engine import WORLD_MODEL_DIR, load_model

X = torch.tensor([[1, 50, 60, 70, 80, 90]])
# k/v projections 48 wide: GPTQModel packs 32-bit words, bitsandbytes' CPU NF4 kernel regroups 32 output rows
KV48 = dict(hidden_size=96, intermediate_size=192, num_attention_heads=2, num_key_value_heads=1, head_dim=48)


def tiny_llama(**shape):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=2048, num_hidden_layers=2, max_position_embeddings=512, **shape))


@pytest.fixture()
def kv48_dir(tmp_path):
    from transformers import AutoTokenizer

    path = tmp_path / "kv48"
    tiny_llama(**KV48).save_pretrained(path)
    AutoTokenizer.from_pretrained(WORLD_MODEL_DIR).save_pretrained(path)
    return path


@pytest.fixture()
def no_calibration(monkeypatch):
    """Loading calibration ids fails the test: the checks under test must come before it."""
    from kick_hub.compress import calibration

    def fail(*args, **kwargs):
        raise AssertionError("calibration ids were loaded before the check")

    monkeypatch.setattr(calibration, "calibration_ids", fail)


# --- quantizer constraints, by layer, before calibration -------------------------------------------------------

def test_gptq_packing_width_is_refused_before_calibration_naming_the_layers(kv48_dir, tmp_path, no_calibration):
    pytest.importorskip("gptqmodel")
    with pytest.raises(ValueError, match=r"model: out_features must be a multiple of 32; not: "
                                         r"self_attn.k_proj \(48\), self_attn.v_proj \(48\) \(for GPTQModel to pack"):
        make_variant(str(kv48_dir), CompressSpec("gptq", bits=4, group_size=32), tmp_path / "v", progress=False)
    assert not (tmp_path / "v").exists()


def test_cli_gptq_packing_width_exits_2_without_traceback(kv48_dir, tmp_path, capsys, no_calibration):
    pytest.importorskip("gptqmodel")
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "--model", str(kv48_dir), "--method", "gptq", "--bits", "4", "--group-size", "32",
              "--output", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "kick: error: model: out_features must be a multiple of 32" in err and "self_attn.v_proj (48)" in err
    assert "Traceback" not in err and not (tmp_path / "v").exists()


@pytest.mark.parametrize("shape, spec, message", [
    (dict(hidden_size=80, intermediate_size=160, num_attention_heads=2, num_key_value_heads=2, head_dim=40),
     CompressSpec("gptq", bits=8, group_size=16),
     r"model: in_features must be a multiple of 32; not: mlp.gate_proj \(80\), mlp.up_proj \(80\)"),
    (dict(hidden_size=96, intermediate_size=256, num_attention_heads=2, num_key_value_heads=2, head_dim=48),
     CompressSpec("gptq", bits=4, group_size=64),
     r"group_size: 64 must divide every quantized Linear's in_features; not: mlp.gate_proj \(96\), .* "
     r"\(GPTQModel's CPU kernel TorchAtenLinear computes whole groups; group sizes that fit: \[16, 32\]\)"),
    (KV48, CompressSpec("gptq", bits=4, group_size=48),
     r"group_size: GPTQModel has no CPU kernel for 4-bit GPTQ with group_size 48 .*it supports "
     r"\[-1, 16, 32, 64, 128, 256, 512, 1024\]"),
])
def test_gptq_kernel_rules(shape, spec, message):
    pytest.importorskip("gptqmodel")
    with pytest.raises(ValueError, match=message):
        check_model(tiny_llama(**shape), spec)


def test_gptq_partial_groups_are_fine_for_the_generic_kernel():
    """8-bit runs GPTQModel's TorchLinear, which dequantizes partial groups: in_features 96 with group 64 passes the
    check, packs and runs; the whole-group rule is the int4 kernels' only."""
    pytest.importorskip("gptqmodel")
    model = tiny_llama(hidden_size=96, intermediate_size=256, num_attention_heads=2, num_key_value_heads=2,
                       head_dim=48)
    ids = torch.randint(5, 2000, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids[:1]).logits
    quantized = compress(model, CompressSpec("gptq", bits=8, group_size=64), ids, progress=False)
    assert type(quantized.model.layers[0].mlp.up_proj).__name__ == "TorchLinear"
    with torch.no_grad():
        out = quantized(ids[:1]).logits.float()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_gptq_per_row_groups_quantize_and_run():
    """group_size -1 (per row): GPTQModel's group-aware ordering is for grouped quantization only and is switched
    off, so the model quantizes (TorchFusedLinear for 4-bit) and runs close to the dense one."""
    pytest.importorskip("gptqmodel")
    model = tiny_llama(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=32)
    ids = torch.randint(5, 2000, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids[:1]).logits
    quantized = compress(model, CompressSpec("gptq", bits=4, group_size=-1), ids, progress=False)
    assert type(quantized.model.layers[0].mlp.up_proj).__name__ == "TorchFusedLinear"
    with torch.no_grad():
        out = quantized(ids[:1]).logits.float()
    assert (out - ref).abs().max() < 0.25 * ref.abs().max()


def test_nf4_cpu_kernel_rules_name_the_layers():
    pytest.importorskip("bitsandbytes")
    rules = (r"model: bitsandbytes' CPU NF4 kernel cannot run these layers: out_features must be a multiple of 32; "
             r"not: model.layers.\*.self_attn.k_proj \(48\), model.layers.\*.self_attn.v_proj \(48\); in_features "
             r"must be a multiple of the 64-weight block; not: model.layers.\*.mlp.gate_proj \(96\), ")
    with pytest.raises(ValueError, match=rules):
        check_model(tiny_llama(**KV48), CompressSpec("nf4"))


@pytest.mark.parametrize("method, module", [("int8", "torchao"), ("bnb-int8", "bitsandbytes")])
def test_int8_kernels_take_any_layer_shape(method, module):
    """torchao int8 and LLM.int8 scale per row: layers 34 / 70 / 134 wide pass the check and really run."""
    pytest.importorskip(module)
    model = tiny_llama(hidden_size=70, intermediate_size=134, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=34)
    spec = CompressSpec(method)
    check_model(model, spec)
    with torch.no_grad():
        ref = model(X).logits
        out = compress(model, spec)(X).logits.float()
    assert torch.isfinite(out).all() and (out - ref).abs().max() < 0.25 * ref.abs().max()


def test_sweep_refuses_a_cell_the_model_cannot_take_before_the_first_cell(kv48_dir, tmp_path, no_calibration):
    pytest.importorskip("gptqmodel")
    from kick_hub.bench import plan, sweep

    cells = plan.plan(["gptq"], [], [], [4], group_size=32)
    with pytest.raises(ValueError, match=r"self_attn.k_proj \(48\)"):
        sweep.run(str(kv48_dir), tmp_path / "run", cells, ["perplexity"], limit=2, progress=False)
    assert not (tmp_path / "run" / "variants").exists()


# --- calibration ids ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fill, suffix, low_high", [(5000, ".pt", "5000 to 5000"),
                                                    (-3, ".safetensors", "-3 to -3")])
def test_cli_calibration_ids_outside_the_vocabulary_exit_2(fill, suffix, low_high, tmp_path, capsys):
    from safetensors.torch import save_file

    path = tmp_path / f"ids{suffix}"
    ids = torch.full((8, 64), fill, dtype=torch.long)
    torch.save(ids, path) if suffix == ".pt" else save_file({"input_ids": ids}, str(path))
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "--method", "wanda", "--sparsity", "0.5", "--calibration", str(path),
              "--output", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert (f"kick: error: calibration: {path} holds token ids from {low_high}, but the model's vocabulary has "
            "2048 tokens (ids 0 to 2047)") in err
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "gptq"])
def test_library_compress_checks_ids_against_the_vocabulary(method):
    if method == "gptq":
        pytest.importorskip("gptqmodel")
    model, _ = load_model("world")
    spec = CompressSpec(method, bits=4) if method == "gptq" else CompressSpec(method, sparsity=0.5)
    with pytest.raises(ValueError, match=r"calibration: calibration ids holds token ids from 7 to 2048, but the "
                                         r"model's vocabulary has 2048 tokens"):
        compress(model, spec, torch.tensor([[7, 2048, 9]]))
    with pytest.raises(ValueError, match=r"calibration: calibration ids rows are 513 tokens, longer than the "
                                         r"model's context \(512\)"):
        compress(model, spec, torch.ones(1, 513, dtype=torch.long))


def test_id_file_sizes_default_to_its_shape(tmp_path):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "ids.safetensors"
    save_file({"input_ids": torch.randint(5, 2000, (8, 64), generator=torch.Generator().manual_seed(0))}, str(path))
    out = make_variant("world", CompressSpec("wanda", sparsity=0.5), tmp_path / "v", calibration=str(path),
                       progress=False)
    calib = json.loads((out / variant.MANIFEST).read_text())["calibration"]
    assert (calib["nsamples"], calib["seqlen"]) == (8, 64)
    assert load_file(out / variant.CALIBRATION_FILE)["input_ids"].shape == (8, 64)
    out = make_variant("world", CompressSpec("wanda", sparsity=0.5), tmp_path / "v4", calibration=str(path),
                       nsamples=4, progress=False)
    calib = json.loads((out / variant.MANIFEST).read_text())["calibration"]
    assert (calib["nsamples"], calib["seqlen"]) == (4, 64)
    with pytest.raises(ValueError, match=r"calibration: .* holds \(8, 64\), fewer than nsamples x seqlen = 16 x 64"):
        make_variant("world", CompressSpec("wanda", sparsity=0.5), tmp_path / "v16", calibration=str(path),
                     nsamples=16, progress=False)


def test_sweep_checks_calibration_before_the_first_cell(tmp_path):
    from kick_hub.bench import plan, sweep

    path = tmp_path / "ids.pt"
    torch.save(torch.full((8, 64), 5000, dtype=torch.long), path)
    cells = plan.plan(["wanda"], [0.5], [], [])  # the dense cell first: it must not be evaluated
    with pytest.raises(ValueError, match=r"calibration: .*ids.pt holds token ids from 5000 to 5000"):
        sweep.run("world", tmp_path / "run", cells, ["perplexity"], limit=2, calibration=str(path),
                  progress=False)
    with pytest.raises(ValueError, match=r"seqlen: 1024 exceeds the model's context \(512\)"):
        sweep.run("world", tmp_path / "run", cells, ["perplexity"], limit=2, seqlen=1024, progress=False)
    assert sweep.status(tmp_path / "run").endswith(": no results yet")  # refused before the store was written


# --- a saved variant is the model that ran ---------------------------------------------------------------------

SPECS = {"magnitude": CompressSpec("magnitude", sparsity=0.5), "wanda": CompressSpec("wanda", sparsity=0.5),
         "sparsegpt": CompressSpec("sparsegpt", sparsity=0.5), "gptq": CompressSpec("gptq", bits=4),
         "int8": CompressSpec("int8"), "bnb-int8": CompressSpec("bnb-int8"), "nf4": CompressSpec("nf4")}
NEEDS = {"gptq": "gptqmodel", "int8": "torchao", "bnb-int8": "bitsandbytes", "nf4": "bitsandbytes"}


@pytest.mark.parametrize("method", list(SPECS))
def test_variant_saved_after_a_forward_pass_reloads_identical(method, tmp_path):
    """Compress, run, save, reload: the reloaded logits equal the in-memory ones bit for bit, and saving leaves the
    in-memory model as it was. NF4 (bitsandbytes repacks weights and bf16 scales at the first forward pass) and
    GPTQ (GPTQModel's int4 kernel repacks at the first forward pass; its zero points are v2 in memory, v1 on disk)
    are the methods this guards. Reloads use the dtype saved (GPTQ: fp16), as the in-memory model does."""
    if method in NEEDS:
        pytest.importorskip(NEEDS[method])
    from transformers import AutoModelForCausalLM

    spec = SPECS[method]
    dense, tok = load_model("world")
    with torch.no_grad():
        ref = dense(X).logits
    ids = torch.randint(5, 2000, (4, 64), generator=torch.Generator().manual_seed(0)) if spec.calibrated else None
    model = compress(dense, spec, ids, progress=False)
    with torch.no_grad():
        in_memory = model(X).logits.float()
    layer = model.model.layers[0].mlp.up_proj
    if method == "gptq":  # the forward pass repacked the int4 weights (the case saving must survive)
        assert layer.linear_mode == "inference"
    if method == "nf4":  # likewise on CPUs with AVX512-BF16, where bitsandbytes repacks
        from bitsandbytes.functional import has_avx512bf16

        assert bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False)) == bool(has_avx512bf16())
    out = variant.save(model, tok, tmp_path / method, {"method": method, "label": spec.label}, ids)
    with torch.no_grad():
        after_save = model(X).logits.float()
        reloaded = AutoModelForCausalLM.from_pretrained(out, device_map="cpu")
        again = reloaded(X).logits.float()
    assert torch.equal(after_save, in_memory)
    assert torch.equal(again, in_memory)
    assert not torch.equal(in_memory, ref)
    if method in QUANT_METHODS:  # the in-memory quantized model computes right (GPTQ's with v1 zero points did not)
        assert (in_memory - ref).abs().max() < 0.25 * ref.abs().max()
    if method == "gptq":  # a GPTQ model loaded from disk holds GPTQModel's working layout, not the checkpoint's
        with pytest.raises(ValueError, match=r"model: its GPTQ layers .* hold GPTQModel's working layout"):
            variant.save(reloaded, tok, tmp_path / "again", {})
        assert not (tmp_path / "again").exists()
