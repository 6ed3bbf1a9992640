"""The judge: real HTTP round trips to a local OpenAI-compatible server, honest parsing, secret handling."""

import logging

import pytest

from kick_hub.scoring.judge import ChatCompletionsBackend, Judge, load_prompt, make_backend
from tests.chat_server import ChatServer

SECRET = "sk-test-secret-123"


def test_pairwise_judge_over_http(monkeypatch, caplog):
    monkeypatch.setenv("KICK_TEST_JUDGE_KEY", SECRET)
    replies = ["8 6\nAssistant 1 is more detailed.", "I cannot decide.", "7 9\nThe second is better."]
    caplog.set_level(logging.DEBUG)
    with ChatServer(replies) as server:
        backend = ChatCompletionsBackend(server.url, "judge-model", api_key_env="KICK_TEST_JUDGE_KEY")
        result = Judge(backend, "pairwise-v1").score(["q1", "q2", "q3"], ["a1", "a2", "a3"], ["r1", "r2", "r3"])
    assert result.unparsable == 1
    assert result.per_example[1] is None
    assert result.means == {"reference": 7.5, "answer": 7.5}
    body = server.requests[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0
    assert "[The Start of Assistant 2's Answer]\na1" in body["messages"][1]["content"]
    assert server.auth[0] == f"Bearer {SECRET}"
    assert SECRET not in repr(backend) and SECRET not in caplog.text and SECRET not in str(result)


def test_summary_judge_per_criterion_and_out_of_range():
    replies = ["coherence: 8\nconsistency: 9\nfluency: 7\nrelevance: 6", "coherence: 11\nconsistency: 9\n"
               "fluency: 7\nrelevance: 6"]
    with ChatServer(replies) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "m"), "summary-v1")
        result = judge.score(["story one", "story two"], ["sum one", "sum two"])
    assert result.means == {"coherence": 8.0, "consistency": 9.0, "fluency": 7.0, "relevance": 6.0}
    assert result.unparsable == 1  # 11 is outside 1-10: reported, never scored


def test_single_answer_prompt_parses_rating():
    judge = Judge(backend=None, prompt="single-v1")
    assert judge.parse("Good answer. Rating: [[7]]") == {"answer": 7.0}
    assert judge.parse("Rating: 7") is None


def test_instruction_task_with_judge(world_engine):
    from kick_hub.tasks import instruction_following

    records = [{"id": 1, "category": "x", "question": "Tell me about the city of Kelford.", "reference": "It is."}]
    with ChatServer(["6 4\nok"]) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "m"), "pairwise-v1")
        scores, samples = instruction_following.run(world_engine, records, judge=judge)
    assert scores["judge_answer"] == 4.0 and scores["judge_relative"] == pytest.approx(4 / 6)
    assert samples[0]["judge"] == {"reference": 6.0, "answer": 4.0}


@pytest.mark.parametrize("spec, field", [("gpt4", "judge"), ("ollama:llama", "judge"), ("openai:gpt-4", "base_url")])
def test_bad_backend_specs(spec, field):
    with pytest.raises(ValueError, match=field):
        make_backend(spec)


def test_unknown_prompt_lists_allowed():
    with pytest.raises(ValueError, match=r"pairwise-v1.*single-v1.*summary-v1"):
        load_prompt("fancy-v9")


def test_pairwise_needs_references():
    with pytest.raises(ValueError, match="references"):
        Judge(backend=None, prompt="pairwise-v1").score(["q"], ["a"])


def test_transformers_backend_counts_unparsable_replies():
    """The local backend runs a real chat model (the world model, which cannot judge): every reply is generated,
    none parses, and nothing is turned into a number."""
    from kick_hub.scoring.judge import TransformersBackend

    assert isinstance(make_backend("transformers:world"), TransformersBackend)
    backend = TransformersBackend("world", max_new_tokens=64)  # prompt + reply fit the world model's 512 tokens
    result = Judge(backend, "single-v1").score(["Describe Kelford."], ["Kelford is a city."])
    assert result.replies[0] and result.unparsable == 1 and result.means == {}


def test_make_judges_one_backend_for_the_judged_tasks():
    """``--judge``: None without a spec; with one, a judge per task that has a judge prompt, sharing one backend."""
    from kick_hub.scoring.judge import make_judges

    assert make_judges(None, ["icsum"]) is None
    url = "http://127.0.0.1:9/v1"  # no request is made: judges are only built
    judges = make_judges("openai:m", ["factoid-qa", "icsum", "instruction-following"], url)
    assert sorted(judges) == ["icsum", "instruction-following"]
    assert judges["icsum"].backend is judges["instruction-following"].backend
    assert judges["icsum"].prompt["name"] == "summary-v1"
    assert make_judges("openai:m", ["icsum"], url, prompt="single-v1")["icsum"].prompt["name"] == "single-v1"
    with pytest.raises(ValueError, match="base_url"):
        make_judges("openai:m", ["icsum"])
