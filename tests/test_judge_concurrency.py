"""The judge as an instrument, against a real OpenAI-compatible server on 127.0.0.1 (tests/chat_server.py) that
answers after a delay and fails on purpose: requests in flight at once, a rate limit, retries that recover, a clear
failure after the last one, the SQLite verdict cache (a rerun sends nothing), both orders of a pairwise question,
accounting that matches the server's count, an unparsable-reply limit, and the CLI's checks and accounting."""

import json
import re
import sqlite3

import pytest

from kick_hub.cli import main
from kick_hub.scoring.judge import ChatCompletionsBackend, Judge, JudgeError
from kick_hub.scoring.judge.cache import FILENAME
from tests.chat_server import ChatServer

SECRET = "sk-test-secret-456"
N = 12
QUESTIONS = [f"question {k}" for k in range(N)]
ANSWERS = [f"answer {k}" for k in range(N)]
REFERENCES = [f"reference {k}" for k in range(N)]
ANSWER_RE = re.compile(r"\[The Start of Assistant (\d)'s Answer\]\n(.*?)\n")


def quality(text: str) -> int:
    """The score a text deserves: a reference 8, ``answer k`` 3 + k % 5 (3..7), anything else 5."""
    kind, _, k = text.rpartition(" ")
    return 8 if kind == "reference" else 3 + int(k) % 5 if kind == "answer" else 5


def biased_judge(body: dict) -> str:
    """A pairwise judge that gives Assistant 1 one point more than it deserves (position bias); a single-answer
    prompt gets ``Rating: [[quality]]``, or no rating for an answer containing ``bad``."""
    user = body["messages"][1]["content"]
    found = dict(ANSWER_RE.findall(user))
    if found:
        return f"{quality(found['1']) + 1} {quality(found['2'])}\nAssistant 1 is better."
    answer = user.split("[The Start of Assistant's Answer]\n")[1].split("\n")[0]
    return "I would rather not say." if "bad" in answer else f"Rating: [[{quality(answer)}]]"


def backend(server: ChatServer, **kwargs) -> ChatCompletionsBackend:
    return ChatCompletionsBackend(server.url, "judge-model", api_key_env="KICK_TEST_JUDGE_KEY", **kwargs)


@pytest.fixture(autouse=True)
def judge_key(monkeypatch):
    monkeypatch.setenv("KICK_TEST_JUDGE_KEY", SECRET)


def test_concurrent_requests_both_orders_cache_and_accounting(tmp_path):
    cache = tmp_path / FILENAME
    with ChatServer(biased_judge, delay=0.2) as server:
        judge = Judge(backend(server, concurrency=8), "pairwise-v1", cache=cache)
        result = judge.score(QUESTIONS, ANSWERS, REFERENCES)
        assert 1 < server.max_in_flight <= 8  # several requests in flight at once, never more than asked
        # both orders of every example reached the server
        users = server.user_texts()
        for q, a, r in zip(QUESTIONS, ANSWERS, REFERENCES):
            assert judge.render(q, a, r, "reference-first") in users and judge.render(q, a, r, "answer-first") in users
        # the bias (+1 to whoever comes first) is split evenly by averaging the two orders; verdicts in input order
        assert result.per_example == [{"reference": 8.5, "answer": quality(a) + 0.5} for a in ANSWERS]
        assert result.means == {"reference": 8.5, "answer": 5.25}  # answer qualities 3..7 average 4.75
        # "answer 4" and "answer 9" (quality 7) lose in one order and tie in the other: 2 of 12 disagree
        assert (result.usage.compared, result.usage.disagreements) == (12, 2)
        assert result.scores()["judge_order_disagreement"] == pytest.approx(2 / 12)
        # accounting matches the server's count
        assert result.usage.requests == len(server.requests) == 24 and result.usage.retries == 0
        assert result.usage.prompt_tokens == server.usage_totals["prompt_tokens"]
        assert result.usage.completion_tokens == server.usage_totals["completion_tokens"] == 24 * 6  # "9 6\nAssistant 1 is better."
        assert sum(u["requests"] for u in result.example_usage) == 24

        # a rerun (another process: a new judge over the same cache file) sends no request
        again = Judge(backend(server), "pairwise-v1", cache=cache).score(QUESTIONS, ANSWERS, REFERENCES)
        assert len(server.requests) == 24
        assert again.per_example == result.per_example and again.replies == result.replies
        assert (again.usage.requests, again.usage.cache_hits, again.usage.prompt_tokens) == (0, 24, 0)

        # another variant: half its answers are the same, so only the other half is asked (both orders)
        other = ANSWERS[:6] + [f"other {k}" for k in range(6, N)]
        third = Judge(backend(server), "pairwise-v1", cache=cache).score(QUESTIONS, other, REFERENCES)
        assert len(server.requests) == 24 + 12 and third.usage.cache_hits == 12
        assert third.per_example[6:] == [{"reference": 8.5, "answer": 5.5}] * 6
    db = sqlite3.connect(cache)
    assert db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == 36
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_no_cache_asks_again_and_replaces_the_stored_replies(tmp_path):
    cache = tmp_path / FILENAME
    with ChatServer(biased_judge) as server:
        Judge(backend(server), "single-v1", cache=cache).score(QUESTIONS[:3], ANSWERS[:3])
        fresh = Judge(backend(server), "single-v1", cache=cache, use_cache=False).score(QUESTIONS[:3], ANSWERS[:3])
        assert len(server.requests) == 6 and fresh.usage.cache_hits == 0
        Judge(backend(server), "single-v1", cache=cache).score(QUESTIONS[:3], ANSWERS[:3])
        assert len(server.requests) == 6
    assert fresh.means == {"answer": (3 + 4 + 5) / 3}


