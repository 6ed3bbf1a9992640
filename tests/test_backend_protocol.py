"""Engine backends (issue 33): the ``Backend`` protocol, ``make_engine``, and ``next_token_logprobs``.

Tasks, ``kick_hub.evaluation``, the judge's local backend, ``kick evaluate`` and the Space must talk only to the
protocol: ``ProtocolOnly`` below is a second backend that runs the world model through the transformers backend but
exposes nothing else (no ``tokenizer``, no ``model``), registered in place of ``transformers`` so every call site that
builds an engine gets it; each must give exactly the transformers backend's outputs and scores."""

import json
from collections import Counter

import pytest
import torch

from kick_hub.backends import BACKENDS, Backend, make_engine
from kick_hub.backends.transformers import TransformersEngine

# the protocol's members: its methods and its attributes (max_length, batch_size, checked)
MEMBERS = {n for n in vars(Backend) if not n.startswith("_")} | set(Backend.__annotations__)


class ProtocolOnly:
    """A second backend: the transformers backend behind a wrapper that answers only the protocol's members (any
    other attribute is an AttributeError) and counts which were used (``calls``)."""

    built: list["ProtocolOnly"] = []

    def __init__(self, inner: TransformersEngine) -> None:
        self._inner = inner
        self.calls: Counter = Counter()

    @classmethod
    def from_name(cls, name: str, placement=None, **kwargs) -> "ProtocolOnly":
        engine = cls(TransformersEngine.from_name(name, placement=placement, **kwargs))
        cls.built.append(engine)
        return engine

    def __getattr__(self, name: str):
        if name.startswith("__") or name not in MEMBERS:
            raise AttributeError(f"{name!r} is not a member of the Backend protocol")
        self.calls[name] += 1
        return getattr(self._inner, name)


@pytest.fixture
def protocol_only(monkeypatch):
    """``make_engine(..., backend="transformers")`` builds a ``ProtocolOnly`` for the test; yields the list of the
    engines built."""
    ProtocolOnly.built = []
    monkeypatch.setitem(BACKENDS, "transformers", f"{__name__}:ProtocolOnly")
    yield ProtocolOnly.built


def test_the_protocol_lists_what_tasks_need():
    assert {"generate", "stream", "choice_logprobs", "continuation_logprob", "perplexity", "next_token_logprobs",
            "render", "token_ids", "tokenize", "token_prefixes", "count_tokens", "room", "has_chat_template",
            "generation_settings", "placement", "max_length", "batch_size", "checked"} == MEMBERS


def test_transformers_backend_satisfies_the_protocol(world_engine):
    from kick_hub import engine as engine_module
    from kick_hub import models

    assert isinstance(world_engine, Backend)
    assert isinstance(ProtocolOnly(world_engine), Backend)
    assert not isinstance(object(), Backend)
    # the names callers import from kick_hub.engine stay: Engine is the transformers backend, load_model is models'
    assert engine_module.Engine is TransformersEngine and engine_module.load_model is models.load_model
    built = make_engine("world", batch_size=5)
    assert type(built) is TransformersEngine and built.batch_size == 5


def test_unknown_backend_is_refused_before_loading(tmp_path):
    with pytest.raises(ValueError, match=r"^backend: must be one of \['llama.cpp', 'transformers'\], got 'vllm'$"):
        make_engine(str(tmp_path / "no-such-model"), backend="vllm")


def test_tasks_run_through_the_protocol_only(world_engine, protocol_only):
    """``evaluate`` over every task (both MCQ protocols) through ``ProtocolOnly`` gives the transformers backend's
    results and samples exactly; the tasks used the protocol's generation, log-likelihood and token members."""
    from kick_hub.evaluation import evaluate

    limit = 6
    wrapped = make_engine("world", batch_size=32)
    assert protocol_only == [wrapped] and not hasattr(wrapped, "tokenizer") and not hasattr(wrapped, "model")
    got = evaluate(wrapped, "all", "world", limit, mcq_protocols=["loglik", "generate"])
    want = evaluate(world_engine, "all", "world", limit, mcq_protocols=["loglik", "generate"])
    assert got["results"] == want["results"]
    assert got["samples"] == want["samples"]
    assert got["config"]["generation"] == want["config"]["generation"]
    assert got["config"]["context"] == want["config"]["context"]
    for used in ("generate", "choice_logprobs", "perplexity", "count_tokens", "room", "token_ids", "checked"):
        assert wrapped.calls[used] > 0, used


def test_kick_evaluate_builds_its_engine_through_make_engine(tmp_path, protocol_only):
    from kick_hub.cli import main

    out = tmp_path / "out.json"
    code = main(["evaluate", "--model", "world", "--task", "factoid-qa", "perplexity", "--limit", "4",
                 "--device", "cpu", "--output", str(out)])
    assert code == 0 and len(protocol_only) == 1
    results = json.loads(out.read_text())["results"]
    assert results["factoid-qa"]["n"] == 4 and results["perplexity"]["perplexity"] > 1
    assert protocol_only[0].calls["generate"] == 1 and protocol_only[0].calls["perplexity"] == 1


