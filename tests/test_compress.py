"""Pruning methods on real trained weights (stories260K): exact masks, reference rules, memory-light loop, variants."""

import json
import subprocess
import sys

import pytest
import torch

from kick_hub.compress import CompressSpec, compress, make_variant
from kick_hub.compress.blockwise import capture_inputs, decoder_layers, linear_layers
from kick_hub.compress.calibration import calibration_ids
from kick_hub.compress.methods.magnitude import global_threshold
from kick_hub.engine import load_model
from kick_hub.variant import check_sparsity, layer_sparsity
from tests.plain_calibration import feed_layer_inputs


@pytest.fixture()
def model_tok(stories260k):
    return load_model(str(stories260k))


@pytest.fixture(scope="module")
def calib(stories260k):
    _, tok = load_model(str(stories260k))
    return calibration_ids("world", tok, nsamples=8, seqlen=64)


def weights(model):
    return {f"{i}.{n}": lin.weight.data.clone() for i, b in enumerate(decoder_layers(model))
            for n, lin in linear_layers(b).items()}


def test_magnitude_matches_hand_computation(model_tok):
    model, _ = model_tok
    before = weights(model)
    compress(model, CompressSpec("magnitude", sparsity=0.5))
    after = weights(model)
    for name, w in before.items():
        flat = sorted(w.abs().flatten().tolist())
        thresh = flat[int(len(flat) * 0.5)]
        expected = w.abs() <= thresh
        assert torch.equal(after[name] == 0, expected | (w == 0)), name
        assert torch.equal(after[name][~expected], w[~expected])  # survivors untouched


def test_global_magnitude_threshold_is_exact(model_tok):
    model, _ = model_tok
    before = weights(model)
    all_abs = torch.cat([w.abs().flatten() for w in before.values()])
    k = int(all_abs.numel() * 0.4)
    assert global_threshold(list(before.values()), 0.4) == float(torch.sort(all_abs)[0][k])
    compress(model, CompressSpec("magnitude-global", sparsity=0.4))
    overall = sum(int((w == 0).sum()) for w in weights(model).values()) / all_abs.numel()
    assert 0.4 <= overall < 0.41
    per_layer = layer_sparsity(model).values()
    assert max(per_layer) - min(per_layer) > 0.05  # one global threshold -> uneven layers


@pytest.mark.parametrize("method", ["magnitude", "magnitude-global", "random", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "1:2"])
def test_nm_exact_per_group(model_tok, calib, method, pattern):
    model, _ = model_tok
    n, m = map(int, pattern.split(":"))
    compress(model, CompressSpec(method, pattern=pattern), calib, progress=False)
    for name, w in weights(model).items():
        zeros = (w == 0).reshape(w.shape[0], -1, m).sum(-1)
        assert torch.all(zeros >= n), name
        assert torch.all(zeros == n) or method == "sparsegpt", name  # OBS updates never create extra zeros here


def test_pattern_must_divide_in_features(model_tok, calib):
    model, _ = model_tok  # stories260K's MLP width 172 is not a multiple of 8
    before = weights(model)
    with pytest.raises(ValueError, match=r"pattern: M=8 must divide .*mlp.down_proj \(172\)"):
        compress(model, CompressSpec("wanda", pattern="4:8"), calib)
    assert all(torch.equal(before[k], w) for k, w in weights(model).items())


@pytest.mark.parametrize("method", ["wanda", "random"])
def test_unstructured_exact_per_row(model_tok, calib, method):
    model, _ = model_tok
    compress(model, CompressSpec(method, sparsity=0.3), calib, progress=False)
    for name, w in weights(model).items():
        if method == "wanda":  # compared within each output row
            assert torch.all((w == 0).sum(1) == int(w.shape[1] * 0.3)), name
        else:  # one threshold per matrix, `<=` the value at int(numel * ratio): that many + 1 (no ties in rand)
            assert int((w == 0).sum()) == int(w.numel() * 0.3) + 1, name