def test_retries_recover_from_429_500_a_dropped_connection_and_a_timeout():
    """Requests 1, 3, 5 and 7 fail (rate limited, server error, connection closed without an answer, an answer
    later than the client's 0.5 s timeout): the client retries each, the verdicts are those of a clean run, and the
    accounting counts every request the server saw."""
    with ChatServer(biased_judge, failures={1: "429", 3: "500", 5: "drop", 7: "slow"}) as server:
        judge = Judge(ChatCompletionsBackend(server.url, "judge-model", api_key_env="KICK_TEST_JUDGE_KEY",
                                             concurrency=4, timeout=0.5), "pairwise-v1")
        result = judge.score(QUESTIONS[:4], ANSWERS[:4], REFERENCES[:4])
    assert sorted(server.outcomes) == ["200"] * 8 + ["429", "500", "drop", "slow"]
    assert result.per_example == [{"reference": 8.5, "answer": quality(a) + 0.5} for a in ANSWERS[:4]]
    assert (result.usage.requests, result.usage.retries) == (len(server.requests), 4) == (12, 4)
    assert sum(u["requests"] for u in result.example_usage) == 12
    assert result.usage.prompt_tokens == server.usage_totals["prompt_tokens"]  # failed requests report no usage


def test_failure_after_the_last_retry_names_the_endpoint_never_the_key(tmp_path):
    """Two answers arrive, then the third request fails twice (1 retry allowed): a JudgeError naming the endpoint;
    the two replies already received are cached, so the rerun asks only the third."""
    cache = tmp_path / FILENAME
    with ChatServer(biased_judge, failures={3: "500", 4: "500"}) as server:
        judge = Judge(backend(server, concurrency=1, max_retries=1), "single-v1", cache=cache)
        with pytest.raises(JudgeError) as err:
            judge.score(QUESTIONS[:3], ANSWERS[:3])
        message = str(err.value)
        assert f"openai:judge-model at {server.url}" in message and "2 attempt(s)" in message
        assert "InternalServerError" in message and "--judge-retries 1" in message and SECRET not in message
        result = Judge(backend(server), "single-v1", cache=cache).score(QUESTIONS[:3], ANSWERS[:3])
    assert len(server.requests) == 5 and result.usage.cache_hits == 2
    assert result.per_example == [{"answer": 3.0}, {"answer": 4.0}, {"answer": 5.0}]


