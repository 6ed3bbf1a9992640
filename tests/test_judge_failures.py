"""The judge when its endpoint fails inside an answer, against a real OpenAI-compatible server on 127.0.0.1
(tests/chat_server.py) and the world model: a reply with no verdict because the endpoint failed (no content, cut at
the token limit, filtered, only ``reasoning_content``, an error in the choice) is never cached, so the next run asks
again; an HTTP 200 whose body is an error is a one-line ``JudgeError`` naming the provider's message, retried like
an HTTP 429 when its code says so; a reasoning judge's ``<think>`` blocks are removed before every prompt's parser
reads the reply, and a block left open is unparsable."""

import json

import pytest

from kick_hub.cli import main
from kick_hub.scoring.judge import (ChatCompletionsBackend, Completion, Judge, JudgeError, TransformersBackend,
                                    load_prompt, parse_reply, strip_reasoning)
from kick_hub.scoring.judge.cache import FILENAME, VerdictCache, cache_key
from tests.chat_server import ChatServer, body

VERDICT = "coherence: 7\nconsistency: 6\nfluency: 8\nrelevance: 7"
SCORES = {"judge_coherence": 7.0, "judge_consistency": 6.0, "judge_fluency": 8.0, "judge_relevance": 7.0,
          "judge_unparsable": 0}
SUMMARY = {"coherence": 7.0, "consistency": 6.0, "fluency": 8.0, "relevance": 7.0}
# answers in which the endpoint failed: no verdict, so nothing may be cached
FAILED = {
    "content null": body(None),
    # cut at the token limit mid-score: "relevance: 1" of "relevance: 10" must not be read as 1
    "cut at the limit": body("coherence: 7\nconsistency: 6\nfluency: 8\nrelevance: 1", "length"),
    "filtered": body("", "content_filter"),
    # a reasoning model that ran out of tokens while reasoning: its reasoning_content is never the verdict
    "reasoning only": body(None, "length", reasoning_content=VERDICT),
    "error in the choice": {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "error", "message": {"role": "assistant", "content": ""},
         "error": {"message": "upstream timed out", "code": 502}}]},
}
RATE_LIMITED = {"choices": None, "error": {"message": "Provider returned error", "code": 429}}
STORIES = [f"story {k}" for k in range(4)]
SUMMARIES = [f"summary {k}" for k in range(4)]


@pytest.fixture(autouse=True)
def judge_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")


def evaluate_argv(server: ChatServer, out, limit: int, retries: int) -> list[str]:
    return ["evaluate", "--task", "icsum", "--limit", str(limit), "--output", str(out), "--judge", "openai:judge",
            "--judge-base-url", server.url, "--judge-retries", str(retries)]


def error_line(err: str) -> str:
    (line,) = [x for x in err.splitlines() if x.startswith("kick: error:")]
    return line


