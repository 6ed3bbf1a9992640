"""Prompts longer than the model's context: every task fits them by a stated rule (kick_hub.tasks.fit) and records
it; the engine never cuts a prompt; perplexity scores long texts in windows; overflowing perplexity is inf."""

import csv
import json
import math
import warnings

import pytest
import torch

from kick_hub.engine import Engine
from kick_hub.evaluation import evaluate
from kick_hub.tasks import factoid_qa, icra_qa, icsum, instruction_following, mcq_reasoning
from kick_hub.tasks import records as task_records
from kick_hub.tasks.fit import SKIPPED, ContextWarning
from kick_hub.tasks.mcq_reasoning import mcq_prompt
from tests.kick_runner import kick

HEADER = "The following are multiple choice questions (with answers) about river facts.\n\n"
SENTENCES = ["The river Alder rises in the northern hills and runs south past the old mill.",
             "Its water is cold in spring, when the snow melts on the high moors.",
             "Fishermen at Brookside say the trout are largest below the second bridge.",
             "In the dry summer of the long drought the ford near Elmstead could be crossed on foot.",
             "Boats carried timber and grain down to the harbour until the railway came."]
OPTIONS = ["the mill", "the bridge", "the harbour", "the moors"]


def long_question(tokenizer, i: int, target: int = 220) -> str:
    """A question whose solved item is about ``target`` tokens under ``tokenizer``."""
    words = " ".join(SENTENCES[i:] + SENTENCES[:i]).split()
    text, j = f"Item {i}.", 0
    ask = " Where does the river Alder end?"
    while len(tokenizer(mcq_prompt(text + ask, OPTIONS, "A"), add_special_tokens=False)["input_ids"]) < target:
        text += " " + words[j % len(words)]
        j += 1
    return text + ask


def write_mmlu(root, dev_rows, test_rows, subject="river_facts"):
    for split, rows in (("dev", dev_rows), ("test", test_rows)):
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / split / f"{subject}_{split}.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
    return root


@pytest.fixture(scope="module")
def long_mmlu(world_engine, tmp_path_factory):
    """The issue's folder: 5 dev items of ~220 tokens each, one short test item, subject river_facts."""
    tok = world_engine.tokenizer
    dev = [[long_question(tok, i), *OPTIONS, "C"] for i in range(5)]
    for row in dev:
        n = len(tok(mcq_prompt(row[0], OPTIONS, "C"), add_special_tokens=False)["input_ids"])
        assert 218 <= n <= 226, n
    test = [["Where does the river Alder end?", *OPTIONS, "C"]]
    return write_mmlu(tmp_path_factory.mktemp("mmlu"), dev, test)