def test_rate_limit_spaces_the_requests():
    """300 requests a minute: one every 0.2 s, however many workers are free."""
    with ChatServer(biased_judge) as server:
        Judge(backend(server, concurrency=4, rpm=300), "single-v1").score(QUESTIONS[:4], ANSWERS[:4])
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:])]
    # the client spaces the sends exactly; arrivals jitter by a few ms (unlimited, all 4 arrive within a few ms)
    assert len(gaps) == 3 and min(gaps) >= 0.15 and sum(gaps) >= 0.55


def test_unparsable_share_above_the_limit_fails_naming_it(tmp_path):
    answers = ["answer 1", "bad answer", "answer 2", "bad too"]
    with ChatServer(biased_judge) as server:
        ok = Judge(backend(server), "single-v1").score(QUESTIONS[:4], answers)  # 2 of 4: at the limit
        assert ok.unparsable == 2 and ok.means == {"answer": 4.5}
        assert ok.sample(1)["judge_replies"] == ["I would rather not say."] and ok.sample(1)["judge"] is None
        worse = ["bad one", *answers[1:]]
        with pytest.raises(JudgeError, match=r"openai:judge-model \(prompt single-v1\): 3 of 4 replies \(75%\) "
                                             r"could not be parsed.*--judge-max-unparsable 0.5.*rather not say"):
            Judge(backend(server), "single-v1", cache=tmp_path / FILENAME).score(QUESTIONS[:4], worse)
        # the replies were paid for, so they are cached: a run allowing more sends nothing
        Judge(backend(server), "single-v1", cache=tmp_path / FILENAME, max_unparsable=1.0).score(QUESTIONS[:4], worse)
    assert len(server.requests) == 8