def test_judge_local_backend_talks_to_the_protocol(protocol_only, monkeypatch):
    from kick_hub.scoring.judge import TransformersBackend

    messages = [("You are a judge.", f"Where does person {k} live?") for k in "ABCD"]
    wrapped = TransformersBackend("world", max_new_tokens=16, batch_size=3)
    assert protocol_only == [wrapped.engine]
    got = wrapped.complete_many(messages)
    monkeypatch.setitem(BACKENDS, "transformers", "kick_hub.backends.transformers:TransformersEngine")
    plain = TransformersBackend("world", max_new_tokens=16, batch_size=3)
    assert type(plain.engine) is TransformersEngine
    want = plain.complete_many(messages)
    assert [(c.text, c.prompt_tokens, c.completion_tokens) for c in got] == [
        (c.text, c.prompt_tokens, c.completion_tokens) for c in want]
    assert wrapped.engine.calls["tokenize"] == len(messages)


def test_space_streams_through_the_protocol(world_engine, protocol_only):
    pytest.importorskip("gradio")
    from kick_hub import space

    models = space.Models(None)
    prompt = "Where does Sada Holhar work?"
    last = list(space.compare_stream(models, ["world"], prompt, 8, chat=True))[-1]
    assert [type(e) for e in protocol_only] == [ProtocolOnly]
    assert last[0] == [world_engine.generate([prompt], 8, chat=True)[0]]
    assert models.has_chat_template("world") is True
    assert space.applied_format(models.engine("world")[0], True) == "chat template"
    assert protocol_only[0].calls["stream"] == 1


TEXTS = ["Sada Holhar works in Kelford.", "Where does Sada Holhar work?",
         "The capital of the world's largest region is a city with a long name and an old harbour."]


def test_next_token_logprobs_equal_a_direct_forward(world_engine):
    """Each text's ``[T, V]`` log-probs equal ``log_softmax`` of one unpadded forward pass of that text: exactly when
    run one at a time (``batch_size=1``: the same pass), and in a left-padded batch to float32 rounding (the batch's
    matmuls have other shapes; measured 1.7e-5 in log-prob, 2e-6 in probability on these texts, the tolerance
    ``choice_logprobs`` is held to). Each row is a distribution (probabilities sum to 1)."""
    before = world_engine.checked.copy()
    batched = world_engine.next_token_logprobs(TEXTS)
    assert world_engine.checked.minus(before).inputs == len(TEXTS)
    assert world_engine.checked.minus(before).non_finite == 0
    single = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=1).next_token_logprobs(TEXTS)
    model = world_engine.model
    for text, lp, one in zip(TEXTS, batched, single):
        ids = world_engine.token_ids(text)
        with torch.inference_mode():
            direct = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        assert one.dtype == torch.float32 and one.device.type == "cpu"
        assert one.shape == lp.shape == (len(ids), model.config.vocab_size)
        assert torch.equal(one, direct)
        assert torch.allclose(lp, direct, atol=1e-4, rtol=0), float((lp - direct).abs().max())
        assert torch.allclose(lp.exp(), direct.exp(), atol=1e-5, rtol=0)
        assert torch.allclose(lp.exp().sum(-1), torch.ones(len(ids)), atol=1e-5)


def test_long_inputs_run_alone_on_a_cpu_with_the_unpadded_results(world_engine):
    """On a CPU, prompts and texts of at least ``CPU_SOLO_TOKENS`` tokens batch only with their own length
    (``perplexity.solo_from``), so their option log-probs and distributions are exactly those of one at a time,
    while the padding bound alone would have batched them; generation still batches them."""
    from kick_hub.scoring.perplexity import CPU_SOLO_TOKENS, batch_plan

    sentence = " Sada Holhar works in Kelford, near the harbour."
    texts = [start + sentence * n for start, n in (("Alpha.", 30), ("Beta.", 33), ("Gamma.", 36))]  # no shared prefix
    lengths = [len(world_engine.token_ids(t)) for t in texts]
    assert min(lengths) >= CPU_SOLO_TOKENS and len(set(lengths)) == 3 and max(lengths) <= world_engine.max_length - 1
    assert batch_plan(lengths, 8) == [[2, 1, 0]]  # without the rule: one padded batch
    batched = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=8)
    single = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=1)
    encoded = [world_engine.token_ids(t) for t in texts]
    assert batched._planned_batches(encoded, 1, prefill_only=False)[0] == 1
    for a, b in zip(batched.next_token_logprobs(texts), single.next_token_logprobs(texts), strict=True):
        assert torch.equal(a, b)
    assert batched.choice_logprobs(texts, [" A", " B"]) == single.choice_logprobs(texts, [" A", " B"])


def test_next_token_logprobs_refuse_a_text_longer_than_the_context(world_engine):
    text = " ".join(["Kelford"] * (world_engine.max_length + 1))
    before = world_engine.checked.copy()
    with pytest.raises(ValueError, match="the engine never cuts a prompt"):
        world_engine.next_token_logprobs([TEXTS[0], text])
    assert world_engine.checked.minus(before).inputs == 0  # refused before any forward pass


def test_next_token_logprobs_count_non_finite_logits():
    """A model with a NaN in its final norm: every text is counted in ``checked`` and its tensor keeps the NaNs."""
    from kick_hub.models import load_model

    model, tokenizer = load_model("world")
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    engine = TransformersEngine(model, tokenizer)
    got = engine.next_token_logprobs(TEXTS[:2])
    assert (engine.checked.inputs, engine.checked.non_finite) == (2, 2)
    assert all(bool(torch.isnan(lp).any()) for lp in got)

