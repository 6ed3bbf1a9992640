"""Stop tokens come from the model's generation config (Llama-3-style ``eos_token_id`` lists), in batch generation,
streaming, the Space, the judge's local backend and evaluation; greedy decoding is not changed by the generation
config's sampling or penalty settings; padding without a pad token keeps batches equal to one-by-one runs.

The "instruct layout" is the world model saved again with its tokenizer's ``eos_token`` set to ``<|assistant|>``
(id 4, a token the model never emits at the end of an answer) and ``generation_config.eos_token_id = [4, 2]``, as
Llama-3-Instruct ships ``<|end_of_text|>`` as the tokenizer's eos and ends turns with ``<|eot_id|>``. The weights are
unchanged, so every output must equal the original layout's.
"""

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kick_hub.engine import Engine, choose_pad_token_id, load_model, stop_token_ids, until_stop
from kick_hub.tasks import instruction_following
from kick_hub.tasks import records as task_records

END_OF_TURN = "<|assistant|>"  # id 4 in the world tokenizer
MAX_NEW = 64


def save_layout(target: Path, **generation) -> Path:
    """The world model saved to ``target`` with the instruct layout's tokenizer eos and ``generation`` set on its
    generation config."""
    from transformers import AutoTokenizer, GenerationConfig

    model, tokenizer = load_model("world")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    tok = AutoTokenizer.from_pretrained(target)
    tok.eos_token = END_OF_TURN
    tok.save_pretrained(target)
    config = GenerationConfig.from_pretrained(target)
    config.update(**generation)
    config.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def instruct_dir(tmp_path_factory) -> Path:
    return save_layout(tmp_path_factory.mktemp("instruct") / "model", eos_token_id=[4, 2])


@pytest.fixture(scope="module")
def instruct_engine(instruct_dir) -> Engine:
    return Engine.from_name(str(instruct_dir), batch_size=4)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return [instruction_following.prompt(r) for r in task_records.load("instruction-following", "world", 6)]


