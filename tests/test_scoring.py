"""Scoring rules on hand-checked cases (the one source of truth every module and task calls)."""

import pytest

from kick_hub.scoring import mcq, qa, text

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)


@pytest.mark.parametrize("raw, expected", [
    ("The Beatles!", "beatles"),
    ("  an  apple_pie ", "apple pie"),
    ("Zürich", "zürich"),
    ("ＰＡＲＩＳ", "paris"),             # full-width folds under NFKC
    ("“Paris”, France.", "paris france"),  # Unicode quotes are punctuation
    ("", ""),
])
def test_normalize_answer(raw, expected):
    assert qa.normalize_answer(raw) == expected


def test_exact_match_uses_aliases_articles_and_punctuation():
    aliases = ["Paris", "City of Light"]
    assert qa.exact_match("paris.", aliases) == 1.0
    assert qa.exact_match("The City of Light", aliases) == 1.0
    assert qa.exact_match("Paris, France", aliases) == 0.0
    assert qa.exact_match("", aliases) == 0.0


def test_contains_needs_whole_tokens():
    assert qa.contains("I think it is Paris indeed", ["Paris"]) == 1.0
    assert qa.contains("Parisian food", ["Paris"]) == 0.0
    assert qa.contains("", ["Paris"]) == 0.0


def test_f1_partial_overlap():
    assert qa.f1("new york city", ["New York"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert qa.f1("boston", ["New York"]) == 0.0


def test_llm_kick_factoid_rule_matches_inside_prompt():
    # the original counted an answer that appears anywhere in the decoded text, prompt included
    text_with_prompt = "Please give answer to this question: Who wrote Hamlet?\nThe answer is Marlowe"
    assert qa.llm_kick_factoid_hit(text_with_prompt, ["Hamlet"]) == 1.0
    assert qa.llm_kick_factoid_hit("The answer is New York", ["newyork"]) == 1.0
    assert qa.score_factoid(["Marlowe"], [["Hamlet"]])["exact_match"] == 0.0


def test_llm_kick_lenient_em_rule():
    assert qa.llm_kick_lenient_em("Paris France", ["Paris"]) == 1.0
    assert qa.llm_kick_lenient_em("Paris", ["Paris France"]) == 1.0
    assert qa.llm_kick_lenient_em("Lyon", ["Paris"]) == 0.0
    # an empty prediction is a substring of every alias, but saying nothing is never a hit
    assert qa.llm_kick_lenient_em("", ["Paris"]) == 0.0
    assert qa.score_icra([""], [["Paris"]], protocol="llm-kick")["exact_match"] == 0.0


def test_score_factoid_and_icra_values():
    out = qa.score_factoid(["Paris.", "Lyon", "in Paris"], [["Paris"], ["Nice"], ["Paris"]])
    assert out["exact_match"] == pytest.approx(1 / 3)
    assert out["contains"] == pytest.approx(2 / 3)
    out = qa.score_icra(["new york city", "Boston"], [["New York"], ["boston"]])
    assert out["exact_match"] == 0.5
    assert out["f1"] == pytest.approx((0.8 + 1.0) / 2)


@pytest.mark.parametrize("preds, refs, field", [
    (["a"], [["a"], ["b"]], "predictions/references"),
    ([], [], "predictions"),
    ("abc", [["a"]], "predictions"),
    (["a"], ["a"], "references"),
    (["a"], [[]], "references"),
])
def test_qa_bad_input_names_field(preds, refs, field):
    with pytest.raises(ValueError, match=field):
        qa.score_factoid(preds, refs)


def test_unknown_protocol():
    with pytest.raises(ValueError, match=r"protocol: must be one of \['default', 'llm-kick'\]"):
        qa.score_icra(["a"], [["a"]], protocol="strict")


def test_mcq_accuracy_tables_and_invalid():
    out = mcq.score_mcq(["A", "b", "", "D"], ["A", "B", "C", "A"],
                        ["anatomy", "high school physics", "anatomy", "birthplace"])
    assert out["accuracy"] == 0.5
    assert out["invalid"] == 1
    assert out["per_subject"]["anatomy"] == {"accuracy": 0.5, "n": 2}
    assert out["per_category"]["STEM"] == {"accuracy": 1.0, "n": 1}
    assert out["per_category"]["world knowledge"] == {"accuracy": 0.0, "n": 1}
    assert set(mcq.SUBJECT_SUBCATEGORY) >= {"abstract_algebra", "world_religions"}
    assert len([s for s, c in mcq.SUBJECT_SUBCATEGORY.items() if c != "world"]) == 57


def test_mcq_extract_letter_and_bad_input():
    assert mcq.extract_letter(" B") == "B"
    assert mcq.extract_letter("Answer: c") == "C"
    assert mcq.extract_letter(" 7") == ""
    with pytest.raises(ValueError, match=r"references: .*\['A', 'B', 'C', 'D'\]"):
        mcq.score_mcq(["A"], ["E"])
    with pytest.raises(ValueError, match="subjects"):
        mcq.score_mcq(["A"], ["A"], ["x", "y"])


def test_rouge_and_diversity():
    assert text.rouge(["the cat sat"], ["the cat sat"])["rougeL"] == pytest.approx(1.0)
    assert text.rouge(["dogs run"], ["the cat sat"])["rouge1"] == 0.0
    assert text.distinct_n(["a a a a"], 1) == 0.25
    assert text.distinct_n([""], 2) == 0.0
    div = text.diversity(["a b", "a c"])
    assert div["unique_tokens"] == 3 and div["mean_length"] == 2 and div["distinct_2"] == 1.0
