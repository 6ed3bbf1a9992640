"""Judge reply parsing: every shipped prompt against replies that quote their scale, write 8/10, decimals, [[8]],
put scores on separate lines, or give out-of-range numbers (unparsable, never clamped)."""

import json

import pytest

from kick_hub.scoring.judge import prompts as judge_prompts
from kick_hub.scoring.judge import Judge, load_prompt, parse_reply

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)

SUMMARY_TAIL = "\nConsistency: 9\nFluency: 7\nRelevance: 6"


def summary(coherence: float, consistency: float = 9.0, fluency: float = 7.0, relevance: float = 6.0) -> dict:
    return {"coherence": coherence, "consistency": consistency, "fluency": fluency, "relevance": relevance}


@pytest.mark.parametrize("reply, expected", [
    ("Coherence (1-10): 8\nConsistency (1-10): 9\nFluency (1-10): 9\nRelevance (1-10): 7", summary(8, 9, 9, 7)),
    ("coherence: 8\nconsistency: 9\nfluency: 7\nrelevance: 6", summary(8)),
    ("Coherence: 8/10\nConsistency: 9/10\nFluency: 9 out of 10\nRelevance: 7/10", summary(8, 9, 9, 7)),
    ("Coherence: 7.5\nConsistency: 9.0\nFluency: 8.5\nRelevance: 7", summary(7.5, 9, 8.5, 7)),
    ("Coherence: [[8]]\nConsistency: [[9]]\nFluency: [[9]]\nRelevance: [[7]]", summary(8, 9, 9, 7)),
    ("Coherence:\n8\nConsistency:\n9\nFluency:\n9\nRelevance:\n7", summary(8, 9, 9, 7)),
    ("Coherence (1-10):\n8/10" + SUMMARY_TAIL, summary(8)),
    ("**Coherence (1-10):** 8\n**Consistency:** 9\n- **Fluency**: 9\n| Relevance | 7 |", summary(8, 9, 9, 7)),
    ("Coherence on a scale of 1 to 10: 8" + SUMMARY_TAIL, summary(8)),
    ("Coherence: 8, Consistency: 9, Fluency: 7, Relevance: 6.", summary(8)),
    ("The coherence is fine. Coherence score: 8 - well organised" + SUMMARY_TAIL, summary(8)),
    ("Coherence: 10\nConsistency: 10/10\nFluency: 1\nRelevance: 1.0", summary(10, 10, 1, 1)),
    ("coherence: 8\nconsistency: 9\nfluency: 7\nrelevancy: 6", summary(8)),
    # unparsable: out of range, another scale, ambiguous, a list item under the label, a range, a percentage
    ("coherence: 11" + SUMMARY_TAIL, None),
    ("coherence: 0" + SUMMARY_TAIL, None),
    ("coherence: -1" + SUMMARY_TAIL, None),
    ("coherence: 9/5" + SUMMARY_TAIL, None),
    ("Coherence (1-5): 4" + SUMMARY_TAIL, None),
    ("Coherence: 8" + SUMMARY_TAIL + "\nOn reflection, coherence: 6", None),
    ("Coherence:\n1. The summary is clear" + SUMMARY_TAIL, None),
    ("Coherence: 7-8" + SUMMARY_TAIL, None),
    ("Coherence: 80%" + SUMMARY_TAIL, None),
    ("Coherence: 8 because it flows" + SUMMARY_TAIL, None),
    ("Consistency: 9\nFluency: 7\nRelevance: 6", None),
    ("coherence: <score>\nconsistency: <score>\nfluency: <score>\nrelevance: <score>", None),
])
def test_summary_prompt(reply, expected):
    assert Judge(backend=None, prompt="summary-v1").parse(reply) == expected