def run_recording(module, engine, records, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores, samples = module.run(engine, records, **kwargs)
    return scores, samples, [w for w in caught if issubclass(w.category, ContextWarning)]


@pytest.mark.parametrize("protocol", ["default", "llm-kick"])
def test_mcq_drops_shots_from_the_end_keeping_header_and_question(world_engine, long_mmlu, protocol):
    engine = world_engine
    records = task_records.load("mcq-reasoning", str(long_mmlu))
    assert len(records) == 1 and len(records[0]["fewshot"]) == 5
    full = mcq_reasoning.build_prompt(records[0], 5)
    assert engine.count_tokens(full) > engine.max_length  # the 5-shot prompt does not fit 512 tokens
    scores, samples, caught = run_recording(mcq_reasoning, engine, records, protocol=protocol)
    sample = samples[0]
    prompt = sample["prompt"]
    assert prompt.startswith(HEADER)
    assert prompt.endswith(mcq_prompt("Where does the river Alder end?", OPTIONS))
    # header (~15) + 2 shots (~440) + question fit in 511 tokens; a third shot does not
    assert sample["shots"] == 2 and sample["shortened"] is True and "skipped" not in sample
    assert prompt == mcq_reasoning.build_prompt(records[0], 2)
    assert records[0]["fewshot"][0]["question"] in prompt and records[0]["fewshot"][2]["question"] not in prompt
    assert engine.count_tokens(prompt) <= engine.max_length - 1
    assert engine.count_tokens(mcq_reasoning.build_prompt(records[0], 3)) > engine.max_length - 1
    assert sample["score"] in (0.0, 1.0) and scores["accuracy"] == sample["score"]
    assert len(caught) == 1 and "1 of 1 prompts exceed the model's 512-token context" in str(caught[0].message)


def test_mcq_evaluate_records_shortened_prompts_in_config(world_engine, long_mmlu):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = evaluate(world_engine, ["mcq-reasoning"], str(long_mmlu), protocol="llm-kick")
    assert len([w for w in caught if issubclass(w.category, ContextWarning)]) == 1
    context = out["config"]["context"]
    assert context["tokens"] == 512
    assert context["prompts_shortened"] == {"mcq-reasoning": 1}
    assert context["prompts_skipped"] == {"mcq-reasoning": 0}
    assert out["results"]["mcq-reasoning"]["n"] == 1
    assert out["samples"]["mcq-reasoning"][0]["shots"] == 2


def test_mcq_question_too_long_even_zero_shot_is_not_scored(world_engine, tmp_path):
    tok = world_engine.tokenizer
    huge = " ".join(SENTENCES * 12)  # far over 512 tokens on its own
    root = write_mmlu(tmp_path, [["Short dev question?", *OPTIONS, "A"]],
                      [[huge, *OPTIONS, "B"], ["Where does the river Alder end?", *OPTIONS, "C"]])
    assert len(tok(huge)["input_ids"]) > 512
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = evaluate(world_engine, ["mcq-reasoning"], str(root))
    assert len([w for w in caught if issubclass(w.category, ContextWarning)]) == 1
    samples = out["samples"]["mcq-reasoning"]
    too_long = next(s for s in samples if s["reference"] == "B")
    fine = next(s for s in samples if s["reference"] == "C")
    assert too_long["skipped"] == SKIPPED and "score" not in too_long and too_long["shots"] == 0
    assert fine["shots"] == 1 and fine["shortened"] is False and "score" in fine
    assert out["results"]["mcq-reasoning"]["n"] == 1
    assert out["results"]["mcq-reasoning"]["accuracy"] == fine["score"]
    assert out["config"]["context"]["prompts_skipped"] == {"mcq-reasoning": 1}
    assert out["config"]["context"]["prompts_shortened"] == {"mcq-reasoning": 0}


def test_no_example_fits_is_a_clear_error(world_engine):
    record = {"id": "q", "question": "x " * 2000, "answers": ["x"]}
    with pytest.raises(ValueError, match="data: none of the 1 prompts fits the model's context"):
        factoid_qa.run(world_engine, [record])


def test_icra_drops_the_passage_tail_keeping_instruction_and_question(world_engine):
    engine = world_engine
    passage = " ".join(f"Paragraph {i}. " + SENTENCES[i % 5] for i in range(150))
    long = {"id": "long", "question": "Where does the river Alder rise?", "answers": ["the northern hills"],
            "context": passage}
    short = {"id": "short", "question": "Where does the river Alder rise?", "answers": ["the northern hills"],
             "context": SENTENCES[0]}
    passage_tokens = len(engine.tokenizer(passage, add_special_tokens=False)["input_ids"])
    assert passage_tokens > 1000
    scores, samples, caught = run_recording(icra_qa, engine, [long, short])
    cut, whole = samples
    tail = "\n\nBased on these texts, answer these questions:\n\nQ: Where does the river Alder rise?\nA:"
    assert cut["prompt"].startswith("Paragraph 0. The river Alder rises") and cut["prompt"].endswith(tail)
    assert "Paragraph 149." not in cut["prompt"]
    assert engine.count_tokens(cut["prompt"]) <= engine.max_length - icra_qa.SPEC.max_new_tokens
    kept_passage = cut["prompt"][: -len(tail)]
    kept_tokens = len(engine.tokenizer(kept_passage, add_special_tokens=False)["input_ids"])
    assert cut["truncated_tokens"] == passage_tokens - kept_tokens and cut["shortened"] is True
    assert passage.startswith(kept_passage)
    assert whole["truncated_tokens"] == 0 and whole["shortened"] is False
    assert whole["prompt"] == icra_qa.prompt(short)
    assert {"score", "closed_book_score"} <= set(cut) and len(caught) == 1


def test_icsum_drops_the_story_tail_keeping_the_instruction(world_engine):
    engine = world_engine
    story = "\n\n".join(f"Part {i}. " + SENTENCES[i % 5] for i in range(120))
    record = {"id": "s", "bucket": "large", "story": story, "reference": "The river runs south."}
    scores, samples, caught = run_recording(icsum, engine, [record])
    sample = samples[0]
    instruction = icsum.prompt({"story": ""})
    assert sample["prompt"].startswith("Part 0. The river Alder") and sample["prompt"].endswith(instruction)
    assert "Part 119." not in sample["prompt"]
    room = engine.max_length - icsum.SPEC.max_new_tokens
    assert engine.count_tokens(sample["prompt"], chat=True) <= room
    assert sample["truncated_tokens"] > 0 and sample["shortened"] is True and "score" in sample
    assert scores["per_bucket"]["large"]["n"] == 1 and len(caught) == 1


def test_instruction_and_factoid_too_long_are_not_scored(world_engine):
    long_q = "Describe the river. " * 100
    records = [{"id": 1, "category": "writing", "question": long_q, "reference": "A river."},
               {"id": 2, "category": "writing", "question": "Describe the river.", "reference": "A river."}]
    _, samples, caught = run_recording(instruction_following, world_engine, records)
    assert samples[0]["skipped"] == SKIPPED and "score" not in samples[0] and samples[0]["output"] == ""
    assert "score" in samples[1] and "skipped" not in samples[1] and len(caught) == 1
    facts = [{"id": 1, "question": long_q, "answers": ["x"]}, {"id": 2, "question": "Who?", "answers": ["x"]}]
    _, samples, caught = run_recording(factoid_qa, world_engine, facts)
    assert samples[0]["skipped"] == SKIPPED and "score" in samples[1] and len(caught) == 1


def test_engine_never_cuts_a_prompt(world_engine):
    engine = world_engine
    long_prompt = "The river runs south. " * 200
    assert engine.count_tokens(long_prompt) > 512
    with pytest.raises(ValueError, match="prompt: #0 is .* tokens but only 504 fit"):
        engine.generate([long_prompt], max_new_tokens=8)
    with pytest.raises(ValueError, match="prompt: .* never cuts"):
        engine.choice_logprobs([long_prompt], [" A", " B"])
    with pytest.raises(ValueError, match="prompt: .* never cuts"):
        engine.continuation_logprob(long_prompt, " river")
    with pytest.raises(ValueError, match="prompt: .* never cuts"):
        next(engine.stream(long_prompt, 8))
    with pytest.raises(ValueError, match="max_new_tokens: must be between 0 and 511"):
        engine.generate(["Hi"], max_new_tokens=512)


def test_long_text_perplexity_scores_every_token_in_windows(world_engine):
    """Strided windows (Hugging Face's perplexity guide), checked against the guide's own loop with labels."""
    engine = world_engine
    long_text = " ".join(SENTENCES * 30)
    short_text = SENTENCES[1]
    ids = engine.token_ids(long_text)
    n = len(ids)
    assert n > 3 * engine.max_length
    got = engine.perplexity([long_text, short_text])
    alone = engine.perplexity([long_text])
    stride, width = engine.max_length // 2, engine.max_length
    total, count, prev_end, windows = 0.0, 0, 0, 0
    with torch.no_grad():
        for begin in range(0, n, stride):
            end = min(begin + width, n)
            window = torch.tensor([ids[begin:end]])
            labels = window.clone()
            labels[:, : -(end - prev_end)] = -100
            scored = int((labels[:, 1:] != -100).sum())
            total += float(engine.model(input_ids=window, labels=labels).loss) * scored
            count += scored
            windows += 1
            prev_end = end
            if end == n:
                break
    assert alone["tokens"] == count == n - 1  # every token after the first, once
    assert alone["per_example_windows"] == [windows] and windows == math.ceil((n - width) / stride) + 1
    assert alone["nll"] == pytest.approx(total / count, rel=1e-4)
    assert got["per_example"][0] == pytest.approx(alone["perplexity"], rel=1e-4)  # batching with a short text
    assert got["per_example_windows"] == [windows, 1]


@pytest.fixture(scope="module")
def overflow_model(tmp_path_factory):
    """The world model with its final norm weight multiplied by 1e4, saved with its tokenizer."""
    from kick_hub.engine import load_model

    model, tokenizer = load_model("world")
    with torch.no_grad():
        model.model.norm.weight.mul_(1e4)
    path = tmp_path_factory.mktemp("overflow") / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_overflowing_perplexity_is_inf_with_finite_nll(overflow_model):
    engine = Engine.from_name(str(overflow_model))
    result = engine.perplexity(["The river Alder rises in the northern hills.", "It runs south."])
    assert result["perplexity"] == math.inf
    assert math.isfinite(result["nll"]) and result["nll"] > 709
    assert result["per_example"] == [math.inf, math.inf]


def test_cli_on_overflowing_model_reports_inf_without_traceback(overflow_model, tmp_path):
    out_file = tmp_path / "out.json"
    out = kick("evaluate", "--model", overflow_model, "--task", "perplexity", "--limit", "20", "--output", out_file)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "inf" in out.stdout
    assert out_file.exists()


def test_cli_evaluate_records_the_shortened_mcq_prompt(long_mmlu, tmp_path):
    out_file = tmp_path / "out.json"
    # a fresh interpreter: the ContextWarning is a Python warning, which pytest records instead of printing
    out = kick("evaluate", "--task", "mcq-reasoning", "--data", long_mmlu, "--output", out_file, subprocess=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("ContextWarning") == 1
    result = json.loads(out_file.read_text())
    assert result["config"]["context"]["prompts_shortened"] == {"mcq-reasoning": 1}
    assert result["samples"]["mcq-reasoning"][0]["shots"] == 2


def test_space_refuses_a_prompt_without_room_for_its_new_tokens():
    """The Space never cuts: a prompt plus max_new_tokens over the model's context is refused with both numbers."""
    from kick_hub import space

    models = space.Models(None)
    engine = models.engine("world")[0]
    prompt = " ".join(SENTENCES * 2)
    n = engine.count_tokens(prompt, chat=True)
    assert 256 < n < 512 - 8
    with pytest.raises(ValueError, match=f"prompt: {n} tokens \\+ 256 new exceed world's context of 512 tokens"):
        next(space.compare_stream(models, ["world"], prompt, 256, chat=True))
    *_, (texts, scores) = space.compare_stream(models, ["world"], prompt, 8, chat=True)
    assert texts[0] == engine.generate([prompt], 8, chat=True)[0] and scores is None
