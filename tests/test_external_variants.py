"""External variants in a sweep (``kick bench --variant`` / ``--variants``, kick_hub/external.py): real checkpoints of
every format made here with their own libraries (kick, GPTQModel directly, compressed-tensors, torchao,
bitsandbytes), evaluated paired with dense, their provenance in the store, the report and the card; the refusals
before any cell runs; a Hub source on the loopback Hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kick_hub.bench.store import Store
from kick_hub.external import weights_digest, weight_files
from kick_hub.io import loads
from kick_hub.models import resolve
from tests.kick_runner import hub_kick, kick

WORLD = resolve("world")
TASKS = ("--tasks", "factoid-qa", "perplexity", "--limit", "8")

GPTQ_SCRIPT = """
import sys
from gptqmodel import GPTQModel, QuantizeConfig
from transformers import AutoTokenizer
src, out = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(src)
texts = ["The capital of Veloria is Marn.", "Q: Who founded the guild? A: Oren.", "Once upon a time."] * 4
calib = [{"input_ids": tok(t)["input_ids"], "attention_mask": [1] * len(tok(t)["input_ids"])} for t in texts]
model = GPTQModel.load(src, QuantizeConfig(bits=4, group_size=64), device="cpu")
model.quantize(calib, batch_size=1)
model.save(out)
"""


def make_gptqmodel(out: Path) -> Path:
    """A 4-bit GPTQ checkpoint of the world model made by GPTQModel's own API (not through kick), in a fresh
    interpreter: GPTQModel sizes its CPU worker pool when imported (at least 2 workers). It runs in ``out``'s
    parent, because GPTQModel writes its per-layer logs to ``./logs`` of the working directory."""
    env = {**os.environ, "GPTQMODEL_CPU_WORKERS": "2"}
    proc = subprocess.run([sys.executable, "-c", GPTQ_SCRIPT, str(Path(WORLD).resolve()), str(out.resolve())],
                          env=env, capture_output=True, text=True, timeout=600, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def make_compressed_tensors(out: Path) -> Path:
    """An int8 weight-only (per channel) compressed-tensors checkpoint made with the compressed-tensors package's
    own API: the scheme applied, the scales from each row's min / max, compressed and saved as llm-compressor
    saves (``ModelCompressor``)."""
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationArgs, QuantizationConfig, QuantizationScheme,
                                                 QuantizationStatus, apply_quantization_config)
    from compressed_tensors.quantization.utils import calculate_qparams
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(WORLD, dtype=torch.float32)
    config = QuantizationConfig(config_groups={"group_0": QuantizationScheme(
        targets=["Linear"], weights=QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel"))},
        ignore=["lm_head"])
    apply_quantization_config(model, config)
    for module in model.modules():
        if getattr(module, "quantization_scheme", None) is not None and hasattr(module, "weight_scale"):
            w = module.weight.data
            scale, zero = calculate_qparams(w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True),
                                            module.quantization_scheme.weights)
            module.weight_scale.data.copy_(scale.reshape(module.weight_scale.shape))
            module.weight_zero_point.data.copy_(zero.reshape(module.weight_zero_point.shape))
    config.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    model.save_pretrained(out)
    compressor.update_config(out)
    AutoTokenizer.from_pretrained(WORLD).save_pretrained(out)
    return out


def make_transformers_quantized(out: Path, kind: str) -> Path:
    """A torchao int8 weight-only or a bitsandbytes NF4 checkpoint, quantized by transformers on load and saved."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TorchAoConfig

    if kind == "torchao":
        from torchao.quantization import Int8WeightOnlyConfig

        quant = TorchAoConfig(Int8WeightOnlyConfig())
    else:
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = AutoModelForCausalLM.from_pretrained(WORLD, quantization_config=quant, dtype=torch.float32,
                                                 device_map="cpu")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(WORLD).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """label -> a checkpoint directory of each format: a kick variant (magnitude 50 %), GPTQModel, compressed-tensors,
    torchao, bitsandbytes."""
    from kick_hub.compress import CompressSpec, make_variant

    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "kick-mag": Path(make_variant("world", CompressSpec("magnitude", sparsity=0.5), root / "kick-mag",
                                      progress=False)),
        "gptqmodel": make_gptqmodel(root / "gptqmodel"),
        "ct-int8": make_compressed_tensors(root / "ct-int8"),
        "torchao": make_transformers_quantized(root / "torchao", "torchao"),
        "bnb-nf4": make_transformers_quantized(root / "bnb-nf4", "bnb"),
    }


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, checkpoints) -> Path:
    """One sweep: dense, the built-in magnitude 50 % cell and every checkpoint as an external variant (the kick
    variant through a variants file, with notes)."""
    run_dir = tmp_path_factory.mktemp("run")
    file = run_dir.parent / "variants.toml"
    file.write_text(f'[[variant]]\nlabel = "kick-mag"\nsource = "{checkpoints["kick-mag"]}"\n'
                    f'notes = "made by kick compress"\n')
    argv = ["bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--sparsities", "0.5", "--patterns",
            "--variants", str(file), *TASKS]
    for label in ("gptqmodel", "ct-int8", "torchao", "bnb-nf4"):
        argv += ["--variant", f"{label}={checkpoints[label]}"]
    code, out, err = kick(*argv)
    assert code == 0, err[-3000:]
    return run_dir


