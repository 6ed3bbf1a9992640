"""Loaders on the real samples in ../shared/data and on the world's files (same loaders, same formats)."""

import json

import pytest

from kick_hub import data
from kick_hub.tasks import records as task_records


def test_freebaseqa_txt(shared_data):
    records = task_records.load("factoid-qa", str(shared_data / "freebaseqa" / "FreebaseQA-eval.txt"))
    assert len(records) == 4023
    first = records[0]
    assert first["question"].startswith("100 pesewas equalling 1 cedi")
    assert first["answers"] == ["ghana"]


def test_freebaseqa_json(tmp_path):
    payload = {"Dataset": "FreebaseQA-eval", "Questions": [{
        "Question-ID": "FreebaseQA-eval-0", "RawQuestion": "Who wrote Hamlet?", "ProcessedQuestion": "who wrote hamlet",
        "Parses": [{"Answers": [{"AnswersMid": "m.1", "AnswersName": ["william shakespeare", "shakespeare"]}]},
                   {"Answers": [{"AnswersMid": "m.1", "AnswersName": ["shakespeare", "the bard"]}]}]}]}
    (tmp_path / "FreebaseQA-eval.json").write_text(json.dumps(payload))
    [r] = task_records.load("factoid-qa", str(tmp_path))
    assert r["answers"] == ["william shakespeare", "shakespeare", "the bard"]


def test_mmlu_csv_folders(shared_data):
    records = task_records.load("mcq-reasoning", str(shared_data / "mmlu"))
    assert len(records) == 14042
    assert len({r["subject"] for r in records}) == 57
    r = records[0]
    assert len(r["options"]) == 4 and r["answer"] in "ABCD" and len(r["fewshot"]) == 5
    assert all(s["subject"] == r["subject"] for s in r["fewshot"])
    # a limit keeps every subject represented
    assert len({r["subject"] for r in task_records.load("mcq-reasoning", str(shared_data), limit=57)}) == 57


def test_cnn_stories_highlights_never_reach_the_article(shared_data):
    records = task_records.load("icsum", str(shared_data))
    assert len(records) == 90
    assert {r["bucket"] for r in records} == {"small", "mid", "large"}
    for r in records:
        assert "@highlight" not in r["story"] and r["reference"]
    potato = [r for r in records if "potato salad" in r["story"].lower()]
    if potato:
        assert potato[0]["reference"].startswith("Ohio man hoped to raise $10")


def test_vicuna_questions_with_reference_answers(shared_data):
    records = task_records.load("instruction-following", str(shared_data))
    assert len(records) == 80
    assert records[0]["question"] == "How can I improve my time management skills?"
    assert records[0]["reference"].startswith("Here are some tips")


def test_world_sources_round_trip():
    factoid = task_records.load("factoid-qa", "world")
    assert factoid[0]["answers"][0] and factoid[0]["question"].endswith("?")
    heldout = task_records.load("factoid-qa", "world-heldout")
    assert len(heldout) == len(factoid) and heldout[0]["question"] != factoid[0]["question"]
    mcq = task_records.load("mcq-reasoning", "world", limit=12)
    assert len({r["subject"] for r in mcq}) == 6 and all(len(r["fewshot"]) == 5 for r in mcq)
    icra = task_records.load("icra-qa", "world")
    assert all(r["answers"][0] in r["context"] for r in icra)
    assert len(task_records.load("icsum", "world")) == 90
    assert len(task_records.load("instruction-following", "world")) == 80
    assert task_records.load("perplexity", "world", limit=3)[0]["text"]


def test_triviaqa_context_is_cut_like_llm_kick(tmp_path):
    rec = {"question": "q?", "question_id": "x", "answer": {"value": "A", "aliases": ["A", "a1"]},
           "entity_pages": {"wiki_context": ["w" * 3000]}, "search_results": {"search_context": ["s" * 500]}}
    (tmp_path / "rc.jsonl").write_text(json.dumps(rec) + "\n")
    [r] = task_records.load("icra-qa", str(tmp_path))
    assert len(r["context"]) == data.TRIVIAQA_CONTEXT_CHARS and r["answers"] == ["A", "a1"]


@pytest.mark.parametrize("task, source, field", [
    ("factoid-qa", "/nonexistent/path", "data"),
    ("riddles", "world", "task"),
    ("factoid", "world", "task"),
    ("factoid-qa", "world", "limit"),
])
def test_bad_sources(task, source, field):
    with pytest.raises(ValueError, match=field):
        task_records.load(task, source, limit=0 if field == "limit" else None)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no MMLU"):
        task_records.load("mcq-reasoning", str(tmp_path))


def test_every_task_is_declared_once_and_loads_by_its_id():
    from kick_hub import tasks

    for task in tasks.TASK_NAMES:
        assert tasks.get(task).SPEC is tasks.SPECS[task] and tasks.SPECS[task].id == task
        assert task_records.load(task, "world", limit=2)
