"""The judge: real HTTP round trips to a local OpenAI-compatible server, honest parsing, secret handling, both
orders of a pairwise question, the local (transformers) backend."""

import logging

import pytest

from kick_hub.scoring.judge import ChatCompletionsBackend, Judge, load_prompt, make_backend
from tests.chat_server import ChatServer

SECRET = "sk-test-secret-123"


@pytest.fixture(autouse=True)
def judge_key(monkeypatch):
    """The openai backend refuses to start without its key variable; these tests use OPENAI_API_KEY."""
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")


def test_pairwise_judge_over_http(monkeypatch, caplog):
    """Each example is asked twice, reference first then answer first (concurrency 1 keeps the scripted replies in
    that order); the second order's scores are mapped back to the record's sides before averaging."""
    monkeypatch.setenv("KICK_TEST_JUDGE_KEY", SECRET)
    replies = ["8 6\nAssistant 1 is more detailed.", "6 8\nSame, swapped.",  # q1: agrees with itself
               "I cannot decide.", "5 5",                                    # q2: one order unparsable
               "7 9\nThe second is better.", "5 9\nThe second is better."]  # q3: prefers the answer, then the ref
    caplog.set_level(logging.DEBUG)
    with ChatServer(replies) as server:
        backend = ChatCompletionsBackend(server.url, "judge-model", api_key_env="KICK_TEST_JUDGE_KEY", concurrency=1)
        result = Judge(backend, "pairwise-v1").score(["q1", "q2", "q3"], ["a1", "a2", "a3"], ["r1", "r2", "r3"])
    assert result.unparsable == 1 and result.usage.unparsable_replies == 1
    assert result.per_example == [{"reference": 8.0, "answer": 6.0}, None, {"reference": 8.0, "answer": 7.0}]
    assert result.orders[2] == [{"reference": 7.0, "answer": 9.0}, {"reference": 9.0, "answer": 5.0}]
    assert result.means == {"reference": 8.0, "answer": 6.5}
    assert (result.usage.compared, result.usage.disagreements) == (2, 1)  # q3 changed its mind with the order
    assert result.scores() == {"judge_reference": 8.0, "judge_answer": 6.5, "judge_relative": 6.5 / 8,
                               "judge_unparsable": 1, "judge_order_disagreement": 0.5}
    assert result.replies[1] == ["I cannot decide.", "5 5"]
    body = server.requests[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0
    assert "[The Start of Assistant 1's Answer]\nr1" in server.user_texts()[0]
    assert "[The Start of Assistant 1's Answer]\na1" in server.user_texts()[1]  # the swapped order
    assert server.auth[0] == f"Bearer {SECRET}"
    assert SECRET not in repr(backend) and SECRET not in caplog.text and SECRET not in str(result)


@pytest.mark.unit
def test_summary_judge_per_criterion_and_out_of_range():
    replies = ["coherence: 8\nconsistency: 9\nfluency: 7\nrelevance: 6", "coherence: 11\nconsistency: 9\n"
               "fluency: 7\nrelevance: 6"]
    with ChatServer(replies) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "m", concurrency=1), "summary-v1")
        result = judge.score(["story one", "story two"], ["sum one", "sum two"])
    assert result.means == {"coherence": 8.0, "consistency": 9.0, "fluency": 7.0, "relevance": 6.0}
    assert result.unparsable == 1  # 11 is outside 1-10: reported, never scored
    assert result.order_names == ("single",) and len(server.requests) == 2  # one order for a single-answer prompt
    words = len(judge.prompt["system"].split()) + len(judge.render("story two", "sum two", None).split())
    assert words == 94  # the server counts words as tokens
    assert result.sample(1) == {"judge": None, "judge_replies": [replies[1]],
                                "judge_usage": {"requests": 1, "cache_hits": 0, "prompt_tokens": words,
                                                "completion_tokens": 8,
                                                "seconds": result.example_usage[1]["seconds"]}}


@pytest.mark.unit
def test_single_answer_prompt_parses_rating():
    judge = Judge(backend=None, prompt="single-v1")
    assert judge.parse("Good answer. Rating: [[7]]") == {"answer": 7.0}
    assert judge.parse("Rating: 7") is None


