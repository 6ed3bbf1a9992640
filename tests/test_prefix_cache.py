"""Shared-prefix evaluation (issue 37): prompts of one call that share leading tokens run their prefix once into a
key/value cache and only their suffixes after it, with the plain path's outputs: greedy texts equal, log-likelihoods
to float32 rounding (relative 1e-5; the plain path itself moves by as much between batch sizes on the world model),
on the world model and on a tiny random model of every architecture family; a model whose cache cannot be shared
(sliding windows the sequences reach, an unsupported attention implementation) runs plain with one logged line.
"""

import logging
from contextlib import contextmanager

import pytest
import torch
import transformers as T

from kick_hub.backends.transformers import (MIN_SHARED_PREFIX, TransformersEngine, prefix_blocker,
                                            shared_prefix_groups)
from kick_hub.tasks import icra_qa, mcq_reasoning
from kick_hub.tasks import records as task_records
from tests.test_architectures import FAMILIES, SMALL, tiny

LETTERS = [" A", " B", " C", " D"]
TOL = dict(rel=1e-5, abs=1e-5)
# The world model's logits are large enough that float32 rounding moves its log-probs by up to 2.5e-5 between batch
# sizes on the plain path alone (batch 1 vs 32 on these prompts); shared vs plain is held to twice that.
WORLD_TOL = dict(rel=0, abs=5e-5)


def flat(rows):
    return [x for row in rows for x in row]


@pytest.fixture(scope="module")
def tokenizer():
    return T.AutoTokenizer.from_pretrained("kick_hub/world/model")


@pytest.fixture(scope="module")
def mcq_prompts():
    """The 100-question world MCQ set's 5-shot prompts (6 subjects: 6 groups of shared header and shots)."""
    return [mcq_reasoning.build_prompt(r) for r in task_records.load("mcq-reasoning", "world", 100)]


@contextmanager
def tokens_run(model):
    """A counter (``[n]``) of the token positions the model's forward passes read (input embedding calls)."""
    seen = [0]
    hook = model.get_input_embeddings().register_forward_hook(
        lambda m, args, out: seen.__setitem__(0, seen[0] + args[0].numel()))
    try:
        yield seen
    finally:
        hook.remove()


# ------------------------------------------------------------------ grouping (no model)
@pytest.mark.unit
def test_groups_split_at_short_common_prefixes():
    a, b = list(range(100, 140)), list(range(200, 240))
    encoded = [a + [1, 2], b + [5], a + [3], [7, 8, 9], b + [6, 6, 6], a + [4, 4]]
    groups, rest = shared_prefix_groups(encoded)
    assert sorted(groups) == [([0, 2, 5], 40), ([1, 4], 40)]
    assert rest == [3]
    # the result depends on the ids, not on their order
    perm = [5, 3, 1, 0, 4, 2]
    groups2, rest2 = shared_prefix_groups([encoded[i] for i in perm])
    assert sorted(sorted(perm[i] for i in m) for m, _ in groups2) == [[0, 2, 5], [1, 4]]
    assert [perm[i] for i in rest2] == [3]


@pytest.mark.unit
def test_groups_keep_one_token_of_each_member_and_skip_short_prefixes():
    p = list(range(10, 40))
    groups, rest = shared_prefix_groups([p, p, p + [1]])  # identical prompts: each keeps its last token
    assert groups == [([0, 1, 2], 29)] and rest == []
    short = list(range(MIN_SHARED_PREFIX - 1))
    assert shared_prefix_groups([short + [1], short + [2]]) == ([], [0, 1])
    # a long prompt sharing a prefix shorter than half of it is not grouped (too little to save)
    assert shared_prefix_groups([p + list(range(500, 600)), p + list(range(600, 700))]) == ([], [0, 1])
    assert shared_prefix_groups([]) == ([], [])