@pytest.mark.parametrize("reply, expected", [
    ("8 6\nAssistant 1 is more detailed.", (8, 6)),
    ("8, 6\n", (8, 6)),
    ("8/10 6/10\nexplanation", (8, 6)),
    ("7.5 9\nexplanation", (7.5, 9)),
    ("[[8]] [[6]]\nexplanation", (8, 6)),
    ("\n**8 6**\nexplanation", (8, 6)),
    ("8\n6\nexplanation", (8, 6)),
    ("Scores (1-10): 8 6\nexplanation", (8, 6)),
    ("Assistant 1: 8\nAssistant 2: 6\nexplanation", (8, 6)),
    ("Assistant 1 (1-10): 8/10\nAssistant 2 (1-10): 6/10", (8, 6)),
    ("10 1\n", (10, 1)),
    ("11 6\nexplanation", None),
    ("0 6\nexplanation", None),
    ("-1 6\nexplanation", None),
    ("8 6 7\nexplanation", None),
    ("1-10 8 6\nexplanation", None),
    ("Scores (1-5): 4 3\nexplanation", None),
    ("Assistant 1: 3 paragraphs. Assistant 2: 2 paragraphs.", None),
    ("I cannot decide.", None),
    ("", None),
])
def test_pairwise_prompt(reply, expected):
    parsed = Judge(backend=None, prompt="pairwise-v1").parse(reply)
    assert parsed == (None if expected is None else {"reference": expected[0], "answer": expected[1]})


@pytest.mark.parametrize("reply, expected", [
    ("Good answer. Rating: [[7]]", 7.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [[8/10]]", 8.0),
    ("Rating (1-10): [[8]]", 8.0),
    ('Following the format "[[rating]]" on [[1-10]]: [[8]]', 8.0),
    ("Rating: [[8]]\nSo, once more: [[8]].", 8.0),
    ("Rating: 7", None),
    ("Rating: [[11]]", None),
    ("Rating: [[0]]", None),
    ("Rating: [[-1]]", None),
    ("Rating: [[8/5]]", None),
    ('As in the example "Rating: [[5]]", mine is [[8]]', None),
])
def test_single_answer_prompt(reply, expected):
    parsed = Judge(backend=None, prompt="single-v1").parse(reply)
    assert parsed == (None if expected is None else {"answer": expected})


class Replies:
    """A backend that answers from a list."""

    name = "stub"

    def __init__(self, replies: list[str]) -> None:
        self.replies = iter(replies)

    def complete(self, system: str, user: str) -> str:
        return next(self.replies)


def test_quoted_scale_is_never_averaged_as_the_score():
    replies = ["Coherence (1-10): 8\nConsistency (1-10): 9\nFluency (1-10): 9\nRelevance (1-10): 7",
               "Coherence (1-10): 11\nConsistency (1-10): 9\nFluency (1-10): 9\nRelevance (1-10): 7"]
    result = Judge(Replies(replies), "summary-v1").score(["s1", "s2"], ["a1", "a2"])
    assert result.means == {"coherence": 8.0, "consistency": 9.0, "fluency": 9.0, "relevance": 7.0}
    assert result.unparsable == 1 and result.per_example[1] is None


def test_every_shipped_prompt_has_a_valid_parse_block():
    names = sorted(p.stem for p in judge_prompts.PROMPT_DIR.glob("*.json"))
    assert names == ["pairwise-v1", "single-v1", "summary-v1"]
    formats = {name: load_prompt(name)["parse"]["format"] for name in names}
    assert formats == {"pairwise-v1": "first-line", "single-v1": "bracketed", "summary-v1": "labelled"}


@pytest.mark.parametrize("parse, message", [
    ("coherence\\W+(?P<coherence>\\d+)", "parse.format must be one of"),
    ({"format": "regex", "criteria": {"x": ["x"]}}, "parse.format must be one of"),
    ({"format": "labelled", "criteria": {}}, "parse.criteria must map"),
    ({"format": "labelled", "criteria": {"x": []}}, "needs at least one label"),
    ({"format": "bracketed", "criteria": {"a": [], "b": []}}, "exactly one criterion"),
])
def test_broken_prompt_file_is_refused_naming_it(tmp_path, monkeypatch, parse, message):
    (tmp_path / "bad-v1.json").write_text(json.dumps({"name": "bad-v1", "system": "s", "template": "{answer}",
                                                      "parse": parse}))
    monkeypatch.setattr(judge_prompts, "PROMPT_DIR", tmp_path)  # where load_prompt reads
    with pytest.raises(ValueError, match=message) as err:
        load_prompt("bad-v1")
    assert "bad-v1.json" in str(err.value)


def test_parse_reply_is_usable_without_a_judge():
    block = {"format": "labelled", "criteria": {"helpfulness": ["helpfulness", "helpful"]}}
    assert parse_reply("Helpfulness (1-10): 6/10", block) == {"helpfulness": 6.0}
    assert parse_reply("Helpfulness (1-10)", block) is None
