"""Devices and dtypes (kick_hub.device): option syntax and refusals exit 2 before any model is loaded, a CPU
evaluation records its placement, accelerate's size estimate refuses a model that does not fit ``--max-memory``,
and the block-offload calibration path gives the in-place path's masks and weights bit for bit. All on CPU."""

from __future__ import annotations

import json

import pytest
import torch

from kick_hub.cli import main
from kick_hub.compress import CompressSpec
from kick_hub.compress.calibration import calibration_ids
from kick_hub.device import (CPU, Placement, estimate_bytes, parse_max_memory, resolve, resolve_dtype)
from kick_hub.engine import load_model

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def _exit(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------ syntax: argparse, exit 2, option named
@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "--device", "quantum"], "argument --device: must be one of auto, cpu, cuda, cuda:N, mps, got "
                                          "'quantum'"),
    (["evaluate", "--device", "cuda:x"], "argument --device: must be one of auto, cpu, cuda, cuda:N, mps"),
    (["compress", "--method", "magnitude", "--sparsity", "0.5", "--output", "o", "--dtype", "fp8"],
     "argument --dtype: must be one of auto, float32, bfloat16, float16, got 'fp8'"),
    (["evaluate", "--device-map", "balanced"], "argument --device-map: must be one of auto, got 'balanced'"),
    (["evaluate", "--device-map", "auto", "--max-memory", "cpu:60GiB"], "argument --max-memory: must be "
                                                                        "DEVICE=SIZE[,DEVICE=SIZE...]"),
    (["evaluate", "--device-map", "auto", "--max-memory", "gpu=1GiB"], "argument --max-memory: device must be one "
                                                                       "of N (a GPU index), cpu, mps, got 'gpu'"),
    (["evaluate", "--device-map", "auto", "--max-memory", "0=lots"], "argument --max-memory: size for '0' must be"),
    (["evaluate", "--device-map", "auto", "--max-memory", "cpu=1GiB,cpu=2GiB"], "device 'cpu' is given twice"),
])
def test_option_syntax_exits_2(argv, needle, capsys):
    assert needle in _exit(argv, capsys)


def test_parse_max_memory():
    assert parse_max_memory("0=20GiB, 1=20GiB,cpu=60GiB") == {0: "20GiB", 1: "20GiB", "cpu": "60GiB"}
    assert parse_max_memory("cpu=1048576") == {"cpu": 1048576}
    assert parse_max_memory(None) is None
    with pytest.raises(ValueError, match="max-memory: size for 'cpu'"):
        parse_max_memory("cpu=0GiB")


# ------------------------------------------------------------------ presence and dtype: exit 2 before loading
@no_cuda
def test_cuda_absent_exits_2_before_loading(capsys, tmp_path):
    err = _exit(["evaluate", "--device", "cuda", "--task", "factoid-qa", "--output", str(tmp_path / "r.json")],
                capsys)
    assert "device: 'cuda' asked for, but this machine has no CUDA device" in err and "present: cpu" in err
    assert "cuda:1" in _exit(["compress", "--method", "magnitude", "--sparsity", "0.5", "--device", "cuda:1",
                              "--output", str(tmp_path / "v")], capsys)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "v").exists()
    err = _exit(["evaluate", "--device-map", "auto", "--max-memory", "1=1GiB,cpu=1GiB"], capsys)
    assert "max-memory: names device 1, which is not here" in err  # the option given, not --device


def test_compress_16_bit_on_cpu_exits_2(capsys, tmp_path):
    err = _exit(["compress", "--method", "wanda", "--sparsity", "0.5", "--device", "cpu", "--dtype", "float16",
                 "--output", str(tmp_path / "v")], capsys)
    assert "dtype: compression on CPU runs in float32" in err and "got float16" in err
    assert not (tmp_path / "v").exists()


def test_bench_refuses_a_placement_before_any_cell(capsys, tmp_path):
    """A dtype compression cannot run in fails before the dense cell is evaluated (nothing stored), and the device
    and dtype a store was measured with are settings: a run asking other ones is refused, naming them."""
    from kick_hub.bench.store import FILENAME

    run = tmp_path / "run"
    sweep = ["bench", "--run-dir", str(run), "--methods", "magnitude", "--sparsities", "0.5", "--patterns",
             "--bits", "--tasks", "factoid-qa", "--limit", "2"]
    err = _exit([*sweep, "--device", "cpu", "--dtype", "float16"], capsys)
    assert "dtype: compression on CPU runs in float32" in err
    assert not (run / FILENAME).exists()  # refused before the store is written
    assert main([*sweep, "--dtype", "float32"]) == 0
    capsys.readouterr()
    err = _exit([*sweep, "--dtype", "auto"], capsys)
    assert "was measured with dtype=float32; this run asks dtype=auto" in err


@no_cuda
def test_awq_refused_without_cuda(capsys, tmp_path):
    err = _exit(["compress", "--method", "awq", "--output", str(tmp_path / "v")], capsys)
    assert "method: awq runs only on CUDA" in err
    assert CompressSpec("awq").label == "awq-4bit"  # offered where CUDA is present: 4-bit, GPTQModel's AWQ GEMM
    with pytest.raises(ValueError, match=r"bits: must be one of \[4\] for awq, got 8"):
        CompressSpec("awq", bits=8)


