"""Loaders on malformed inputs: every row is read as the format says or refused naming file, row/line/key and the
allowed values; nothing is dropped or misread silently. Small files are built in tmp_path."""

import csv
import json
import warnings

import pytest

from kick_hub import data
from kick_hub.data import DataWarning
from kick_hub.tasks import records as task_records

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)

FRUIT = ["Which is a fruit?", "Apple", "Rock", "Nail", "Sand", "A"]


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def mmlu(root, test_rows, dev_rows=None, subject="fruit"):
    write_csv(root / "test" / f"{subject}_test.csv", test_rows)
    if dev_rows is not None:
        write_csv(root / "dev" / f"{subject}_dev.csv", dev_rows)
    return root


def shots(n):
    return [[f"Dev question {i}?", "w", "x", "y", "z", "ABCD"[i % 4]] for i in range(n)]


# ---------------------------------------------------------------------- MMLU
def test_mmlu_missing_dev_file_runs_zero_shot_recorded_and_warned(tmp_path):
    mmlu(tmp_path, [FRUIT], shots(5), subject="fruit")
    mmlu(tmp_path, [FRUIT], None, subject="rocks")
    with pytest.warns(DataWarning, match=r"1 of 2 subjects.*rocks: 0 \(.*rocks_dev\.csv is missing\)"):
        records = task_records.load("mcq-reasoning", str(tmp_path))
    by_subject = {r["subject"]: r for r in records}
    assert by_subject["rocks"]["shots_available"] == 0 and by_subject["rocks"]["fewshot"] == []
    assert by_subject["fruit"]["shots_available"] == 5 and len(by_subject["fruit"]["fewshot"]) == 5


def test_mmlu_without_dev_folder_warns_for_every_subject(tmp_path):
    mmlu(tmp_path, [FRUIT], None)
    with pytest.warns(DataWarning, match=r"1 of 1 subjects.*fruit: 0"):
        [record] = task_records.load("mcq-reasoning", str(tmp_path))
    assert record["shots_available"] == 0


def test_mmlu_short_dev_file_records_its_shots(tmp_path):
    mmlu(tmp_path, [FRUIT], shots(2))
    with pytest.warns(DataWarning, match=r"fruit: 2 \(.*fruit_dev\.csv is short\)"):
        [record] = task_records.load("mcq-reasoning", str(tmp_path))
    assert record["shots_available"] == 2 and [s["answer"] for s in record["fewshot"]] == ["A", "B"]


def test_mmlu_full_dev_file_gives_no_warning(tmp_path):
    mmlu(tmp_path, [FRUIT], shots(7))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        [record] = task_records.load("mcq-reasoning", str(tmp_path))
    assert record["shots_available"] == 5 and len(record["fewshot"]) == 5


def test_mmlu_three_option_row_is_refused_with_file_and_row(tmp_path):
    mmlu(tmp_path, [FRUIT, ["Which is a fruit?", "Apple", "Rock", "Nail", "A"]], shots(5))
    with pytest.raises(ValueError, match=r"fruit_test\.csv row 2: must have 6 fields .* got 5"):
        task_records.load("mcq-reasoning", str(tmp_path))


@pytest.mark.parametrize("raw, letter", [("b", "B"), (" b ", "B"), ("D\t", "D"), ("a", "A")])
def test_mmlu_answer_letter_case_and_spaces(tmp_path, raw, letter):
    mmlu(tmp_path, [FRUIT[:5] + [raw]], shots(5))
    [record] = task_records.load("mcq-reasoning", str(tmp_path))
    assert record["answer"] == letter


@pytest.mark.parametrize("raw", ["E", "", "1", "AB", "answer"])
def test_mmlu_answer_outside_a_to_d_is_refused_before_any_model(tmp_path, raw):
    mmlu(tmp_path, [FRUIT, FRUIT[:5] + [raw]], shots(5))
    with pytest.raises(ValueError, match=r"answer: .*fruit_test\.csv row 2: must be one of A, B, C, D") as err:
        task_records.load("mcq-reasoning", str(tmp_path))
    assert repr(raw) in str(err.value)


