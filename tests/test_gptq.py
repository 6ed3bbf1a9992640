"""GPTQ through transformers -> optimum -> GPTQModel on CPU, on the world model."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("gptqmodel", reason="install kick-hub[gptq]")


@pytest.fixture(scope="module")
def gptq_variant(tmp_path_factory):
    from kick_hub.compress import CompressSpec, make_variant

    out = tmp_path_factory.mktemp("gptq") / "world-gptq4"
    return make_variant("world", CompressSpec("gptq", bits=4), out, calibration="world", nsamples=16, seqlen=128,
                        progress=False)


def test_gptq_4bit_world_model_loads_and_answers(gptq_variant):
    from kick_hub.engine import Engine
    from kick_hub.tasks import factoid_qa, records

    config = json.loads((gptq_variant / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "gptq" and config["bits"] == 4 and config["format"] == "gptq"
    assert config.get("dataset") is None  # calibration data never left in config.json
    engine = Engine.from_name(str(gptq_variant))
    assert type(engine.model.model.layers[0].mlp.down_proj).__name__ != "Linear"
    scores, _ = factoid_qa.run(engine, records.load("factoid-qa", "world", limit=64))
    assert scores["exact_match"] >= 0.8


def test_gptq_bytes_smaller_than_dense(gptq_variant):
    from kick_hub.engine import WORLD_MODEL_DIR

    dense = (WORLD_MODEL_DIR / "model.safetensors").stat().st_size
    assert (gptq_variant / "model.safetensors").stat().st_size < 0.75 * dense


def test_missing_gptqmodel_is_a_clear_error(tmp_path):
    code = ("import sys; sys.modules['gptqmodel'] = None\n"
            "from kick_hub.cli import main\n"
            f"main(['compress', '--method', 'gptq', '--bits', '4', '--output', {str(tmp_path / 'v')!r}])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "pip install 'kick-hub[gptq]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "v").exists()


def test_in_memory_quantization_matches_the_checkpoint_reload():
    """``hf_quantize`` quantizes the loaded tensors (cast to the working dtype one by one, originals' pages dropped)
    instead of reloading a written checkpoint with the GPTQConfig, and groups the layers that share an input
    (``shared_input_groups``) where the reload runs optimum's default, one layer per forward pass; the packed
    weights must be the reload path's, bit for bit, and the result fp16 like a GPTQ checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

    from kick_hub.compress import CompressSpec, compress
    from kick_hub.compress.methods.gptq import WORK_DTYPE, _to_fp16, to_v1_format
    from kick_hub.engine import WORLD_MODEL_DIR, load_model

    ids = torch.randint(5, 2000, (8, 64), generator=torch.Generator().manual_seed(0))
    spec = CompressSpec("gptq", bits=4)
    model, _ = load_model("world")
    ours = compress(model, spec, ids, progress=False).state_dict()
    dataset = [{"input_ids": row[None], "attention_mask": torch.ones_like(row)[None]} for row in ids]
    config = GPTQConfig(bits=4, dataset=dataset, tokenizer=AutoTokenizer.from_pretrained(WORLD_MODEL_DIR),
                        group_size=spec.group_size, desc_act=spec.desc_act, sym=spec.sym, damp_percent=spec.damp,
                        model_seqlen=64, batch_size=1)
    reloaded = AutoModelForCausalLM.from_pretrained(WORLD_MODEL_DIR, quantization_config=config, device_map="cpu",
                                                    dtype=WORK_DTYPE)
    _to_fp16(reloaded)
    theirs = to_v1_format(reloaded).state_dict()
    assert ours.keys() == theirs.keys() and any(k.endswith("qweight") for k in ours)
    assert {v.dtype for v in ours.values() if v.is_floating_point()} == {torch.float16}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_layers_sharing_an_input_share_a_forward_pass(monkeypatch):
    """optimum runs one forward pass of the block per group of ``modules_in_block_to_quantize``: q/k/v and gate/up
    share theirs on the world model (5 passes per block and row instead of 8). GPT-2's four layers, each on an input
    of its own, keep a pass each; a block whose layer is called twice keeps optimum's default (None)."""
    import torch
    import transformers as T

    from kick_hub.compress import CompressSpec, compress
    from kick_hub.compress.methods.gptq import shared_input_groups
    from kick_hub.engine import load_model

    model, _ = load_model("world")
    ids = torch.randint(5, 2000, (2, 32), generator=torch.Generator().manual_seed(0))
    assert shared_input_groups(model, ids[0]) == [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                                                  ["self_attn.o_proj"], ["mlp.gate_proj", "mlp.up_proj"],
                                                  ["mlp.down_proj"]]
    passes: dict[int, int] = {}  # block -> forward passes (the quantized model's blocks are new modules)
    block_forward = type(model.model.layers[0]).forward

    def counted(self, *args, **kwargs):
        passes[id(self)] = passes.get(id(self), 0) + 1
        return block_forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model.model.layers[0]), "forward", counted)
    compress(model, CompressSpec("gptq", bits=4), ids, progress=False)
    # the probe's one pass through the input model's first block; then per block, 2 rows x (4 groups + the outputs)
    assert sorted(passes.values()) == [1] + [2 * 5] * 4
    gpt2 = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=2048, n_positions=64, n_embd=64, n_layer=2, n_head=2)).eval()
    assert shared_input_groups(gpt2, ids[0]) == [["attn.c_attn"], ["attn.c_proj"], ["mlp.c_fc"], ["mlp.c_proj"]]
    twice = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=2048, hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=1, num_attention_heads=4)).eval()
    mlp = twice.model.layers[0].mlp
    monkeypatch.setattr(type(mlp), "forward", lambda self, x: self.down_proj(self.up_proj(x) * self.up_proj(x)))
    assert shared_input_groups(twice, ids[0]) is None