def _variants(run_dir: Path) -> dict[str, dict]:
    store = Store.open_readonly(run_dir)
    try:
        return {v["label"]: v for v in store.variants()}
    finally:
        store.close()


def test_every_format_is_a_paired_cell_with_its_provenance(sweep, checkpoints):
    rows = _variants(sweep)
    assert set(rows) == {"dense", "magnitude-50", *checkpoints}
    formats = {"kick-mag": "kick magnitude", "gptqmodel": "gptq", "ct-int8": "compressed-tensors",
               "torchao": "torchao", "bnb-nf4": "bitsandbytes"}
    for label, path in checkpoints.items():
        v = rows[label]
        assert v["method"] == "external"
        spec, manifest = loads(v["spec"]), loads(v["manifest"])
        assert spec == {"external": path.name, "revision": None, "weights_sha256": weights_digest(weight_files(path))}
        e = manifest["external"]
        assert e["format"] == formats[label] and e["source"] == path.name and e["commit"] is None
        assert str(path.parent) not in json.dumps(manifest)  # no local path in what the report and card show
        assert manifest["file_bytes"] == sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        assert 0 < manifest["bits_per_weight"] < 33
    # the pruned kick variant: its zeros measured per layer; the quantizers' float layers are none
    kick_manifest = loads(rows["kick-mag"]["manifest"])
    assert kick_manifest["sparsity_summary"]["layers"] == 28
    assert kick_manifest["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert loads(rows["gptqmodel"]["manifest"])["sparsity_summary"]["layers"] == 0
    assert loads(rows["kick-mag"]["manifest"])["external"]["notes"] == "made by kick compress"
    assert loads(rows["gptqmodel"]["manifest"])["external"]["quantization_config"]["bits"] == 4
    assert loads(rows["gptqmodel"]["manifest"])["bits_per_weight"] < loads(rows["ct-int8"]["manifest"])[
        "bits_per_weight"] < 32
    # the external kick variant is the built-in magnitude-50 cell's weights: the same scores
    store = Store.open_readonly(sweep)
    try:
        scores = store.scores()
    finally:
        store.close()
    assert scores["kick-mag"]["perplexity"]["perplexity"] == scores["magnitude-50"]["perplexity"]["perplexity"]


def test_report_and_card_show_external_cells(sweep, checkpoints):
    from kick_hub.hub.card import variant_card

    report = (sweep / "report.md").read_text()
    external = report.split("## External checkpoints")[1].split("\n## ")[0]
    for label in checkpoints:
        assert f"| {label} |" in external
        assert f"| {label} |" in report.split("## Paired differences against dense")[1].split("\n## ")[0]
    assert "| gptqmodel | gptqmodel | - |" in external and "bits=4, group_size=64" in external
    assert "Int8WeightOnlyConfig" in external and "8-bit int channel" in external
    findings = json.loads((sweep / "findings.json").read_text())
    assert set(checkpoints) <= set(findings["paired"])
    card = str(variant_card(sweep / "variants" / "magnitude-50", "test-org/world-magnitude-50", sweep).content)
    table = card.split("### External checkpoints in this sweep")[1]
    assert all(f"| {label} |" in table for label in checkpoints)
    assert str(sweep) not in card


def test_resume_with_another_source_for_a_label_is_refused(sweep, checkpoints):
    code, _, err = kick("bench", "--run-dir", str(sweep), "--variant", f"gptqmodel={checkpoints['ct-int8']}",
                        *TASKS)
    assert code == 2
    assert "was measured with external=gptqmodel (gptqmodel)" in err
    assert "this run asks external=ct-int8 (gptqmodel)" in err and "--force" in err


def test_refusals_before_any_cell_runs(tmp_path, checkpoints):
    run_dir = tmp_path / "run"

    def refused(*argv: str) -> str:
        code, _, err = kick("bench", "--run-dir", str(run_dir), *argv, *TASKS)
        assert code == 2, err[-2000:]
        assert not (run_dir / "results.sqlite").exists()
        return err.strip().splitlines()[-1]

    err = refused("--variant", f"gone={tmp_path / 'nowhere'}")
    assert err.startswith("kick: error: variant gone: source ") and "does not exist" in err
    err = refused("--variant", f"a={checkpoints['torchao']}", "--variant", f"a={checkpoints['ct-int8']}")
    assert "variant a: given twice" in err
    err = refused("--methods", "magnitude", "--sparsities", "0.5", "--patterns", "--variant",
                  f"magnitude-50={checkpoints['torchao']}")
    assert "variant magnitude-50: the label is a built-in cell" in err
    err = refused("--variant", f"g={tmp_path / 'model.gguf'}")
    assert f"variant g: source {tmp_path / 'model.gguf'} is not a GGUF file on this machine" in err
    # not a causal LM: a BERT encoder with the world tokenizer
    from transformers import AutoTokenizer, BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=2048, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(bert)
    AutoTokenizer.from_pretrained(WORLD).save_pretrained(bert)
    err = refused("--variant", f"enc={bert}")
    assert "variant enc: source" in err and "is not a causal LM" in err and "BertModel" in err
    # a format whose package is missing: the kick variant declaring HQQ quantization
    hqq = tmp_path / "hqq"
    shutil.copytree(checkpoints["kick-mag"], hqq)
    config = json.loads((hqq / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "hqq", "nbits": 4}
    (hqq / "config.json").write_text(json.dumps(config))
    err = refused("--variant", f"h={hqq}")
    assert "variant h: source" in err and "hqq checkpoint, which needs hqq" in err and "pip install hqq" in err
    # another tokenizer: two tokens' ids swapped
    other = tmp_path / "other-tok"
    shutil.copytree(checkpoints["kick-mag"], other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = sorted(t for t in vocab if vocab[t] > 300)[:2]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (other / "tokenizer.json").write_text(json.dumps(tok))
    err = refused("--variant", f"tok={other}")
    assert "variant tok: source" in err and "another tokenizer than the dense model's" in err
    assert f"other ids for {a!r}" in err or f"other ids for {b!r}" in err
    err = refused("--variant", "nolabel")
    assert "variant: must be LABEL=SOURCE" in err
    file = tmp_path / "bad.toml"
    file.write_text('[[variant]]\nlabel = "x"\nsorce = "y"\n')
    err = refused("--variants", str(file))
    assert "unknown sorce" in err and "needs source" in err


def test_a_gguf_source_needs_llama_cpp(tmp_path, monkeypatch):
    """A GGUF file as a variant without llama-cpp-python: refused naming the extra that installs it."""
    from kick_hub import external

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.setattr(external, "_importable", lambda module: module != "llama_cpp")
    with pytest.raises(ValueError, match=r"variant g: source .*m\.gguf is a GGUF file, which runs in llama\.cpp "
                                         r"\(llama-cpp-python, not installed\); install it: pip install "
                                         r"'kick-hub\[gguf\]'"):
        external.resolve("g", str(tmp_path / "m.gguf"))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="variant g: .* is a local GGUF file, which has no revision"):
        external.resolve("g", str(tmp_path / "m.gguf"), revision="main")


def test_push_uploads_what_the_sweep_made_not_the_external_checkpoints(sweep, hub):
    from tests.kick_runner import client

    urls = client(hub, f"""
        from kick_hub.hub.push import push_sweep
        emit(push_sweep({str(sweep)!r}, "test-org"))
    """)
    assert set(urls) == {"magnitude-50"}  # five external cells in the run dir, none uploaded again
    card = hub.files("test-org/world-magnitude-50")["README.md"].decode()
    assert "gptqmodel" in card and "bnb-nf4" in card  # named on the card, with their provenance


def test_variants_file_with_a_hub_source(hub, tmp_path, checkpoints):
    """A variants file naming a Hub id with a revision: downloaded from the loopback Hub, pinned to the commit."""
    files = {p.name: p.read_bytes() for p in checkpoints["ct-int8"].iterdir() if p.is_file()}
    hub.create_repo("other-org/world-ct-int8")
    first = hub.commit_files("other-org/world-ct-int8", files)
    hub.commit_files("other-org/world-ct-int8", {"README.md": b"# later commit\n"})
    file = tmp_path / "variants.toml"
    file.write_text(textwrap.dedent(f"""
        [[variant]]
        label = "ct-hub"
        source = "other-org/world-ct-int8"
        revision = "{first}"
        notes = "llm-compressor style int8"
    """))
    run_dir = tmp_path / "run"
    hub_kick(hub, "bench", "--run-dir", str(run_dir), "--variants", str(file), *TASKS)
    v = _variants(run_dir)["ct-hub"]
    manifest = loads(v["manifest"])
    assert manifest["external"]["source"] == "other-org/world-ct-int8"
    assert manifest["external"]["commit"] == first and manifest["external"]["revision"] == first
    assert loads(v["spec"]) == {"external": "other-org/world-ct-int8", "revision": first,
                                "weights_sha256": weights_digest(weight_files(checkpoints["ct-int8"]))}
    assert v["path"] == "other-org/world-ct-int8"
    assert f"| ct-hub | other-org/world-ct-int8 | {first[:12]} |" in (run_dir / "report.md").read_text()
    # a revision the repo does not have: refused naming label, source and remedy
    out = hub_kick(hub, "bench", "--run-dir", str(tmp_path / "run2"), "--variant",
                   "bad=other-org/world-ct-int8@nosuchbranch", *TASKS, expect=2)
    assert "variant bad: source other-org/world-ct-int8@nosuchbranch has no revision 'nosuchbranch'" in out.stderr