@pytest.mark.parametrize("args, named", [
    (["--judge-concurrency", "0"], "--judge-concurrency"),
    (["--judge-rpm", "0"], "--judge-rpm"),
    (["--judge-base-url", "ftp://127.0.0.1/v1"], "--judge-base-url"),
    (["--judge-prompt", "fancy-v9"], "--judge-prompt"),
    (["--judge-max-unparsable", "1.5"], "--judge-max-unparsable"),
    (["--judge-api-key-env", "KICK_TEST_NO_SUCH_KEY"], "KICK_TEST_NO_SUCH_KEY"),
])
@pytest.mark.parametrize("command", ["evaluate", "bench"])
def test_bad_judge_options_exit_2_before_any_model_work(tmp_path, capsys, command, args, named):
    """The model named does not exist: every error is the judge option's, so it came before any model loading."""
    base = {"evaluate": ["evaluate", "--task", "instruction-following"],
            "bench": ["bench", "--run-dir", str(tmp_path / "run"), "--methods", "magnitude", "--sparsities", "0.5",
                      "--patterns", "--bits", "--tasks", "instruction-following"]}[command]
    judge = ["--judge", "openai:m", "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-api-key-env",
             "KICK_TEST_JUDGE_KEY"]
    with pytest.raises(SystemExit) as e:
        main([*base, "--model", str(tmp_path / "no-such-model"), *judge, *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "no-such-model" not in err
    assert not (tmp_path / "run").exists()


def test_evaluate_accounts_in_the_results_and_reuses_the_user_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KICK_HUB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.json"
    argv = ["evaluate", "--task", "instruction-following", "--limit", "2", "--output", str(out),
            "--judge", "openai:judge-model", "--judge-api-key-env", "KICK_TEST_JUDGE_KEY"]
    with ChatServer(biased_judge) as server:
        assert main([*argv, "--judge-base-url", server.url]) == 0
        first = json.loads(out.read_text())
        assert main([*argv, "--judge-base-url", server.url]) == 0
        second = json.loads(out.read_text())
    usage = first["config"]["judge_usage"]["instruction-following"]
    # 2 examples x 2 orders; an answer equal to its reference makes both orders one request, sent once
    assert usage["replies"] == 4 and usage["requests"] + usage["cache_hits"] == 4
    assert usage["requests"] == len(server.requests) == len(set(server.user_texts()))
    assert usage["prompt_tokens"] == server.usage_totals["prompt_tokens"]
    again = second["config"]["judge_usage"]["instruction-following"]
    assert (again["requests"], again["cache_hits"]) == (0, 4)
    assert first["results"] == second["results"]
    assert (tmp_path / "cache" / FILENAME).exists()
    assert "judge_order_disagreement" in capsys.readouterr().out  # the results table shows it


def test_sweep_estimates_first_keeps_the_cache_in_the_run_dir_and_reports_the_cost(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--sparsities", "0.5", "--patterns",
            "--bits", "--tasks", "instruction-following", "--limit", "2", "--judge", "openai:judge-model",
            "--judge-api-key-env", "KICK_TEST_JUDGE_KEY"]
    with ChatServer(biased_judge) as server:
        assert main([*argv, "--judge-base-url", server.url]) == 0
        out = capsys.readouterr().out
        sent = len(server.requests)
        assert main([*argv, "--judge-base-url", server.url]) == 0  # everything is done: nothing to judge
        rerun = capsys.readouterr().out
    # the estimate came before the sweep: 2 cells x 2 examples x 2 orders
    assert ("judge openai:judge-model: at most 8 requests (instruction-following: 2 cells x 2 examples x 2 orders)"
            in out)
    assert out.index("at most 8 requests") < out.index("report:")
    assert "at most 0 requests" in rerun and len(server.requests) == sent
    assert (run_dir / FILENAME).exists()
    assert re.search(rf"judge this run: {sent} requests \(0 retries\), {8 - sent} of 8 replies from the cache", out)
    report = (run_dir / "report.md").read_text()
    assert "## LLM judge" in report
    assert re.search(rf"\| all \| all \| {sent} \| {8 - sent} of 8 \|", report)
    assert "<h2>LLM judge</h2>" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize("command", ["evaluate", "bench"])
def test_judge_without_a_judged_task_exits_2_naming_it(tmp_path, capsys, monkeypatch, command):
    """``--judge`` for tasks none of which is judged: exit 2 naming ``--judge`` and the judged tasks, not a demand
    for the backend's key or base URL, and before any model work."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    base = {"evaluate": ["evaluate", "--task", "factoid-qa"],
            "bench": ["bench", "--run-dir", str(tmp_path / "run"), "--methods", "magnitude", "--sparsities", "0.5",
                      "--patterns", "--bits", "--tasks", "factoid-qa", "mcq-reasoning"]}[command]
    with pytest.raises(SystemExit) as e:
        main([*base, "--model", str(tmp_path / "no-such-model"), "--judge", "openai:m"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--judge: applies to icsum / instruction-following only" in err and "factoid-qa" in err
    assert "OPENAI_API_KEY" not in err and "judge-base-url" not in err and "no-such-model" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["--judge-rpm", "60"], ["--judge-concurrency", "4"], ["--judge-prompt", "single-v1"],
                                  ["--judge-base-url", "http://127.0.0.1:9/v1"], ["--judge-no-cache"],
                                  ["--judge-retries", "1"], ["--judge-max-unparsable", "0.2"],
                                  ["--judge-api-key-env", "KICK_TEST_JUDGE_KEY"]])
@pytest.mark.parametrize("command", ["evaluate", "bench"])
def test_judge_options_without_judge_exit_2_naming_the_option(tmp_path, capsys, command, args):
    base = {"evaluate": ["evaluate", "--task", "instruction-following"],
            "bench": ["bench", "--run-dir", str(tmp_path / "run"), "--methods", "magnitude", "--sparsities", "0.5",
                      "--patterns", "--bits", "--tasks", "instruction-following"]}[command]
    with pytest.raises(SystemExit) as e:
        main([*base, "--model", str(tmp_path / "no-such-model"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"kick: error: {args[0]}: needs --judge" in err and "no-such-model" not in err
    assert not (tmp_path / "run").exists()


def test_judge_options_at_their_defaults_without_judge_are_accepted():
    """The check compares with the defaults: the defaults the parser sets are the ones ``_judges`` knows."""
    from kick_hub.cli import _JUDGE_DEFAULTS, _judges, build_parser

    args = build_parser().parse_args(["evaluate", "--model", "m", "--task", "factoid-qa"])
    assert {k: getattr(args, k) for k in _JUDGE_DEFAULTS} == _JUDGE_DEFAULTS
    assert _judges(args, ["factoid-qa"], None) is None
    several = build_parser().parse_args(["evaluate", "--model", "m", "--judge-rpm", "5", "--judge-no-cache"])
    with pytest.raises(ValueError, match="--judge-rpm, --judge-no-cache: each needs --judge"):
        _judges(several, ["factoid-qa"], None)


@pytest.mark.parametrize("task, prompt, valid", [("instruction-following", "summary-v1", "['pairwise-v1', 'single-v1']"),
                                                 ("icsum", "pairwise-v1", "['summary-v1']"),
                                                 ("icsum", "single-v1", "['summary-v1']")])
def test_a_prompt_that_does_not_fit_the_task_exits_2_before_any_request(tmp_path, capsys, task, prompt, valid):
    """A prompt for another kind of example is refused up front, listing the prompts valid for the task: no model is
    loaded and nothing is sent (before, summary-v1 for instruction-following sent every request, then failed)."""
    with ChatServer(biased_judge) as server:
        with pytest.raises(SystemExit) as e:
            main(["evaluate", "--task", task, "--model", str(tmp_path / "no-such-model"), "--judge", "openai:m",
                  "--judge-base-url", server.url, "--judge-api-key-env", "KICK_TEST_JUDGE_KEY",
                  "--judge-prompt", prompt])
    assert e.value.code == 2 and not server.requests
    err = capsys.readouterr().err
    assert f"judge-prompt: '{prompt}' does not fit task '{task}'" in err and f"the prompts for {task}: {valid}" in err
    assert "no-such-model" not in err


def test_single_v1_judges_instruction_following(tmp_path, monkeypatch):
    """single-v1 fits instruction-following: one order per example, every ``Rating: [[k]]`` reply parsed."""
    monkeypatch.setenv("KICK_HUB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.json"
    with ChatServer(biased_judge) as server:
        assert main(["evaluate", "--task", "instruction-following", "--limit", "2", "--output", str(out),
                     "--judge", "openai:judge-model", "--judge-api-key-env", "KICK_TEST_JUDGE_KEY",
                     "--judge-base-url", server.url, "--judge-prompt", "single-v1"]) == 0
    results = json.loads(out.read_text())["results"]["instruction-following"]
    assert results["judge_unparsable"] == 0 and 1 <= results["judge_answer"] <= 10
    assert "judge_reference" not in results and len(server.requests) == 2


def test_the_cache_keeps_endpoints_apart(tmp_path):
    """Two servers serve a model of the same name and answer differently: the second is asked, not answered from the
    first's cached replies; each is then answered from the cache. The identity holds scheme, host, port and path,
    never user info or query."""
    cache = tmp_path / FILENAME
    with ChatServer(["Rating: [[3]]"]) as one, ChatServer(["Rating: [[9]]"]) as two:
        first = Judge(backend(one), "single-v1", cache=cache).score(QUESTIONS[:2], ANSWERS[:2])
        second = Judge(backend(two), "single-v1", cache=cache).score(QUESTIONS[:2], ANSWERS[:2])
        assert (len(one.requests), len(two.requests)) == (2, 2)
        assert first.means == {"answer": 3.0} and second.means == {"answer": 9.0}
        for server, score in ((one, 3.0), (two, 9.0)):
            again = Judge(backend(server), "single-v1", cache=cache).score(QUESTIONS[:2], ANSWERS[:2])
            assert again.means == {"answer": score} and again.usage.cache_hits == 2
        assert (len(one.requests), len(two.requests)) == (2, 2)
        # user info and query are not part of the identity: the same endpoint, answered from the cache
        host = one.url.split("://", 1)[1]
        dressed = f"http://someone:{SECRET}@{host}/?token=sk-query-secret"
        judge = Judge(ChatCompletionsBackend(dressed, "judge-model", api_key_env="KICK_TEST_JUDGE_KEY"), "single-v1",
                      cache=cache)
        assert judge.cache_id == backend(one).cache_id
        assert judge.score(QUESTIONS[:2], ANSWERS[:2]).means == {"answer": 3.0} and len(one.requests) == 2
    db = sqlite3.connect(cache)
    judges = {row[0] for row in db.execute("SELECT judge FROM verdicts")}
    db.close()
    assert judges == {backend(one).cache_id, backend(two).cache_id} and len(judges) == 2
    assert all(SECRET not in j and "sk-query-secret" not in j and "someone" not in j for j in judges)