# ------------------------------------------------------------------------------------------- failures never cached
@pytest.mark.parametrize("failure", ["content null", "cut at the limit"])
def test_evaluate_asks_again_for_replies_the_endpoint_failed(tmp_path, monkeypatch, capsys, failure):
    """4 icsum examples whose replies carried no verdict (the endpoint failed), then the endpoint recovers: the
    first run fails naming the endpoint's failure and caches nothing, the rerun asks all 4 again (the server's count)
    and parses 7 / 6 / 8 / 7, the run after that sends nothing."""
    monkeypatch.setenv("KICK_HUB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.json"
    with ChatServer([VERDICT], failures={k: FAILED[failure] for k in range(1, 5)}) as server:
        argv = evaluate_argv(server, out, 4, 0)
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 1
        line = error_line(capsys.readouterr().err)
        assert "4 of 4 replies (100%) could not be parsed" in line
        assert "4 of them carried no verdict because the endpoint failed" in line
        assert ("no content" if failure == "content null" else "finish_reason length") in line
        assert len(server.requests) == 4
        assert VerdictCache(tmp_path / "cache" / FILENAME).count() == 0
        assert main(argv) == 0
        assert len(server.requests) == 8  # asked again
        first = json.loads(out.read_text())
        assert main(argv) == 0
        assert len(server.requests) == 8  # now the replies are cached
        second = json.loads(out.read_text())
    assert {k: first["results"]["icsum"][k] for k in SCORES} == SCORES
    assert [s["judge"] for s in first["samples"]["icsum"]] == [SUMMARY] * 4
    usage = [run["config"]["judge_usage"]["icsum"] for run in (first, second)]
    assert [(u["requests"], u["cache_hits"]) for u in usage] == [(4, 0), (0, 4)]


@pytest.mark.unit
def test_kick_judge_on_lm_eval_samples_asks_again_for_failed_replies(tmp_path, monkeypatch, capsys):
    """``kick judge`` on an lm-eval icsum samples file (kick's world records, lm-eval's sample layout): the same
    rule: replies with no content are not cached, the rerun asks again and parses 7 / 6 / 8 / 7; an HTTP 200 error
    body is one judge error line."""
    from kick_hub.tasks import records as task_records

    monkeypatch.setenv("KICK_HUB_CACHE", str(tmp_path / "cache"))
    records = task_records.load("icsum", "world", limit=2)
    samples = tmp_path / "samples_llmkick_icsum_2025-01-01T00-00-00.jsonl"
    samples.write_text("".join(json.dumps({"doc_id": i, "doc": {"record": json.dumps(r), "task": "icsum"},
                                           "filtered_resps": [f"summary {i}"]}) + "\n" for i, r in enumerate(records)))
    out = tmp_path / "judge.json"
    with ChatServer([VERDICT], failures={1: FAILED["content null"], 2: FAILED["content null"], 7: RATE_LIMITED}
                    ) as server:
        argv = ["judge", str(samples), "--output", str(out), "--judge", "openai:judge", "--judge-base-url",
                server.url, "--judge-retries", "0"]
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 1 and "2 of them carried no verdict" in error_line(capsys.readouterr().err)
        assert main(argv) == 0 and len(server.requests) == 4
        judged = json.loads(out.read_text())
        assert main([*argv[:4], "--judge-no-cache", *argv[4:]]) == 0 and len(server.requests) == 6
        with pytest.raises(SystemExit) as e:  # the 7th request is answered with an error body
            main([*argv[:4], "--judge-no-cache", *argv[4:]])
        assert e.value.code == 1 and error_line(capsys.readouterr().err).endswith(
            "HTTP 200 with an error instead of a reply: Provider returned error (code 429)")
    assert judged["scores"] == SCORES and [s["judge"] for s in judged["samples"]] == [SUMMARY] * 2


@pytest.mark.unit
@pytest.mark.parametrize("failure", list(FAILED))
def test_failed_replies_are_unparsable_and_never_cached(tmp_path, failure):
    """One example in four fails (within the unparsable limit): the call succeeds without it, the three good replies
    are cached, the failed one is not, and the next call asks for it alone."""
    cache = tmp_path / FILENAME
    with ChatServer([VERDICT], failures={2: FAILED[failure]}) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge", concurrency=1), "summary-v1", cache=cache)
        first = judge.score(STORIES, SUMMARIES)
        assert first.per_example == [SUMMARY, None, SUMMARY, SUMMARY] and first.unparsable == 1
        assert VerdictCache(cache).count() == 3
        again = judge.score(STORIES, SUMMARIES)
        assert len(server.requests) == 5 and server.user_texts()[4] == server.user_texts()[1]
    assert again.per_example == [SUMMARY] * 4 and again.scores() == {f"judge_{k}": v for k, v in SUMMARY.items()} | {
        "judge_unparsable": 0}
    assert (again.usage.requests, again.usage.cache_hits) == (1, 3)
    assert VerdictCache(cache).count() == 4


@pytest.mark.unit
def test_reasoning_content_is_never_the_verdict():
    """The verdict is read from ``content`` only: a ``reasoning_content`` beside it is ignored."""
    reply = body("6 8\nAssistant 2 is better.", reasoning_content="First draft: Assistant 1: 7, Assistant 2: 5.")
    with ChatServer(["unused"], failures={1: reply}) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge"), "pairwise-v1", both_orders=False)
        result = judge.score(["q"], ["a"], ["r"])
    assert result.per_example == [{"reference": 6.0, "answer": 8.0}]


@pytest.mark.unit
def test_a_cut_reply_keeps_a_verdict_that_was_complete(tmp_path):
    """A reply cut at the token limit after its verdict line (the explanation was cut) is a verdict and is cached;
    one whose last line could still have grown (``6 8`` of ``6 8.5``, no line after it) is not."""
    cache = tmp_path / FILENAME
    failures = {1: body("6 8\nAssistant 2 is more det", "length"), 2: body("6 8", "length")}
    with ChatServer(["5 5"], failures=failures) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge", concurrency=1), "pairwise-v1", cache=cache,
                      both_orders=False, max_unparsable=1.0)
        result = judge.score(["q1", "q2"], ["a1", "a2"], ["r1", "r2"])
        assert result.per_example == [{"reference": 6.0, "answer": 8.0}, None]
        again = judge.score(["q1", "q2"], ["a1", "a2"], ["r1", "r2"])
    assert again.per_example == [{"reference": 6.0, "answer": 8.0}, {"reference": 5.0, "answer": 5.0}]
    assert (again.usage.requests, again.usage.cache_hits, len(server.requests)) == (1, 1, 3)