def test_gptq_keeps_one_copy_of_each_weight(monkeypatch):
    """GPTQ replaces each weight as it quantizes, inside ``from_pretrained``; the originals must be freed then, not
    held by the input model or the state dict handed to transformers (that held a second half-precision model to
    the end, 1.52x instead of 1.04x the fp32 bytes on a 107 M Llama). Checked when optimum starts packing: no matrix
    of a Linear's shape in the working dtype lives outside the model."""
    import gc

    import torch
    from optimum.gptq.quantizer import GPTQQuantizer

    from kick_hub.compress import CompressSpec, compress
    from kick_hub.compress.methods.gptq import WORK_DTYPE
    from kick_hub.engine import load_model

    model, _ = load_model("world")
    shapes = {tuple(m.weight.shape) for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear)}
    strays: list[tuple] = []
    packed = []
    pack = GPTQQuantizer.pack_model

    def spy(self, model, quantizers):
        packed.append(len(quantizers))
        owned = {t.untyped_storage().data_ptr() for t in model.state_dict().values()}
        gc.collect()
        strays.extend(tuple(o.shape) for o in gc.get_objects()
                      if isinstance(o, torch.Tensor) and o.device.type == "cpu" and o.dtype == WORK_DTYPE
                      and tuple(o.shape) in shapes and o.untyped_storage().data_ptr() not in owned)
        return pack(self, model=model, quantizers=quantizers)

    monkeypatch.setattr(GPTQQuantizer, "pack_model", spy)
    ids = torch.randint(5, 2000, (8, 64), generator=torch.Generator().manual_seed(0))
    compress(model, CompressSpec("gptq", bits=4), ids, progress=False)
    assert packed == [28] and strays == []


def test_gptq_commands_print_kick_lines_only(tmp_path, gptq_variant):
    """GPTQModel's banner / kernel notes (stdout, at import), optimum's per-layer INFO lines and inner bars and
    transformers' load bars stay off the user's screen (kick_hub/_quiet.py); kick's own lines remain."""
    from tests.kick_runner import kick

    def run(*args):  # a fresh interpreter: the banner and warnings come while GPTQModel / optimum are imported
        return kick(*args, env={"PYTHONWARNINGS": ""}, subprocess=True, timeout=900)

    out = run("compress", "--method", "gptq", "--bits", "4", "--nsamples", "8", "--seqlen", "64", "--output",
              str(tmp_path / "g"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [line for line in out.stdout.splitlines() if line.startswith("wrote ")]
    noise = ("GPT-QModel", "INFO", "Kernel", "Quantizing layers inside the block", "Loading weights",
             "is_gradient_checkpointing", "loss_type=None", "Token indices")
    assert not [line for line in out.stderr.splitlines() if any(n in line for n in noise)], out.stderr[-3000:]
    out = run("evaluate", "--model", str(gptq_variant), "--task", "factoid-qa", "--limit", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("task ") and "GPT-QModel" not in out.stdout + out.stderr
    assert not [line for line in out.stderr.splitlines() if any(n in line for n in noise)], out.stderr[-3000:]