def test_mmlu_bad_dev_row_is_refused_naming_the_dev_file(tmp_path):
    mmlu(tmp_path, [FRUIT], shots(4) + [["Q?", "w", "x", "y", "z", "F"]])
    with pytest.raises(ValueError, match=r"fruit_dev\.csv row 5"):
        task_records.load("mcq-reasoning", str(tmp_path))


@pytest.mark.parametrize("row, message", [
    (["", "Apple", "Rock", "Nail", "Sand", "A"], r"question: .*row 1: is empty"),
    (["Which?", "Apple", " ", "Nail", "Sand", "A"], r"options: .*row 1: option B is empty"),
    (FRUIT + ["extra"], r"row 1: must have 6 fields .* got 7"),
])
def test_mmlu_empty_fields_are_refused(tmp_path, row, message):
    mmlu(tmp_path, [row], shots(5))
    with pytest.raises(ValueError, match=message):
        task_records.load("mcq-reasoning", str(tmp_path))


def test_mmlu_bom_blank_lines_and_quoted_newlines(tmp_path):
    test = tmp_path / "test" / "fruit_test.csv"
    test.parent.mkdir(parents=True)
    test.write_bytes("\ufeffWhich is a fruit?,Apple,Rock,Nail,Sand,a\r\n\r\n\"Two\nlines?\",w,x,y,z,c\r\n"
                     .encode("utf-8"))
    write_csv(tmp_path / "dev" / "fruit_dev.csv", shots(5))
    records = task_records.load("mcq-reasoning", str(tmp_path))
    assert [(r["question"], r["answer"]) for r in records] == [("Which is a fruit?", "A"), ("Two\nlines?", "C")]
    assert [r["id"] for r in records] == ["fruit-test-0", "fruit-test-2"]