@pytest.mark.unit
def test_an_empty_reply_an_older_version_cached_is_asked_again(tmp_path):
    cache = VerdictCache(tmp_path / FILENAME)
    with ChatServer([VERDICT]) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge"), "summary-v1", cache=cache)
        user = judge.render(STORIES[0], SUMMARIES[0], None)
        cache.put(cache_key(judge.cache_id, "summary-v1", judge.prompt["system"], user), judge.cache_id,
                  "summary-v1", "", None, None, None)
        result = judge.score(STORIES[:1], SUMMARIES[:1])
    assert result.per_example == [SUMMARY] and len(server.requests) == 1


class Scripted:
    """A judge backend with ``complete`` only (the protocol's minimum): the scripted replies in turn."""

    name = "scripted:judge"

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.sent = list(replies), 0

    def complete(self, system: str, user: str) -> str:
        self.sent += 1
        return self.replies.pop(0)


@pytest.mark.unit
def test_a_backend_with_complete_only_follows_the_cache_rule(tmp_path):
    """An empty reply (no content) is unparsable and not cached; a reply without a verdict that the backend ended
    normally is the judge's answer and is cached."""
    backend = Scripted(["", "I cannot judge this.", VERDICT])
    judge = Judge(backend, "summary-v1", cache=tmp_path / FILENAME, max_unparsable=1.0)
    assert judge.score(STORIES[:2], SUMMARIES[:2]).per_example == [None, None]
    assert judge.score(STORIES[:2], SUMMARIES[:2]).per_example == [SUMMARY, None]
    assert backend.sent == 3 and judge.cache.count() == 2


def test_a_local_judge_cut_at_its_token_limit_is_not_cached(tmp_path):
    """The local backend reports no finish reason: a reply as long as ``max_new_tokens`` was cut there, so (without
    a verdict) it is not cached and is generated again; a shorter one that ended at the model's stop token is."""
    question, answer = "Describe Kelford.", "Kelford is a city."
    cut = Judge(TransformersBackend("world", max_new_tokens=8), "single-v1", cache=tmp_path / "cut.sqlite",
                max_unparsable=1.0)
    for _ in range(2):
        result = cut.score([question], [answer])
        assert result.unparsable == 1 and (result.usage.requests, result.usage.cache_hits) == (1, 0)
    assert cut.cached() == 0
    ended = Judge(TransformersBackend("world", max_new_tokens=64), "single-v1", cache=tmp_path / "ended.sqlite",
                  max_unparsable=1.0)
    ended.score([question], [answer])
    again = ended.score([question], [answer])
    assert again.unparsable == 1 and (again.usage.requests, again.usage.cache_hits) == (0, 1)


@pytest.mark.unit
def test_failure_of_a_completion():
    judge = Judge(None, "pairwise-v1")
    assert judge.failure(Completion("6 8")) is None
    assert judge.failure(Completion("  \n")) == "no content"
    assert judge.failure(Completion("6 8", failure="filtered (finish_reason content_filter)")) == \
        "filtered (finish_reason content_filter)"