def test_wanda_matches_direct_score_on_first_block(model_tok, calib):
    model, _ = model_tok
    block = decoder_layers(model)[0]
    linears = linear_layers(block)
    inputs, block_kwargs = capture_inputs(model, calib)
    kwargs = block_kwargs[0]
    seen = {name: [] for name in linears}
    feed_layer_inputs(block, inputs, kwargs, lambda name, x: seen[name].append(x.reshape(-1, x.shape[-1])))
    expected = {}
    for name, lin in linears.items():
        X = torch.cat(seen[name])  # every calibration token
        metric = lin.weight.data.abs() * X.norm(dim=0)[None, :]
        k = int(metric.shape[1] * 0.5)
        order = torch.sort(metric, dim=1, stable=True)[1][:, :k]
        expected[name] = torch.zeros_like(metric, dtype=torch.bool).scatter_(1, order, True)
    compress(model, CompressSpec("wanda", sparsity=0.5), calib, progress=False)
    for name, lin in linear_layers(decoder_layers(model)[0]).items():
        assert torch.equal(lin.weight.data == 0, expected[name]), name


def test_sparsegpt_reconstructs_better_than_magnitude(stories260k, calib):
    errors = {}
    for method in ("magnitude", "sparsegpt"):
        model, _ = load_model(str(stories260k))
        block = decoder_layers(model)[0]
        inputs, block_kwargs = capture_inputs(model, calib)
        kwargs = block_kwargs[0]
        with torch.no_grad():
            dense = [block(x, **kwargs) for x in inputs]
        compress(model, CompressSpec(method, sparsity=0.5), calib, progress=False)
        with torch.no_grad():
            pruned = [block(x, **kwargs) for x in inputs]
        out = lambda o: o[0] if isinstance(o, tuple) else o  # noqa: E731
        errors[method] = sum(float((out(a) - out(b)).pow(2).sum()) for a, b in zip(dense, pruned))
    assert errors["sparsegpt"] < 0.7 * errors["magnitude"], errors