def test_instruction_task_with_judge(world_engine):
    """A judge that always says "6 4" prefers whichever answer comes first: averaged over the two orders both sides
    get 5, and the task reports that the orders disagreed on the one example."""
    from kick_hub.tasks import instruction_following

    records = [{"id": 1, "category": "x", "question": "Tell me about the city of Kelford.", "reference": "It is."}]
    with ChatServer(["6 4\nok"]) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "m"), "pairwise-v1")
        scores, samples = instruction_following.run(world_engine, records, judge=judge)
    assert len(server.requests) == 2
    assert scores["judge_answer"] == 5.0 and scores["judge_reference"] == 5.0 and scores["judge_relative"] == 1.0
    assert scores["judge_order_disagreement"] == 1.0 and scores["judge_unparsable"] == 0
    assert samples[0]["judge"] == {"reference": 5.0, "answer": 5.0}
    assert samples[0]["judge_orders"] == {"reference-first": {"reference": 6.0, "answer": 4.0},
                                          "answer-first": {"reference": 4.0, "answer": 6.0}}
    assert samples[0]["judge_replies"] == ["6 4\nok", "6 4\nok"]
    assert samples[0]["judge_usage"]["requests"] == 2 and samples[0]["judge_usage"]["completion_tokens"] == 6


@pytest.mark.unit
@pytest.mark.parametrize("spec, field", [("gpt4", "judge"), ("ollama:llama", "judge"),
                                         ("openai:gpt-4", "judge-base-url")])
def test_bad_backend_specs(spec, field):
    with pytest.raises(ValueError, match=field):
        make_backend(spec)


@pytest.mark.unit
def test_openai_backend_refuses_bad_options(monkeypatch):
    monkeypatch.delenv("KICK_TEST_NO_KEY", raising=False)
    url = "http://127.0.0.1:9/v1"
    with pytest.raises(ValueError, match="KICK_TEST_NO_KEY"):
        make_backend("openai:m", url, api_key_env="KICK_TEST_NO_KEY")
    with pytest.raises(ValueError, match="judge-base-url"):
        make_backend("openai:m", "ftp://127.0.0.1/v1")
    with pytest.raises(ValueError, match="judge-concurrency"):
        make_backend("openai:m", url, concurrency=0)
    with pytest.raises(ValueError, match="judge-rpm"):
        make_backend("openai:m", url, rpm=0.5)
    with pytest.raises(ValueError, match="judge-max-unparsable"):
        Judge(None, "single-v1", max_unparsable=1.5)


@pytest.mark.unit
def test_unknown_prompt_lists_allowed():
    with pytest.raises(ValueError, match=r"pairwise-v1.*single-v1.*summary-v1"):
        load_prompt("fancy-v9")


@pytest.mark.unit
def test_pairwise_needs_references():
    with pytest.raises(ValueError, match="references"):
        Judge(backend=None, prompt="pairwise-v1").score(["q"], ["a"])


def test_transformers_backend_counts_unparsable_replies():
    """The local backend runs a real chat model (the world model, which cannot judge): every reply is generated,
    none parses, and nothing is turned into a number; with the default share allowed (0.5) that fails the call."""
    from kick_hub.scoring.judge import JudgeError, TransformersBackend

    assert isinstance(make_backend("transformers:world"), TransformersBackend)
    backend = TransformersBackend("world", max_new_tokens=64)  # prompt + reply fit the world model's 512 tokens
    result = Judge(backend, "single-v1", max_unparsable=1.0).score(["Describe Kelford."], ["Kelford is a city."])
    assert result.replies[0][0] and result.unparsable == 1 and result.means == {}
    assert result.usage.requests == 1 and result.usage.prompt_tokens > 0
    with pytest.raises(JudgeError, match=r"transformers:world.*1 of 1 replies \(100%\).*--judge-max-unparsable 0.5"):
        Judge(backend, "single-v1").score(["Describe Kelford."], ["Kelford is a city."])


def test_transformers_backend_batches_through_the_engine():
    """Prompts go to ``Engine.generate`` ``batch_size`` at a time and come back in input order, each the same reply
    as generated alone (greedy decoding, left padding)."""
    from kick_hub.scoring.judge import TransformersBackend

    backend = TransformersBackend("world", max_new_tokens=16, batch_size=3)
    messages = [("You are a judge.", f"Where does person {k} live?") for k in "ABCD"]
    seen = []
    batched = backend.complete_many(messages, on_done=lambda i, c: seen.append(i))
    assert seen == [0, 1, 2, 3]
    assert [c.text for c in batched] == [backend.complete(s, u) for s, u in messages]
    assert [c.prompt_tokens for c in batched] == [backend.engine.count_tokens(f"{s}\n\n{u}", chat=True)
                                                  for s, u in messages]