# ------------------------------------------------------------------------------------- HTTP 200 with an error body
def test_evaluate_200_with_an_error_body_is_one_judge_error_line(tmp_path, monkeypatch, capsys):
    """``choices: null`` with an ``error`` object: with --judge-retries 0 the documented one-line judge error naming
    the provider's message (no TypeError); with --judge-retries 1 it is retried like an HTTP 429 and the run
    succeeds on the answer after it."""
    monkeypatch.setenv("KICK_HUB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.json"
    with ChatServer([VERDICT], failures={1: RATE_LIMITED, 2: RATE_LIMITED}) as server:
        with pytest.raises(SystemExit) as e:
            main(evaluate_argv(server, out, 1, 0))
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "TypeError" not in err
        assert error_line(err) == (f"kick: error: judge openai:judge at {server.url}: the request failed after 1 "
                                   f"attempt(s) (--judge-retries 0): HTTP 200 with an error instead of a reply: "
                                   f"Provider returned error (code 429)")
        assert len(server.requests) == 1
        assert main(evaluate_argv(server, out, 1, 1)) == 0
        assert len(server.requests) == 3  # the second 429 in the body, then its retry
    result = json.loads(out.read_text())
    assert {k: result["results"]["icsum"][k] for k in SCORES} == SCORES
    assert (result["config"]["judge_usage"]["icsum"]["requests"],
            result["config"]["judge_usage"]["icsum"]["retries"]) == (2, 1)


@pytest.mark.unit
@pytest.mark.parametrize("answer, retried", [
    ({"choices": None, "error": {"message": "Provider returned error", "code": 429}}, True),
    ({"error": {"message": "The server is overloaded", "code": "503"}}, True),  # no choices key; code as text
    ({"choices": [], "error": {"message": "Slow down", "type": "rate_limit_exceeded"}}, True),
    ({"choices": None, "error": {"message": "Insufficient credits", "code": 402}}, False),
    ({"choices": []}, False),
])
def test_200_with_an_error_body_is_retried_only_when_its_code_says_so(answer, retried):
    message = answer.get("error", {}).get("message", "the answer holds no choice and no error")
    with ChatServer([VERDICT], failures={1: answer}) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge", max_retries=2), "summary-v1")
        if retried:
            result = judge.score(STORIES[:1], SUMMARIES[:1])
            assert result.per_example == [SUMMARY] and (result.usage.requests, result.usage.retries) == (2, 1)
        else:
            with pytest.raises(JudgeError, match=r"failed after 1 attempt\(s\) \(--judge-retries 2\): HTTP 200 with "
                                                 rf"an error instead of a reply: {message}"):
                judge.score(STORIES[:1], SUMMARIES[:1])
            assert len(server.requests) == 1


@pytest.mark.unit
@pytest.mark.parametrize("retries, ok", [(1, False), (2, True)])
def test_retries_of_http_429_and_of_a_429_body_share_one_budget(retries, ok):
    """An HTTP 429, then a 429 inside a 200, then a reply: --judge-retries counts every request, whichever way the
    endpoint said to slow down."""
    with ChatServer([VERDICT], failures={1: "429", 2: RATE_LIMITED}) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge", max_retries=retries), "summary-v1")
        if ok:
            assert judge.score(STORIES[:1], SUMMARIES[:1]).usage.requests == 3
        else:
            with pytest.raises(JudgeError, match=r"after 2 attempt\(s\) \(--judge-retries 1\).*Provider returned"):
                judge.score(STORIES[:1], SUMMARIES[:1])
        assert len(server.requests) == 1 + retries


# --------------------------------------------------------------------------------------------- reasoning blocks
DRAFTED = "<think>\nFirst draft: Assistant 1: 7, Assistant 2: 5.\nRevise.\n</think>\n6 8\nAssistant 2 is better."


def reasoning_judge(request: dict) -> str:
    """A reasoning judge that drafts the wrong scores, then gives 6 to the reference and 8 to the answer."""
    user = request["messages"][1]["content"]
    if "[The Start of Assistant 1's Answer]\nreference" in user:
        return DRAFTED
    return "<think>\nFirst draft: Assistant 1: 5, Assistant 2: 7.\nRevise.\n</think>\n8 6\nAssistant 1 is better."


@pytest.mark.unit
def test_pairwise_reasoning_judge_is_read_after_its_think_block():
    with ChatServer(reasoning_judge) as server:
        result = Judge(ChatCompletionsBackend(server.url, "judge"), "pairwise-v1").score(
            ["question"], ["answer"], ["reference"])
    assert result.orders == [[{"reference": 6.0, "answer": 8.0}, {"reference": 6.0, "answer": 8.0}]]
    assert result.scores() == {"judge_reference": 6.0, "judge_answer": 8.0, "judge_relative": pytest.approx(4 / 3),
                               "judge_unparsable": 0, "judge_order_disagreement": 0.0}


@pytest.mark.unit
@pytest.mark.parametrize("prompt, reply, expected", [
    ("pairwise-v1", DRAFTED, {"reference": 6.0, "answer": 8.0}),
    ("pairwise-v1", "<think>\nAssistant 1: 9. Assistant 2: 3.", None),  # unclosed: the draft is no verdict
    ("pairwise-v1", "<think>\nAssistant 1: 9. Assistant 2: 3.\n6 8", None),
    # the chat template wrote <think> into the prompt: the reply starts inside the block
    ("pairwise-v1", "Assistant 1: 9. Assistant 2: 3.\n</think>\n\n6 8", {"reference": 6.0, "answer": 8.0}),
    ("pairwise-v1", "<think>\n\n</think>\n\n6 8", {"reference": 6.0, "answer": 8.0}),  # an empty block
    ("pairwise-v1", "<THINKING>Assistant 1: 2</Thinking>Assistant 1: 6\nAssistant 2: 8",
     {"reference": 6.0, "answer": 8.0}),
    ("pairwise-v1", "6 8\n</think>", None),  # a stray closing tag after the verdict
    ("summary-v1", "<thinking>\ncoherence: 2\nconsistency: 2\nfluency: 2\nrelevance: 2\n</thinking>\n" + VERDICT,
     SUMMARY),
    ("summary-v1", "<thinking>\ncoherence: 2\nconsistency: 2\nfluency: 2\nrelevance: 2\n", None),
    ("summary-v1", "<reasoning>coherence: 7</reasoning>\nconsistency: 6\nfluency: 8\nrelevance: 7", None),
    ("single-v1", "<reasoning>Maybe Rating: [[3]].</reasoning>\nGood answer. Rating: [[8]]", {"answer": 8.0}),
    ("single-v1", "<reasoning>Maybe Rating: [[3]].", None),
    ("single-v1", "<thought>Rating: [[3]]</thought> Rating: [[8]]", {"answer": 8.0}),
])
def test_every_prompt_parses_after_the_reasoning_blocks(prompt, reply, expected):
    assert parse_reply(reply, load_prompt(prompt)["parse"]) == expected
    assert Judge(None, prompt).parse(reply) == expected


@pytest.mark.unit
def test_strip_reasoning():
    assert strip_reasoning("<think>a</think>b<reasoning>c</reasoning>d") == "\nb\nd"
    assert strip_reasoning("draft</think>verdict") == "verdict"
    assert strip_reasoning("<think>a") is None and strip_reasoning("a</think>b<think>c") is None
    assert strip_reasoning("no tags: 6 8") == "no tags: 6 8"


@pytest.mark.unit
def test_a_reasoning_reply_cut_at_the_limit_is_not_cached(tmp_path):
    """A reasoning judge that ran out of tokens inside its block: unparsable, not cached, asked again."""
    cut = body("<think>\nAssistant 1: 9. Assistant 2: 3. Let me", "length")
    with ChatServer([DRAFTED], failures={1: cut}) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge"), "pairwise-v1", cache=tmp_path / FILENAME,
                      both_orders=False, max_unparsable=1.0)
        assert judge.score(["q"], ["a"], ["r"]).per_example == [None]
        assert judge.cached() == 0
        assert judge.score(["q"], ["a"], ["r"]).per_example == [{"reference": 6.0, "answer": 8.0}]
        assert len(server.requests) == 2