def plain_generate(model, tokenizer, prompt: str) -> str:
    """``model.generate`` with the model's own generation config, one chat prompt, greedy."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=MAX_NEW, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_layout_premises(instruct_engine, world_engine, prompts):
    """Ids 4 and 2 are <|assistant|> and </s>; the tokenizer's eos is 4; the weights are the world model's; the model
    ends an answer with </s> and keeps writing when only id 4 stops it (what kick did before)."""
    tok = instruct_engine.tokenizer
    assert tok.convert_ids_to_tokens([4, 2]) == [END_OF_TURN, "</s>"]
    assert tok.eos_token_id == 4 and world_engine.tokenizer.eos_token_id == 2
    assert list(instruct_engine.model.generation_config.eos_token_id) == [4, 2]
    for (name, a), b in zip(instruct_engine.model.state_dict().items(), world_engine.model.state_dict().values()):
        assert torch.equal(a, b), name
    text = world_engine.render(prompts[0], chat=True)
    ids = world_engine.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = world_engine.model.generate(**ids, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=4)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert 2 in new and new.index(2) > 0  # an answer, then </s>
    assert len(new) > new.index(2) + 1  # and more text when </s> does not stop it
    assert world_engine.tokenizer.decode(new, skip_special_tokens=True) != world_engine.generate(
        [prompts[0]], MAX_NEW, chat=True)[0]


def test_stop_ids_come_from_generation_config(instruct_engine, world_engine):
    assert instruct_engine.stop_token_ids == [4, 2]
    assert world_engine.stop_token_ids == [2]
    assert instruct_engine.generation_settings() == {"stop_token_ids": [4, 2], "pad_token_id": 0,
                                                     "do_sample": False}


def test_stop_token_ids_rule():
    tok = SimpleNamespace(eos_token_id=7)

    def with_config(eos):
        return SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=eos))

    assert stop_token_ids(with_config([4, 2]), tok) == [4, 2]
    assert stop_token_ids(with_config(3), tok) == [3]
    assert stop_token_ids(with_config([5, 5, 1]), tok) == [5, 1]
    assert stop_token_ids(with_config(None), tok) == [7]  # only without a generation-config eos
    assert stop_token_ids(with_config([]), tok) == [7]
    assert stop_token_ids(SimpleNamespace(), tok) == [7]
    assert stop_token_ids(with_config(None), SimpleNamespace(eos_token_id=None)) == []
    assert until_stop([9, 8, 2, 4, 7], [4, 2]) == [9, 8]
    assert until_stop([9, 8], [4, 2]) == [9, 8]


def test_generate_matches_plain_generate_and_original_layout(instruct_engine, world_engine, prompts):
    got = instruct_engine.generate(prompts, MAX_NEW, chat=True)
    plain = [plain_generate(instruct_engine.model, instruct_engine.tokenizer, p) for p in prompts]
    assert got == plain
    assert got == world_engine.generate(prompts, MAX_NEW, chat=True)
    assert all(o.strip() for o in got)


def test_instruction_following_scores_equal_across_layouts(instruct_engine, world_engine):
    from kick_hub.evaluation import evaluate

    a = evaluate(instruct_engine, ["instruction-following"], "world", limit=20)
    b = evaluate(world_engine, ["instruction-following"], "world", limit=20)
    assert a["results"] == b["results"]
    assert a["results"]["instruction-following"]["rougeL"] > 0.5
    assert [s["output"] for s in a["samples"]["instruction-following"]] == [
        s["output"] for s in b["samples"]["instruction-following"]]
    assert a["config"]["generation"] == {"stop_token_ids": [4, 2], "pad_token_id": 0, "do_sample": False}
    assert b["config"]["generation"] == {"stop_token_ids": [2], "pad_token_id": 0, "do_sample": False}


def test_stream_ends_where_generate_does(instruct_engine, prompts):
    for prompt in prompts[:3]:
        streamed = list(instruct_engine.stream(prompt, MAX_NEW, chat=True))
        assert streamed and streamed[-1] == instruct_engine.generate([prompt], MAX_NEW, chat=True)[0]


def test_space_streams_the_same_text_for_both_layouts(instruct_dir, prompts):
    from kick_hub.space import Models, compare_stream

    models = Models(None)
    models.choices["instruct"] = str(instruct_dir)
    *_, (texts, scores) = compare_stream(models, ["world", "instruct"], prompts[1], MAX_NEW, chat=True)
    assert texts[0] == texts[1] and texts[0].strip()
    assert scores is None


def test_judge_local_backend_stops_at_generation_config_ids(instruct_dir):
    from kick_hub.scoring.judge import TransformersBackend

    system, user = "You are a helpful assistant.", "Where does Sada Holhar work?"
    instruct = TransformersBackend(str(instruct_dir), max_new_tokens=MAX_NEW)
    world = TransformersBackend("world", max_new_tokens=MAX_NEW)
    assert instruct.engine.stop_token_ids == [4, 2]
    assert instruct.complete(system, user) == world.complete(system, user)


def test_generation_config_sampling_and_penalties_do_not_leak(tmp_path, world_engine, prompts):
    """A generation config asking for sampling, beams and penalties: kick still decodes greedily, without warnings."""
    from transformers.utils import logging as hf_logging

    path = save_layout(tmp_path / "sampling", eos_token_id=[4, 2], do_sample=True, temperature=0.6, top_p=0.9,
                       top_k=5, num_beams=2, repetition_penalty=1.3, no_repeat_ngram_size=2)
    engine = Engine.from_name(str(path), batch_size=4)
    assert engine.model.generation_config.do_sample is True
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = hf_logging.get_logger("transformers")
    logging.Logger.warning_once.cache_clear()
    logger.addHandler(handler)
    try:
        got = engine.generate(prompts, MAX_NEW, chat=True)
        streamed = list(engine.stream(prompts[0], MAX_NEW, chat=True))[-1]
    finally:
        logger.removeHandler(handler)
    assert got == world_engine.generate(prompts, MAX_NEW, chat=True)
    assert streamed == got[0]
    assert [r.getMessage() for r in records] == []


def test_pad_choice_avoids_stop_ids():
    def model(gen_pad, cfg_pad):
        return SimpleNamespace(generation_config=SimpleNamespace(pad_token_id=gen_pad),
                               config=SimpleNamespace(pad_token_id=cfg_pad, vocab_size=100))

    def tok(pad, unk):
        return SimpleNamespace(pad_token_id=pad, unk_token_id=unk)

    assert choose_pad_token_id(model(None, None), tok(5, 0), [2]) == 5  # the tokenizer's own pad
    assert choose_pad_token_id(model(3, None), tok(None, 0), [2]) == 3
    assert choose_pad_token_id(model(2, 6), tok(None, 0), [2]) == 6  # generation-config pad is a stop id
    assert choose_pad_token_id(model(None, None), tok(None, 0), [2]) == 0  # unk
    assert choose_pad_token_id(model(None, 2), tok(None, None), [2, 4]) == 2  # nothing else: pad = eos
    assert choose_pad_token_id(model(None, 500), tok(None, None), []) == 0  # out of vocab, no stop ids


@pytest.mark.parametrize(("config_pad", "unk", "pad"), [(0, None, 0), (2, "<s>", 1), (4, None, 4)])
def test_batches_without_pad_token_equal_one_by_one(instruct_dir, world_engine, prompts, config_pad, unk, pad):
    """No pad token in the tokenizer: the engine pads with the model config's pad or the unk token when that is not a
    stop id, else with a stop id; left-padded batches give the one-by-one outputs in every case."""
    model, tok = load_model(str(instruct_dir))
    tok.pad_token, tok.unk_token = None, unk
    model.generation_config.pad_token_id = None
    model.config.pad_token_id = config_pad
    engine = Engine(model, tok, batch_size=len(prompts))
    assert tok.pad_token_id is None and engine.pad_token_id == pad
    expected = world_engine.generate(prompts, MAX_NEW, chat=True)
    assert engine.generate(prompts, MAX_NEW, chat=True) == expected
    assert [engine.generate([p], MAX_NEW, chat=True)[0] for p in prompts] == expected