def test_variant_round_trip_identical_logits(stories260k, tmp_path):
    from transformers import AutoModelForCausalLM

    out = make_variant(str(stories260k), CompressSpec("wanda", sparsity=0.5), tmp_path / "v", calibration="world",
                       nsamples=4, seqlen=64, progress=False)
    manifest = json.loads((out / "kick_manifest.json").read_text())
    assert manifest["method"] == "wanda" and manifest["calibration"]["nsamples"] == 4
    assert manifest["peak_rss_mb"] > 0 and manifest["versions"]["torch"]
    assert 0.49 < manifest["sparsity"] < 0.51
    from safetensors.torch import load_file

    ids = load_file(out / "calibration_ids.safetensors")["input_ids"]
    assert ids.shape == (4, 64)
    # the same ids give the same variant, bit for bit
    again = make_variant(str(stories260k), CompressSpec("wanda", sparsity=0.5), tmp_path / "v2",
                         calibration=str(out / "calibration_ids.safetensors"), nsamples=4, seqlen=64, progress=False)
    a, b = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(again)
    x = torch.tensor([[1, 50, 60, 70, 80]])
    with torch.no_grad():
        assert torch.equal(a(x).logits, b(x).logits)
    assert all(r["ok"] for r in check_sparsity(out))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("kwargs, field", [
    ({"method": "wanda", "sparsity": 1.0}, "sparsity"),
    ({"method": "wanda", "sparsity": -0.1}, "sparsity"),
    ({"method": "wanda", "pattern": "4:4"}, "pattern"),
    ({"method": "wanda", "pattern": "2-4"}, "pattern"),
    ({"method": "wanda", "pattern": "2:4", "sparsity": 0.3}, "contradicts"),
    ({"method": "wanda"}, "sparsity/pattern"),
    ({"method": "gptq", "bits": 5}, "bits"),
    ({"method": "obs", "sparsity": 0.5}, "method"),
    ({"method": "magnitude", "sparsity": 0.5, "bits": 4}, "bits"),
])
def test_bad_specs(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CompressSpec(**kwargs)


def test_bad_runs_fail_before_work(stories260k, tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="--overwrite"):
        make_variant(str(stories260k), CompressSpec("magnitude", sparsity=0.5), tmp_path / "exists")
    short = tmp_path / "short.txt"
    short.write_text("Once upon a time.")
    with pytest.raises(ValueError, match="calibration: .* fewer than seqlen"):
        make_variant(str(stories260k), CompressSpec("wanda", sparsity=0.5), tmp_path / "v", calibration=str(short),
                     nsamples=2, seqlen=64)
    with pytest.raises(ValueError, match="seqlen"):
        make_variant(str(stories260k), CompressSpec("wanda", sparsity=0.5), tmp_path / "v", seqlen=100000)
    with pytest.raises(ValueError, match="cannot find decoder blocks"):
        decoder_layers(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "short.txt"]


def test_cli_compress_and_sparsity(stories260k, tmp_path):
    from tests.kick_runner import kick as run

    out = run("compress", "--model", str(stories260k), "--method", "sparsegpt", "--pattern", "2:4",
              "--nsamples", "4", "--seqlen", "64", "--output", str(tmp_path / "v"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sparsity 0.5000" in out.stdout
    check = run("sparsity", str(tmp_path / "v"))
    assert check.returncode == 0 and "35/35 layers match" in check.stdout
    bad = run("compress", "--model", str(stories260k), "--method", "wanda", "--pattern", "2:4", "--sparsity", "0.3",
              "--output", str(tmp_path / "w"))
    assert bad.returncode == 2 and "contradicts" in bad.stderr and not (tmp_path / "w").exists()


def test_sparse_storage_round_trip_identical(tmp_path):
    """--storage sparse: the sparse-bitmask layout loads through plain from_pretrained (format registered by the
    engine on its own, checked in a fresh process) with logits identical to the dense-stored variant."""
    from kick_hub.variant import load_manifest

    spec = CompressSpec("wanda", pattern="2:4")
    dense = make_variant("world", spec, tmp_path / "dense", nsamples=8, seqlen=128, progress=False)
    sparse = make_variant("world", spec, tmp_path / "sparse", nsamples=8, seqlen=128, progress=False,
                          storage="sparse")
    assert load_manifest(sparse)["storage"] == "sparse"
    assert all(r["ok"] for r in check_sparsity(sparse))
    ratio = (sparse / "model.safetensors").stat().st_size / (dense / "model.safetensors").stat().st_size
    assert ratio < 0.61  # the world model's tied embedding (14 % of its bytes) stays dense
    from safetensors import safe_open

    with safe_open(sparse / "model.safetensors", "pt") as s, safe_open(dense / "model.safetensors", "pt") as d:
        parts = [k for k in s.keys() if k.rsplit(".", 1)[1] in ("compressed", "bitmask", "shape", "row_offsets")]
        pruned = {k.rsplit(".", 1)[0] + ".weight" for k in parts}
        stored = sum(s.get_tensor(k).nbytes for k in parts)
        assert len(pruned) == 28 and stored / sum(d.get_tensor(k).nbytes for k in pruned) < 0.54  # 0.5 + 1/32 + offsets
    code = (
        "import sys, torch\n"
        "from kick_hub.engine import Engine\n"
        "from transformers import AutoModelForCausalLM\n"
        f"s = Engine.from_name({str(sparse)!r}).model\n"
        "assert 'kick_hub.formats.sparse_bitmask' in sys.modules\n"
        f"d = AutoModelForCausalLM.from_pretrained({str(dense)!r})\n"
        "ids = torch.arange(1, 65)[None]\n"
        "assert all(torch.equal(a, b) for a, b in zip(s.state_dict().values(), d.state_dict().values()))\n"
        # identical weights; the logits may differ in the last bits where the kernels' memory alignment differs
        "torch.testing.assert_close(s(ids).logits, d(ids).logits, rtol=1e-6, atol=1e-6)\n"
        "print('identical')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "identical" in out.stdout, out.stderr[-3000:]


def test_sparse_storage_refused_for_quantization(tmp_path):
    with pytest.raises(ValueError, match="storage: 'sparse' stores pruned weights; 'gptq' is a quantization"):
        make_variant("world", CompressSpec("gptq", bits=4), tmp_path / "v", storage="sparse")
    with pytest.raises(ValueError, match=r"storage: must be one of \['dense', 'sparse'\]"):
        make_variant("world", CompressSpec("magnitude", sparsity=0.5), tmp_path / "v", storage="zip")
    assert not (tmp_path / "v").exists()


def test_gptq_group_size_must_divide_in_features():
    """SmolLM2's 576-wide layers with group 128 quantize, then crash GPTQModel's CPU int4 kernel: refuse upfront."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=576, intermediate_size=1536, num_hidden_layers=1,
                                         num_attention_heads=9, num_key_value_heads=3))
    with pytest.raises(ValueError, match=r"group_size: 128 must divide every quantized Linear's in_features; not: "
                                         r"mlp.gate_proj \(576\)"):
        from kick_hub.compress import check_model

        check_model(model, CompressSpec("gptq", bits=4))
    check_model(model, CompressSpec("gptq", bits=4, group_size=64))


def test_peak_rss_is_the_process_own_not_its_parents():
    """A child process's peak must not inherit its parent's (``ru_maxrss`` survives exec; the manifest's peak RSS
    and the compression benchmark run in child processes)."""
    from kick_hub.compress.memory import peak_rss_mb

    ballast = b"\x01" * (400 * 2**20)  # written, so resident: the parent's peak is now >= 400 MB
    parent = peak_rss_mb()
    child = subprocess.run([sys.executable, "-c",
                            "from kick_hub.compress.memory import peak_rss_mb; print(peak_rss_mb())"],
                           capture_output=True, text=True, check=True)
    del ballast
    assert parent >= 400
    assert float(child.stdout) < parent - 300


@pytest.mark.unit
def test_collections_skip_what_lives_at_the_start_and_free_it_after():
    """Inside ``collections_skip_what_lives_now`` a full collection leaves the objects alive at its start alone (the
    sweep's cells do not rescan the imports' objects); an object of those that becomes cyclic garbage inside is
    freed after the block, and nothing stays frozen."""
    import gc
    import weakref

    from kick_hub.compress.memory import collections_skip_what_lives_now

    class Node:
        pass

    before = gc.get_freeze_count()
    old = Node()
    old.self = old  # a cycle: only the collector frees it
    alive = weakref.ref(old)
    with collections_skip_what_lives_now():
        assert gc.get_freeze_count() > before
        del old
        young = Node()
        young.self = young
        gone = weakref.ref(young)
        del young
        gc.collect()
        assert gone() is None and alive() is not None  # new garbage freed, the frozen cycle left alone
    gc.collect()
    assert alive() is None and gc.get_freeze_count() == before


@pytest.mark.unit
def test_calibration_text_is_tokenized_once_per_process(tmp_path):
    """A sweep's calibrated cells load the tokenizer again for each cell; the calibration text is tokenized once
    (``calibration.tokenized``, keyed by the text and the tokenizer's JSON) and every cell gets the same ids as a
    fresh tokenization would give."""
    from transformers import AutoTokenizer

    from kick_hub.compress import calibration
    from kick_hub.models import resolve

    text = tmp_path / "calib.txt"
    text.write_text("The capital of Veloria is Marn. " * 400, encoding="utf-8")
    calls = []

    def counting(path):
        tok = AutoTokenizer.from_pretrained(path)
        original = type(tok).__call__
        type(tok).__call__ = lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1]
        return tok, original

    calibration._TOKENIZED.clear()
    first, original = counting(resolve("world"))
    try:
        a = calibration_ids(str(text), first, nsamples=4, seqlen=32)
        second = AutoTokenizer.from_pretrained(resolve("world"))  # another load of the same tokenizer: a hit
        b = calibration_ids(str(text), second, nsamples=4, seqlen=32)
    finally:
        type(first).__call__ = original
    assert len(calls) == 1 and torch.equal(a, b)
    fresh = first(text.read_text(encoding="utf-8"))["input_ids"]
    assert calibration.tokenized(first, text.read_text(encoding="utf-8")) == fresh