def test_mmlu_non_utf8_file_is_refused_naming_it(tmp_path):
    test = tmp_path / "test" / "fruit_test.csv"
    test.parent.mkdir(parents=True)
    test.write_bytes("Which is a fruit: café?,Apple,Rock,Nail,Sand,A\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"fruit_test\.csv is not UTF-8 text \(byte 21"):
        task_records.load("mcq-reasoning", str(tmp_path))


def test_mmlu_empty_test_file_is_refused(tmp_path):
    mmlu(tmp_path, [], shots(5))
    with pytest.raises(ValueError, match=r"fruit_test\.csv holds no MMLU rows"):
        task_records.load("mcq-reasoning", str(tmp_path))


# ---------------------------------------------------------------- FreebaseQA
@pytest.mark.parametrize("line, message", [
    ("Who wrote Hamlet? shakespeare", r"line 2: must be 'question \| answer'"),
    ("Who wrote Hamlet? | ", r"answer: .*line 2: is empty"),
    (" | shakespeare", r"question: .*line 2: is empty"),
])
def test_freebaseqa_txt_bad_lines_are_refused(tmp_path, line, message):
    f = tmp_path / "FreebaseQA-eval.txt"
    f.write_text(f"Capital of France? | paris\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        task_records.load("factoid-qa", str(f))
    assert "FreebaseQA-eval.txt" in str(err.value)


def test_freebaseqa_txt_bom_and_blank_lines(tmp_path):
    f = tmp_path / "FreebaseQA-eval.txt"
    f.write_bytes("\ufeffCapital of France? | paris\n\nA | B | c\n".encode("utf-8"))
    records = task_records.load("factoid-qa", str(f))
    assert records == [{"id": "FreebaseQA-eval-0", "question": "Capital of France?", "answers": ["paris"]},
                       {"id": "FreebaseQA-eval-2", "question": "A | B", "answers": ["c"]}]


def fb_question(qid="q-0", raw="Who wrote Hamlet?", names=(("shakespeare",),)):
    return {"Question-ID": qid, "RawQuestion": raw,
            "Parses": [{"Answers": [{"AnswersMid": "m", "AnswersName": list(n)}]} for n in names]}


@pytest.mark.parametrize("payload, message", [
    ([fb_question()], r"Questions: .*must be a JSON object with a 'Questions' list"),
    ({"Questions": [fb_question(names=((),))]}, r"AnswersName: .*Questions\[0\]: question 'q-0' has no answer"),
    ({"Questions": [fb_question(names=())]}, r"AnswersName: .*Questions\[0\]: question 'q-0' has no answer"),
    ({"Questions": [fb_question(), fb_question()]}, r"Question-ID: .*Questions\[1\]: duplicate id 'q-0'"),
    ({"Questions": [fb_question(raw="  ")]}, r"RawQuestion: .*Questions\[0\]: must be a non-empty string"),
    ({"Questions": [{**fb_question(), "Parses": "x"}]}, r"Parses: .*Questions\[0\]: must be a list"),
    ({"Questions": [{**fb_question(), "Parses": [{"Answers": [{"AnswersName": "shakespeare"}]}]}]},
     r"AnswersName: .*Questions\[0\]: .*list of strings"),
    ({"Questions": []}, r"holds no questions"),
])
def test_freebaseqa_json_bad_shapes_are_refused(tmp_path, payload, message):
    f = tmp_path / "FreebaseQA-eval.json"
    f.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        task_records.load("factoid-qa", str(tmp_path))
    assert "FreebaseQA-eval.json" in str(err.value)


def test_freebaseqa_invalid_json_names_file_and_line(tmp_path):
    (tmp_path / "FreebaseQA-eval.json").write_text('{"Questions": [\n  {"Question-ID": }\n]}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"FreebaseQA-eval\.json line 2 column \d+: not valid JSON"):
        task_records.load("factoid-qa", str(tmp_path))


def test_freebaseqa_folder_with_several_files_is_refused(tmp_path):
    for split in ("dev", "eval"):
        (tmp_path / f"FreebaseQA-{split}.json").write_text(json.dumps({"Questions": [fb_question()]}))
    with pytest.raises(ValueError, match=r"holds 2 FreebaseQA files \(FreebaseQA-dev\.json, FreebaseQA-eval\.json\)"):
        task_records.load("factoid-qa", str(tmp_path))


def test_freebaseqa_hub_rows_give_answer_strings():
    """A Hub row stores Parses as columns and each parse's AnswersName as a list of name lists."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({
        "Question-ID": datasets.Value("string"), "RawQuestion": datasets.Value("string"),
        "Parses": datasets.Sequence({"Parse-Id": datasets.Value("string"), "Answers": datasets.Sequence(
            {"AnswersMid": datasets.Value("string"), "AnswersName": datasets.Sequence(datasets.Value("string"))})})})
    rows = datasets.Dataset.from_list([{"Question-ID": "q1", "RawQuestion": "Who wrote Hamlet?", "Parses": {
        "Parse-Id": ["p1", "p2"],
        "Answers": [{"AnswersMid": ["m1"], "AnswersName": [["william shakespeare", "shakespeare"]]},
                    {"AnswersMid": ["m1", "m2"], "AnswersName": [["shakespeare"], ["the bard"]]}]}}],
        features=features)
    [record] = task_records.hub_records("factoid-qa", rows, "freebase_qa", "train")
    assert record == {"id": "q1", "question": "Who wrote Hamlet?",
                      "answers": ["william shakespeare", "shakespeare", "the bard"]}


# ------------------------------------------------------------------ TriviaQA
def tqa(**overrides):
    rec = {"question": "Capital of France?", "question_id": "tc_1", "answer": {"value": "Paris", "aliases": []},
           "entity_pages": {"wiki_context": ["Paris is the capital of France."]},
           "search_results": {"search_context": []}}
    return {**rec, **overrides}


@pytest.mark.parametrize("record, message", [
    (tqa(answer=None), r"answer: .*line 1: must be an object with a 'value' string"),
    (tqa(answer={"value": "", "aliases": []}), r"answer: .*line 1: question 'tc_1' has no answer"),
    (tqa(answer={"value": "<unk>", "aliases": []}), r"answer: .*line 1: question 'tc_1' has no answer"),
    (tqa(answer={"value": "Paris", "aliases": "Paree"}), r"answer: .*line 1: .*'aliases' list of strings"),
    (tqa(question=""), r"question: .*line 1: must be a non-empty string"),
    (tqa(question_id=None), r"question_id: .*line 1: must be a non-empty string or an integer"),
    (tqa(entity_pages=[{"Filename": "Paris.txt"}]), r"entity_pages: .*line 1: must be an object whose 'wiki_context'"),
    (tqa(entity_pages={"wiki_context": []}), r"entity_pages: .*line 1: question 'tc_1' has no wiki_context and no "
                                              r"search_context"),
])
def test_triviaqa_bad_records_are_refused(tmp_path, record, message):
    f = tmp_path / "validation.jsonl"
    f.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        task_records.load("icra-qa", str(tmp_path))
    assert "validation.jsonl" in str(err.value)


@pytest.mark.parametrize("line, message", [("{not json", r"line 2: not valid JSON"),
                                           ("[1, 2]", r"line 2: must be a JSON object, got list")])
def test_triviaqa_bad_lines_are_refused(tmp_path, line, message):
    (tmp_path / "validation.jsonl").write_text(json.dumps(tqa()) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        task_records.load("icra-qa", str(tmp_path))


def test_triviaqa_repeated_question_is_kept_per_evidence_source(tmp_path):
    web = tqa(entity_pages={"wiki_context": []}, search_results={"search_context": ["Paris, France's capital."]})
    (tmp_path / "validation.jsonl").write_text(f"{json.dumps(tqa())}\n\n{json.dumps(web)}\n", encoding="utf-8")
    records = task_records.load("icra-qa", str(tmp_path))
    assert [(r["id"], r["context"]) for r in records] == [("tc_1", "Paris is the capital of France."),
                                                          ("tc_1", "Paris, France's capital.")]
    assert records[0]["answers"] == ["Paris"]


# ------------------------------------------------------------------- stories
GOOD_STORY = "First paragraph.\n\nSecond paragraph.\n\n@highlight\n\nFirst point\n\n@highlight\n\nSecond point.\n"


def test_story_without_highlights_is_refused_never_scored_against_a_dot(tmp_path):
    (tmp_path / "a.story").write_text(GOOD_STORY, encoding="utf-8")
    (tmp_path / "b.story").write_text("One paragraph.\n\nAnother paragraph.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"reference: .*b\.story has no @highlight lines"):
        task_records.load("icsum", str(tmp_path))


def test_story_with_highlights_but_no_article_is_refused(tmp_path):
    (tmp_path / "a.story").write_text("@highlight\n\nOnly a point\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"story: .*a\.story has no article text"):
        task_records.load("icsum", str(tmp_path))


def test_story_with_a_dangling_highlight_is_refused(tmp_path):
    (tmp_path / "a.story").write_text("Text.\n\n@highlight\n\nPoint one\n\n@highlight\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"reference: .*a\.story line 7: @highlight with no highlight text"):
        task_records.load("icsum", str(tmp_path))


def test_good_story_reads_exactly(tmp_path):
    (tmp_path / "a.story").write_bytes(("\ufeff" + GOOD_STORY).encode("utf-8"))
    [record] = task_records.load("icsum", str(tmp_path))
    assert record == {"id": "all/a", "bucket": "all", "story": "First paragraph.\n\nSecond paragraph.",
                      "reference": "First point. Second point."}
    assert data.parse_story("Only text.") == ("Only text.", "")


def test_loose_stories_beside_bucket_folders_are_refused(tmp_path):
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a.story").write_text(GOOD_STORY, encoding="utf-8")
    (tmp_path / "b.story").write_text(GOOD_STORY, encoding="utf-8")
    with pytest.raises(ValueError, match="holds both .story files and bucket folders"):
        task_records.load("icsum", str(tmp_path))


# -------------------------------------------------------------------- Vicuna
def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


QUESTIONS = [{"question_id": 1, "text": "How do I sleep better?", "category": "generic"},
             {"question_id": 2, "text": "Write a haiku.", "category": "writing"}]


def test_vicuna_question_without_reference_is_refused(tmp_path):
    jsonl(tmp_path / "question.jsonl", QUESTIONS)
    jsonl(tmp_path / "gpt35_answer.jsonl", [{"question_id": 1, "text": "Keep a schedule."}])
    with pytest.raises(ValueError, match=r"reference: .*gpt35_answer\.jsonl has no answer for question_id 2 "
                                         r"\(.*question\.jsonl line 2\)"):
        task_records.load("instruction-following", str(tmp_path))


@pytest.mark.parametrize("others, message", [((), r"found \[\]"),
                                             (("a.jsonl", "b.jsonl"), r"found \['a\.jsonl', 'b\.jsonl'\]")])
def test_vicuna_without_one_reference_file_is_refused(tmp_path, others, message):
    jsonl(tmp_path / "question.jsonl", QUESTIONS)
    for name in others:
        jsonl(tmp_path / name, [{"question_id": 1, "text": "x"}, {"question_id": 2, "text": "y"}])
    with pytest.raises(ValueError, match=r"reference: .*must hold reference_answer\.jsonl .*" + message):
        task_records.load("instruction-following", str(tmp_path))


@pytest.mark.parametrize("questions, answers, message", [
    (QUESTIONS + [QUESTIONS[0]], None, r"question_id: .*question\.jsonl line 3: duplicate id 1"),
    ([{"question_id": 1, "category": "x"}], None, r"text: .*question\.jsonl line 1: must hold a non-empty 'text'"),
    ([{"question_id": 1, "text": ""}], None, r"text: .*question\.jsonl line 1: must be a non-empty string"),
    ([{"text": "Hi?"}], None, r"question_id: .*question\.jsonl line 1: must be a non-empty string or an integer"),
    (QUESTIONS, [{"question_id": 1, "text": "a"}, {"question_id": 1, "text": "b"}],
     r"question_id: .*reference_answer\.jsonl line 2: duplicate id 1"),
    (QUESTIONS, [{"question_id": 1, "text": "   "}], r"text: .*reference_answer\.jsonl line 1"),
])
def test_vicuna_bad_lines_are_refused(tmp_path, questions, answers, message):
    jsonl(tmp_path / "question.jsonl", questions)
    jsonl(tmp_path / "reference_answer.jsonl", answers or [{"question_id": 1, "text": "a"},
                                                           {"question_id": 2, "text": "b"}])
    with pytest.raises(ValueError, match=message):
        task_records.load("instruction-following", str(tmp_path))


def test_vicuna_reads_mt_bench_format(tmp_path):
    jsonl(tmp_path / "question.jsonl", [{"question_id": 81, "category": "writing", "turns": ["Plan a trip.", "More"]}])
    jsonl(tmp_path / "reference_answer.jsonl", [{"question_id": 81, "choices": [{"index": 0, "turns": ["Go."]}]}])
    assert task_records.load("instruction-following", str(tmp_path)) == [
        {"id": 81, "category": "writing", "question": "Plan a trip.", "reference": "Go."}]


# ---------------------------------------------------------------- perplexity
def test_perplexity_empty_text_file_is_refused_naming_it(tmp_path):
    (tmp_path / "a.txt").write_text("One line.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b\.txt holds no text \(only blank lines\)"):
        task_records.load("perplexity", str(tmp_path))


def test_perplexity_story_without_article_is_refused(tmp_path):
    (tmp_path / "a.story").write_text(GOOD_STORY, encoding="utf-8")
    (tmp_path / "b.story").write_text("@highlight\n\nOnly a point\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"story: .*b\.story has no article text"):
        task_records.load("perplexity", str(tmp_path))


def test_perplexity_text_bom_and_blank_lines(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffFirst line.\n\n Second line.\n".encode("utf-8"))
    assert task_records.load("perplexity", str(tmp_path)) == [{"id": "line-0", "text": "First line."},
                                                      {"id": "line-1", "text": " Second line."}]


# ------------------------------------------------------------ Hub conversion
def mmlu_row(subject="fruit", answer=0, choices=("Apple", "Rock", "Nail", "Sand")):
    return {"subject": subject, "question": "Which is a fruit?", "choices": list(choices), "answer": answer}


@pytest.mark.parametrize("row, message", [
    (mmlu_row(answer=4), r"answer: cais/mmlu \(test\) row 0: must be one of A, B, C, D .* got 4"),
    (mmlu_row(answer=-1), r"answer: cais/mmlu \(test\) row 0: .* got -1"),
    (mmlu_row(choices=("Apple", "Rock", "Nail")), r"choices: cais/mmlu \(test\) row 0: must be 4 non-empty"),
    (mmlu_row(subject=""), r"subject: cais/mmlu \(test\) row 0"),
])
def test_hub_mmlu_bad_rows_are_refused(row, message):
    with pytest.raises(ValueError, match=message):
        task_records.hub_records("mcq-reasoning", [row], "cais/mmlu", "test", [mmlu_row()] * 5)


def test_hub_mmlu_records_shots_and_warns_for_subjects_without_dev_rows():
    rows = [mmlu_row(answer=2), mmlu_row(subject="rocks", answer=3)]
    with pytest.warns(DataWarning, match=r"1 subjects of cais/mmlu .*: rocks: 0"):
        records = task_records.hub_records("mcq-reasoning", rows, "cais/mmlu", "test", [mmlu_row()] * 5)
    assert [(r["id"], r["answer"], r["shots_available"]) for r in records] == [("fruit-0", "C", 5), ("rocks-1", "D", 0)]


def test_load_hub_wires_the_dev_split(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return [mmlu_row(answer=1)] * (5 if split == "dev" else 1)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    [record] = task_records.load("mcq-reasoning", "hub")
    assert calls == [("cais/mmlu", "all", "test"), ("cais/mmlu", "all", "dev")]
    assert record["answer"] == "B" and record["shots_available"] == 5


@pytest.mark.parametrize("task, row, message", [
    ("icsum", {"id": "x", "article": "Text.", "highlights": ""}, r"highlights: cnn \(test\) row 0"),
    ("icsum", {"id": "x", "article": " ", "highlights": "Point."}, r"article: cnn \(test\) row 0"),
    ("perplexity", {"text": None}, r"text: cnn \(test\) row 0: must be a string"),
    ("icra-qa", tqa(answer={"value": "<unk>", "aliases": []}), r"answer: cnn \(test\) row 0: .* has no answer"),
    ("factoid-qa", {"Question-ID": "q", "RawQuestion": "Who?", "Parses": {"Answers": []}},
     r"AnswersName: cnn \(test\) row 0: question 'q' has no answer"),
])
def test_hub_rows_are_checked(task, row, message):
    with pytest.raises(ValueError, match=message):
        task_records.hub_records(task, [row], "cnn", "test")


def test_hub_icsum_duplicate_ids_and_wikitext_blank_lines():
    row = {"id": "x", "article": "Text.", "highlights": "Point."}
    with pytest.raises(ValueError, match=r"id: cnn \(test\) row 1: duplicate id 'x'"):
        task_records.hub_records("icsum", [row, row], "cnn", "test")
    texts = task_records.hub_records("perplexity", [{"text": ""}, {"text": " = Title = \n"}, {"text": "Body.\n"}],
                                     "wiki", "test")
    assert texts == [{"id": "line-1", "text": " = Title = \n"}, {"id": "line-2", "text": "Body.\n"}]


# ------------------------------------------------------------ real data
def test_real_samples_load_without_warnings(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        mcq = task_records.load("mcq-reasoning", str(shared_data))
        stories = task_records.load("icsum", str(shared_data))
    assert {r["shots_available"] for r in mcq} == {5}
    assert all(r["reference"] and r["reference"] != "." and r["story"] for r in stories)