@pytest.mark.unit
def test_group_boundary_is_a_token_boundary(tokenizer):
    """Two texts whose strings share more than their tokens: the prefix is the common token ids, so each member's
    suffix ids are exactly its own tokenization's tail."""
    head = "The following passage is about the capital of a country and its history. " * 3
    texts = [head + "Question: unbelievable", head + "Question: unbelieving"]
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    (members, length), = shared_prefix_groups(encoded)[0]
    assert members == [0, 1]
    assert encoded[0][:length] == encoded[1][:length] and encoded[0][length] != encoded[1][length]
    assert tokenizer.decode(encoded[0][:length], skip_special_tokens=True) != texts[0][:len(head) + 16]


# ------------------------------------------------------------------ the world model
def test_world_mcq_loglik_and_generate_equal_plain(world_engine, mcq_prompts):
    plain = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=32, share_prefix=False)
    shared = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=32)
    with tokens_run(world_engine.model) as seen:
        want = plain.choice_logprobs(mcq_prompts, LETTERS)
        plain_tokens = seen[0]
        got = shared.choice_logprobs(mcq_prompts, LETTERS)
    assert flat(got) == pytest.approx(flat(want), **WORLD_TOL)
    assert [max(range(4), key=r.__getitem__) for r in got] == [max(range(4), key=r.__getitem__) for r in want]
    assert seen[0] - plain_tokens < plain_tokens / 3  # the shots ran once per subject, not once per question
    assert shared.checked.inputs == plain.checked.inputs == 100 and shared.checked.non_finite == 0
    assert shared.generate(mcq_prompts, 4) == plain.generate(mcq_prompts, 4)


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_world_results_same_at_every_batch_size(world_engine, mcq_prompts, batch_size):
    prompts = mcq_prompts[::3]
    want = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=1, share_prefix=False)
    engine = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=batch_size)
    assert flat(engine.choice_logprobs(prompts, LETTERS)) == pytest.approx(flat(want.choice_logprobs(prompts, LETTERS)),
                                                                          **WORLD_TOL)
    assert engine.generate(prompts, 4) == want.generate(prompts, 4)


def test_world_mcq_task_identical_both_protocols(world_engine):
    """The task as `kick evaluate --tasks mcq-reasoning --mcq-protocols loglik generate` runs it: same accuracy,
    same outputs and ranks in every sample."""
    records = task_records.load("mcq-reasoning", "world", 100)
    runs = [mcq_reasoning.run(TransformersEngine(world_engine.model, world_engine.tokenizer, share_prefix=flag),
                              records, protocols=["loglik", "generate"]) for flag in (False, True)]
    (s0, samples0), (s1, samples1) = runs
    assert s0 == s1
    assert samples0 == samples1


def test_world_one_passage_many_questions_and_system_text(world_engine):
    """In-context QA (one passage asked several questions, questions of different lengths: padding between prefix
    and suffix) and prompts under one system text (suffixes of equal length: no padding at all)."""
    record = task_records.load("icra-qa", "world", 1)[0]
    questions = ["Who is it about?", "Where?", "When was it founded and by whom, according to the passage?",
                 "What is the name of the place mentioned first in the text above?"]
    open_book = [icra_qa.prompt({**record, "question": q}) for q in questions]
    system = "You are a careful assistant. Answer with one short phrase, no explanations, no repetition. " * 4
    same_length = [f"{system}\nQuestion: {w}\nAnswer:" for w in ("alpha", "bravo", "delta", "gamma")]
    plain = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=3, share_prefix=False)
    shared = TransformersEngine(world_engine.model, world_engine.tokenizer, batch_size=3)
    for prompts in (open_book, same_length):
        assert shared_prefix_groups([shared.token_ids(p) for p in prompts])[0]  # they do share a prefix
        assert shared.generate(prompts, 12, stop=["\n"]) == plain.generate(prompts, 12, stop=["\n"])
        assert flat(shared.choice_logprobs(prompts, LETTERS)) == pytest.approx(
            flat(plain.choice_logprobs(prompts, LETTERS)), **WORLD_TOL)