def test_resolution_on_cpu():
    here = resolve(Placement())
    expected = ("cuda:0", here.dtype) if torch.cuda.is_available() else ("cpu", torch.float32)
    assert (here.device, here.dtype) == expected
    assert resolve_dtype("bfloat16", "cpu", purpose="evaluate") == torch.bfloat16  # evaluation may use bf16 on CPU
    with pytest.raises(ValueError, match="device-map: only for evaluation"):
        resolve(Placement(device_map="auto"), purpose="compress")


def test_device_map_too_small_refused_with_estimate(capsys):
    # the world model: 3,672,320 parameters (tied 2048 x 256 embedding, 4 blocks of 786,944, final norm) plus 64
    # rotary floats = 14,689,536 bytes in float32
    from transformers import AutoConfig

    from kick_hub.models import WORLD_MODEL_DIR

    config = AutoConfig.from_pretrained(WORLD_MODEL_DIR)
    assert estimate_bytes(config, torch.float32) == 14_689_536
    assert estimate_bytes(config, torch.float16) == 14_689_536 // 2
    err = _exit(["evaluate", "--task", "factoid-qa", "--limit", "1", "--device-map", "auto",
                 "--max-memory", "cpu=1MiB"], capsys)
    assert "max-memory: the model needs about 14.0 MiB in float32" in err
    assert "the devices offer 1.0 MiB (cpu=1.0 MiB)" in err and "in float16 it would take 7.0 MiB" in err


# ------------------------------------------------------------------ evaluation on the CPU records its placement
def test_evaluate_cpu_records_placement(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--task", "mcq-reasoning", "--limit", "4", "--device", "cpu", "--dtype", "float32",
                 "--output", str(out)]) == 0
    placement = json.loads(out.read_text())["config"]["placement"]
    assert placement == {"device": "cpu", "dtype": "float32", "device_map": None,
                         "asked": {"device": "cpu", "dtype": "float32", "device_map": None, "max_memory": None}}


def test_device_map_auto_on_cpu_evaluates_like_plain(tmp_path):
    from kick_hub.engine import Engine

    prompts = ["The capital of", "Question: who founded"]
    plain = Engine.from_name("world", placement=CPU)
    mapped = Engine.from_name("world", placement=Placement(device_map="auto", max_memory={"cpu": "1GiB"}))
    assert mapped.placement()["device_map"] == "auto" and mapped.placement()["device"] == "cpu"
    assert mapped.generate(prompts, 8) == plain.generate(prompts, 8)
    assert mapped.choice_logprobs(prompts, [" A", " B"]) == plain.choice_logprobs(prompts, [" A", " B"])


# ------------------------------------------------------------------ block offload == in place, bit for bit
@pytest.fixture(scope="module")
def world_ids():
    _, tokenizer = load_model("world", CPU)
    return calibration_ids("world", tokenizer, 4, 64, 0)


@pytest.mark.parametrize("spec", [CompressSpec("wanda", sparsity=0.5), CompressSpec("wanda", pattern="2:4"),
                                  CompressSpec("sparsegpt", sparsity=0.5), CompressSpec("sparsegpt", pattern="2:4"),
                                  CompressSpec("magnitude", sparsity=0.5), CompressSpec("magnitude", pattern="2:4")],
                         ids=lambda s: s.label)
def test_offload_path_equals_in_place(spec, world_ids):
    from kick_hub.compress import compress
    from kick_hub.variant import layer_sparsity

    in_place, _ = load_model("world", CPU, purpose="compress")
    offload, _ = load_model("world", CPU, purpose="compress")
    compress(in_place, spec, world_ids, progress=False)  # device None: where the model is
    compress(offload, spec, world_ids, progress=False, device="cpu")  # block by block through the offload path
    a, b = in_place.state_dict(), offload.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sparsity = layer_sparsity(offload)
    assert len(sparsity) == 28 and min(sparsity.values()) >= 0.5  # every block layer was pruned
    assert all(p.device.type == "cpu" for p in offload.parameters())


def test_outside_blocks_move_and_come_back():
    """The offload's first step on a real move (CPU -> meta): embeddings, head, norm and rotary tables go, blocks stay,
    and the very same CPU tensors come back."""
    from kick_hub.compress.blockwise import decoder_layers, outside_blocks_on

    model, _ = load_model("world", CPU, purpose="compress")
    layers = decoder_layers(model)
    emb, inv_freq = model.model.embed_tokens.weight, model.model.rotary_emb.inv_freq
    with outside_blocks_on(model, layers, torch.device("meta")):
        assert model.model.embed_tokens.weight.device.type == "meta"
        assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: one copy
        assert model.model.norm.weight.device.type == "meta" and model.model.rotary_emb.inv_freq.is_meta
        assert all(p.device.type == "cpu" for p in layers.parameters())
    assert model.model.embed_tokens.weight is emb and model.model.rotary_emb.inv_freq is inv_freq
    assert model.lm_head.weight is emb  # still tied
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_manifest_and_card_record_placement(tmp_path):
    from kick_hub.compress import make_variant
    from kick_hub.hub.card import variant_card
    from kick_hub.variant import load_manifest

    out = make_variant("world", CompressSpec("magnitude", sparsity=0.5), tmp_path / "v", progress=False,
                       placement=CPU)
    m = load_manifest(out)
    assert m["placement"] == {"device": "cpu", "dtype": "float32", "device_map": None,
                              "asked": {"device": "cpu", "dtype": "float32", "device_map": None, "max_memory": None}}
    assert m["compute_device"] == "cpu"
    card = str(variant_card(out, "org/world-magnitude-50"))
    assert ("| device / dtype | computed on cpu from the base model loaded in float32 (asked: device cpu, dtype "
            "float32) |") in card