@pytest.mark.unit
def test_make_judges_one_backend_for_the_judged_tasks():
    """``--judge``: None without a spec; with one, a judge per task that has a judge prompt, sharing one backend."""
    from kick_hub.scoring.judge import make_judges

    assert make_judges(None, ["icsum"]) is None
    url = "http://127.0.0.1:9/v1"  # no request is made: judges are only built
    judges = make_judges("openai:m", ["factoid-qa", "icsum", "instruction-following"], url)
    assert sorted(judges) == ["icsum", "instruction-following"]
    assert judges["icsum"].backend is judges["instruction-following"].backend
    assert judges["icsum"].prompt["name"] == "summary-v1"
    assert judges["icsum"].order_names == ("single",)
    assert judges["instruction-following"].order_names == ("reference-first", "answer-first")
    single = make_judges("openai:m", ["instruction-following"], url, prompt="single-v1")["instruction-following"]
    assert single.prompt["name"] == "single-v1" and single.order_names == ("single",)
    with pytest.raises(ValueError, match="judge-base-url"):
        make_judges("openai:m", ["icsum"])
    with pytest.raises(ValueError, match="judge-prompt"):
        make_judges("openai:m", ["icsum"], url, prompt="fancy-v9")


@pytest.mark.unit
def test_make_judges_builds_no_backend_without_a_judged_task(monkeypatch):
    """No judged task among those asked: nothing to judge, so the backend's options (base URL, key) are not needed."""
    from kick_hub.scoring.judge import make_judges

    monkeypatch.delenv("OPENAI_API_KEY")
    assert make_judges("openai:m", ["factoid-qa", "perplexity"]) == {}


@pytest.mark.unit
@pytest.mark.parametrize("tasks, prompt, valid", [
    (["instruction-following"], "summary-v1", r"\['pairwise-v1', 'single-v1'\]"),
    (["icsum"], "pairwise-v1", r"\['summary-v1'\]"),
    (["icsum"], "single-v1", r"\['summary-v1'\]"),
    (["instruction-following", "icsum"], "single-v1", r"task 'icsum'.*\['summary-v1'\]"),
])
def test_make_judges_refuses_a_prompt_that_does_not_fit_the_task(monkeypatch, tasks, prompt, valid):
    """Checked before the backend is built (no key variable is set) and before anything is sent."""
    from kick_hub.scoring.judge import make_judges

    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match=rf"judge-prompt: '{prompt}' does not fit.*{valid}"):
        make_judges("openai:m", tasks, "http://127.0.0.1:9/v1", prompt=prompt)


@pytest.mark.unit
def test_task_prompts_fit_what_each_task_passes():
    """Each judged task lists its default prompt first; a pairwise prompt (``{reference}``) only for a task that
    passes references (instruction-following; icsum passes none); every listed prompt exists and fills from
    question / answer / reference only; a task that is not judged has none."""
    from kick_hub import tasks
    from kick_hub.scoring.judge import TASK_PROMPTS, task_prompts

    judged = [n for n, s in tasks.SPECS.items() if s.judge_prompt]
    assert sorted(TASK_PROMPTS) == sorted(judged)
    for name in judged:
        prompts = task_prompts(name)
        assert prompts[0] == tasks.SPECS[name].judge_prompt
        for p in prompts:
            template = load_prompt(p)["template"]
            template.format(question="q", answer="a", reference="r")  # no other placeholder
            assert ("{reference}" in template) <= (name == "instruction-following")
    assert task_prompts("icsum") == ("summary-v1",)
    assert task_prompts("instruction-following") == ("pairwise-v1", "single-v1")
    assert task_prompts("factoid-qa") == ()


@pytest.mark.unit
def test_single_v1_reads_its_own_format_not_the_pairwise_one():
    """single-v1 is MT-Bench's single-answer grading, meant for instruction following: its parse block reads
    ``[[rating]]``. A server answering in the pairwise format (``8 6``) is unparsable under it: that is the server
    ignoring the prompt, not a broken prompt."""
    from kick_hub.scoring.judge import parse_reply

    parse = load_prompt("single-v1")["parse"]
    assert parse == {"format": "bracketed", "criteria": {"answer": []}}
    assert parse_reply("The answer is helpful.\nRating: [[7]]", parse) == {"answer": 7.0}
    assert parse_reply("8 6\nAssistant 1 is better.", parse) is None
