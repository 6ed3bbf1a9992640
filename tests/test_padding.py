"""A pad token the model cannot embed (issue 31, item 2): the world model's tokenizer with
``add_special_tokens({"pad_token": "[PAD]"})`` (id 2048 = vocab_size, weights unchanged). Padded positions are
masked, so every place that pads (engine generation, option log-probs, perplexity, the evaluate module, the judge's
local backend, the Space's stream) must give the world model's own scores at every batch size; a real token the
model cannot embed is a clear error before any forward pass."""

import json

from pathlib import Path

import evaluate
import pytest

MODULES = Path(__file__).resolve().parents[1] / "evaluate_metrics"


def _copy(out, **tokens):
    from kick_hub.engine import load_model

    model, tokenizer = load_model("world")
    model.save_pretrained(out)
    if tokens:
        tokenizer.add_special_tokens(tokens)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """The world model whose tokenizer pads with ``[PAD]``, an id past its 2048-row embedding."""
    out = _copy(tmp_path_factory.mktemp("padded") / "world-pad", pad_token="[PAD]")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == 2048 and len(tok) == 2049
    return out


def test_pad_id_is_one_the_model_embeds(padded):
    from kick_hub.engine import Engine

    engine = Engine.from_name(str(padded), batch_size=4)
    assert engine.rows == 2048 and engine.pad_token_id == 0  # the generation config's pad, not [PAD]
    assert engine.generation_settings()["pad_token_id"] == 0


@pytest.mark.parametrize("batch_size", [1, 32])
def test_factoid_same_at_every_batch_size(padded, tmp_path, batch_size):
    from kick_hub.cli import main

    def run(model, name):
        out = tmp_path / name
        assert main(["evaluate", "--model", model, "--task", "factoid-qa", "--limit", "8", "--batch-size",
                     str(batch_size), "--output", str(out)]) == 0
        return json.loads(out.read_text())

    got, world = run(str(padded), "padded.json"), run("world", "world.json")
    assert got["results"]["factoid-qa"]["exact_match"] == world["results"]["factoid-qa"]["exact_match"] == 1.0
    assert [s["output"] for s in got["samples"]["factoid-qa"]] == [s["output"] for s in world["samples"]["factoid-qa"]]


def test_engine_scores_equal_world_at_batch_32(padded, world_engine):
    """Option log-probs, perplexity and generation of several prompts in one padded batch."""
    from kick_hub.tasks.records import load
    from kick_hub.engine import Engine
    from kick_hub.tasks.mcq_reasoning import prompt

    engine = Engine.from_name(str(padded), batch_size=32)
    records = load("mcq-reasoning", "world", 8)
    prompts = [prompt(r) for r in records]
    choices = [" A", " B", " C", " D"]
    got, want = engine.choice_logprobs(prompts, choices), world_engine.choice_logprobs(prompts, choices)
    assert [x for row in got for x in row] == pytest.approx([x for row in want for x in row], abs=1e-4)
    texts = [r["text"] for r in load("perplexity", "world", 8)]
    got, want = engine.perplexity(texts), world_engine.perplexity(texts)
    assert got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5) and got["tokens"] == want["tokens"]
    questions = [r["question"] for r in load("factoid-qa", "world", 8)]
    assert engine.generate(questions, 8) == world_engine.generate(questions, 8)
    assert engine.checked.non_finite == 0 and engine.checked.inputs == 24


def test_perplexity_module_equals_unpadded(padded):
    from kick_hub.tasks.records import load

    texts = [r["text"] for r in load("perplexity", "world", 6)]
    module = evaluate.load(str(MODULES / "perplexity"))
    got = module.compute(predictions=texts, model_id=str(padded), batch_size=16)
    one = module.compute(predictions=texts, model_id=str(padded), batch_size=1)
    from kick_hub.engine import WORLD_MODEL_DIR

    want = module.compute(predictions=texts, model_id=str(WORLD_MODEL_DIR), batch_size=16)
    assert got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5)
    assert one["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5)
    assert got["perplexities"] == pytest.approx(want["perplexities"], rel=1e-5)


def test_judge_local_backend_batches_like_one_at_a_time(padded):
    from kick_hub.scoring.judge import TransformersBackend

    backend = TransformersBackend(str(padded), max_new_tokens=8, batch_size=4)
    messages = [("You are a judge.", q) for q in ["Who founded Orvane?", "Rate this answer: Paris.",
                                                  "Is the sky blue?", "Say yes."]]
    batched = [c.text for c in backend.complete_many(messages)]
    assert batched == [backend.complete(s, u) for s, u in messages]


def test_space_stream_ends_like_generate(padded):
    from kick_hub.engine import Engine

    engine = Engine.from_name(str(padded), batch_size=1)  # the Space's engines (space.Models.engine)
    prompt = "Question: Where was Ada Quill born?\nAnswer:"
    assert list(engine.stream(prompt, 12))[-1] == engine.generate([prompt], 12)[0]


def test_real_token_past_the_embedding_is_an_error(tmp_path, capsys):
    """A token the tokenizer really emits for the text (not a pad) that the model cannot embed: exit 2 naming it,
    before any forward pass; the evaluate module refuses it the same way."""
    from kick_hub.cli import main
    from kick_hub.engine import Engine

    out = _copy(tmp_path / "world-extra")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    tok.add_tokens(["Tamkel"])  # id 2048: a name in the first factoid questions
    tok.save_pretrained(out)
    engine = Engine.from_name(str(out))
    with pytest.raises(ValueError, match=r"'Tamkel' \(id 2048\), but the model embeds only ids 0 to 2047"):
        engine.generate(["Where was Tamkel Prahar born?"], 4)
    assert engine.checked.inputs == 0  # refused before the model ran
    with pytest.raises(ValueError, match=r"'Tamkel' \(id 2048\)"):
        engine.perplexity(["Where was Tamkel Prahar born?"])
    with pytest.raises(ValueError, match=r"predictions: #0 has the token 'Tamkel' \(id 2048\)"):
        evaluate.load(str(MODULES / "perplexity")).compute(predictions=["Where was Tamkel Prahar born?"],
                                                          model_id=str(out))
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model", str(out), "--task", "factoid-qa", "--limit", "4"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("kick: error: prompt #") and "(id 2048)" in err and "does not match the model" in err
