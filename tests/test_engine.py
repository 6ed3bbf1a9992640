"""The engine on a real trained model (stories260K): batching, log-likelihood MCQ, perplexity, bad input."""

import pytest
import torch

from kick_hub.engine import Engine, cut_at_stop


@pytest.fixture(scope="module")
def engine(stories260k):
    return Engine.from_name(str(stories260k), batch_size=3)


PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park. They saw", "One day"]


def test_batched_generation_equals_one_by_one(engine):
    batched = engine.generate(PROMPTS, max_new_tokens=12)
    single = [engine.generate([p], max_new_tokens=12)[0] for p in PROMPTS]
    assert batched == single
    assert all(len(o) > 0 for o in batched)


def test_generation_matches_plain_generate(engine):
    tok, model = engine.tokenizer, engine.model
    ids = tok("Once upon a time", return_tensors="pt")
    ref = model.generate(**ids, max_new_tokens=10, do_sample=False)
    assert engine.generate(["Once upon a time"], max_new_tokens=10)[0] == tok.decode(
        ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_stop_strings_cut_output(engine):
    out = engine.generate(["Once upon a time"], max_new_tokens=40, stop=["."])[0]
    assert "." not in out
    assert cut_at_stop("abc. def\nx", [".", "\n"]) == "abc"
    assert cut_at_stop("abc", ["\n"]) == "abc"


def test_stream_raises_the_error_of_generate(world_engine, monkeypatch):
    """An error inside ``model.generate`` (on the stream's worker thread) ends the stream and reaches the caller."""
    def broken_generate(**kwargs):
        raise RuntimeError("generate failed")

    monkeypatch.setattr(world_engine.model, "generate", broken_generate)
    with pytest.raises(RuntimeError, match="generate failed"):
        list(world_engine.stream("Where does Sada Holhar work?", 8, chat=True))


def test_choice_logprobs_equal_naive_per_option(engine):
    prompts = ["Lily went to the", "The cat was very"]
    choices = [" park", " happy", " big", " sad"]
    got = engine.choice_logprobs(prompts, choices)
    for prompt, row in zip(prompts, got):
        naive = [engine.continuation_logprob(prompt, c) for c in choices]
        assert row == pytest.approx(naive, abs=1e-4)


def test_single_token_choices_one_pass_matches_naive(world_engine):
    """Option letters are single tokens for the world tokenizer: one forward pass scores all four."""
    engine = world_engine
    letters = [" A", " B", " C", " D"]
    tok = engine.tokenizer
    if not all(len(tok(c, add_special_tokens=False)["input_ids"]) == 1 for c in letters):
        pytest.skip("letters are not single tokens for this tokenizer")
    # two prompts of about one length (batch_plan would run a much shorter one in its own batch)
    prompts = ["Question: which?\nA. x\nB. y\nC. z\nD. w\nAnswer:", "Question: what?\nA. p\nB. q\nC. r\nD. s\nAnswer:"]
    calls = []
    handle = engine.model.register_forward_hook(lambda *a: calls.append(1))
    got = engine.choice_logprobs(prompts, letters)
    handle.remove()
    assert len(calls) == 1  # both questions in one batch, one forward pass
    for prompt, row in zip(prompts, got):
        assert row == pytest.approx([engine.continuation_logprob(prompt, c) for c in letters], abs=1e-4)


def test_perplexity_is_token_level_and_padding_invariant(engine):
    texts = ["Once upon a time, there was a little girl named Lily.", "She loved to play."]
    both = engine.perplexity(texts)
    each = [engine.perplexity([t]) for t in texts]
    total_nll = sum(e["nll"] * e["tokens"] for e in each)
    assert both["tokens"] == sum(e["tokens"] for e in each)
    assert both["nll"] == pytest.approx(total_nll / both["tokens"], rel=1e-5)
    assert both["per_example"] == pytest.approx([e["perplexity"] for e in each], rel=1e-5)
    # against a direct computation with model(labels=...)
    ids = engine.tokenizer(texts[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = engine.model(input_ids=ids, labels=ids).loss
    assert each[0]["perplexity"] == pytest.approx(float(torch.exp(loss)), rel=1e-4)


def test_bad_models_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="model: no such directory"):
        Engine.from_name(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="model: cannot load 'org/not-cached': no such local directory, and as a "
                                         "Hub id it cannot be reached now"):
        Engine.from_name("org/not-cached")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="a local directory without a usable config.json"):
        Engine.from_name(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="is a file"):
        Engine.from_name(__file__)
    from transformers import DistilBertConfig

    DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=32).save_pretrained(tmp_path / "distilbert")
    with pytest.raises(ValueError, match="not a causal LM"):
        Engine.from_name(str(tmp_path / "distilbert"))
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                vocab_size=64).save_pretrained(tmp_path / "notok")
    with pytest.raises(ValueError, match="tokenizer"):
        Engine.from_name(str(tmp_path / "notok"))
    with pytest.raises(ValueError, match="batch_size"):
        Engine(None, None, batch_size=0)
