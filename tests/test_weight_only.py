"""Weight-only quantization (torchao int8, bitsandbytes LLM.int8 and NF4) on CPU: saved variants reload exactly."""

import pytest
import torch

from kick_hub import variant
from kick_hub.compress import CompressSpec, compress
from kick_hub.engine import load_model

X = torch.tensor([[1, 50, 60, 70, 80, 90]])


@pytest.mark.parametrize("method, module", [("int8", "torchao"), ("bnb-int8", "bitsandbytes"),
                                            ("nf4", "bitsandbytes")])
def test_saved_variant_reloads_with_identical_logits(method, module, tmp_path):
    pytest.importorskip(module)
    from transformers import AutoModelForCausalLM

    dense, tok = load_model("world")
    with torch.no_grad():
        ref = dense(X).logits
    spec = CompressSpec(method)
    quantized = compress(dense, spec)
    # saved before any forward pass (tests/test_quant_checks.py saves after one)
    out = variant.save(quantized, tok, tmp_path / method, {"method": method, "label": spec.label})
    with torch.no_grad():
        in_memory = quantized(X).logits.float()
        reloaded = AutoModelForCausalLM.from_pretrained(out, device_map="cpu")(X).logits.float()
    assert torch.equal(in_memory, reloaded)
    assert (in_memory - ref).abs().max() < 0.25 * ref.abs().max()  # close to dense, not identical
    assert not torch.equal(in_memory, ref)


def test_quantizes_the_loaded_tensors_without_a_checkpoint_copy(monkeypatch):
    """transformers quantizes the model's own tensors (``from_pretrained(state_dict=...)``): no temporary checkpoint
    (whose mapped pages would sit beside the quantized copy), unquantized tensors shared, the input released."""
    pytest.importorskip("torchao")
    from transformers import PreTrainedModel

    dense, _ = load_model("world")
    embed = dense.model.embed_tokens.weight.data_ptr()

    def no_checkpoint(*args, **kwargs):
        raise AssertionError("quantization wrote a checkpoint")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", no_checkpoint)
    quantized = compress(dense, CompressSpec("int8"))
    assert quantized.model.embed_tokens.weight.data_ptr() == embed  # shared, not copied
    assert dense.model.layers[0].mlp.up_proj.weight.is_meta  # the input's weights are released
    assert "Int8" in type(quantized.model.layers[0].mlp.up_proj.weight).__name__


def test_weight_only_bits_are_fixed():
    assert CompressSpec("nf4").bits == 4 and CompressSpec("int8").label == "int8"
    with pytest.raises(ValueError, match="bits: nf4 is 4-bit"):
        CompressSpec("nf4", bits=8)