# ------------------------------------------------------------------ every architecture family
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def family_model(family: str):
    """``tiny(family)``; ``gemma3-wide`` / ``gemma3_mm-wide``: Gemma 3 with a sliding window longer than the
    sequences, so its sliding layers' cache is shared too."""
    name, _, wide = family.partition("-wide")
    if family.endswith("-wide"):
        torch.manual_seed(0)
        text = dict(**SMALL, num_key_value_heads=1, head_dim=16, sliding_window=1024,
                    layer_types=["sliding_attention", "full_attention"])
        return T.AutoModelForCausalLM.from_config(T.Gemma3TextConfig(**text)).eval()
    return tiny(name)


SHARING = [f for f in [*FAMILIES, "gpt2-eager", "opt-eager", "gemma3-wide"] if f not in ("gemma3", "gemma3_mm")]


@pytest.mark.parametrize("family", SHARING)
def test_family_shared_equals_plain(family, tokenizer, mcq_prompts, caplog):
    model = family_model(family)
    prompts = mcq_prompts[::4]
    plain = TransformersEngine(model, tokenizer, batch_size=4, share_prefix=False)
    shared = TransformersEngine(model, tokenizer, batch_size=4)
    assert prefix_blocker(model, 256) is None
    with caplog.at_level(logging.WARNING, logger="kick_hub.backends.transformers"):
        with tokens_run(model) as seen:
            got = shared.choice_logprobs(prompts, LETTERS)
        assert seen[0] < sum(len(shared.token_ids(p)) for p in prompts) / 3  # shared: the shots ran once
        assert flat(got) == pytest.approx(flat(plain.choice_logprobs(prompts, LETTERS)), **TOL)
        assert shared.generate(prompts, 6) == plain.generate(prompts, 6)
    assert not [r for r in caplog.records if r.name == "kick_hub.backends.transformers"]


@pytest.mark.parametrize("family", ["gemma3", "gemma3_mm", "gemma3-eager"])
def test_sliding_window_falls_back_with_one_line(family, tokenizer, mcq_prompts, caplog):
    """Gemma 3's 16-token sliding window is shorter than the prompts: the engine runs them whole and says so once."""
    model = tiny(family)
    prompts = mcq_prompts[::8]
    assert "sliding window 16" in prefix_blocker(model, 200)
    plain = TransformersEngine(model, tokenizer, batch_size=4, share_prefix=False)
    shared = TransformersEngine(model, tokenizer, batch_size=4)
    with caplog.at_level(logging.INFO, logger="kick_hub.backends.transformers"):
        got = shared.choice_logprobs(prompts, LETTERS)
        texts = shared.generate(prompts, 6)
    assert got == plain.choice_logprobs(prompts, LETTERS) and texts == plain.generate(prompts, 6)
    lines = [r.getMessage() for r in caplog.records if r.name == "kick_hub.backends.transformers"]
    assert len(lines) == 1 and "shared-prefix evaluation off" in lines[0] and "sliding window 16" in lines[0]


def test_unsupported_attention_falls_back(tokenizer, mcq_prompts, caplog):
    """An attention implementation whose masks the middle padding is not checked against (flash, flex, ...)."""
    model = tiny("llama")
    assert prefix_blocker(model, 200) is None
    model.config._attn_implementation = "flash_attention_2"
    assert "attention implementation 'flash_attention_2'" in prefix_blocker(model, 200)
    model.config._attn_implementation = "sdpa"
    model.generation_config.cache_implementation = "static"
    assert "cache implementation 'static'" in prefix_blocker(model, 200)
    engine = TransformersEngine(model, tokenizer, batch_size=4)
    with caplog.at_level(logging.INFO, logger="kick_hub.backends.transformers"):
        engine.choice_logprobs(mcq_prompts[::6], LETTERS)  # one subject: they share header and shots
        engine.choice_logprobs(mcq_prompts[1::6], LETTERS)
    lines = [r.getMessage() for r in caplog.records if r.name == "kick_hub.backends.transformers"]
    assert len(lines) == 1 and "'static'" in lines[0]
