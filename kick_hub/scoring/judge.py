"""LLM-as-judge: one interface, two backends, versioned prompts, honest parsing, a verdict cache.

- ``ChatCompletionsBackend``: any OpenAI-compatible ``/v1/chat/completions`` endpoint, through the official ``openai``
  client (extra ``judge``; huggingface_hub's InferenceClient refuses every URL, even a local one, under
  HF_HUB_OFFLINE): ``concurrency`` requests in flight, an optional requests-per-minute limit, the client's retries
  with exponential backoff. The key is read from an environment variable and never logged or stored.
- ``TransformersBackend``: a local chat model run by the project's engine, its prompts generated in batches.

``Judge.score`` asks a pairwise prompt in both orders (reference first, then answer first) and averages the two
verdicts, keeps every reply in a SQLite verdict cache (``judge_cache``) so a rerun sends nothing it already paid
for, and accounts for what it sent (``JudgeUsage``). docs/judge.md describes all of it.

Judge prompts are JSON files in ``judge_prompts/`` (``<name>-v<k>.json``): a system message, a template, and a
``parse`` block naming the reply format and the criteria (see ``PARSE_FORMATS``). A score is a number on the 1-10
scale, written ``8``, ``7.5``, ``8/10``, ``8 out of 10`` or ``[[8]]``; a quoted scale (``Coherence (1-10): 8``) is
skipped, never read as the score. A reply with a missing, ambiguous (two different scores for one criterion) or
out-of-range score (``0``, ``11``, ``-1``, ``9/5``, or a quoted scale other than 1-10) is counted in
``unparsable`` and left out of every mean: it is never clamped or otherwise turned into a number. A reasoning
judge's blocks (``<think>``, ``<thinking>``, ``<reasoning>``, ``<thought>``) are removed before any prompt's reply is
parsed, so a draft verdict inside one is never read; a block left open (the reply was cut while reasoning) makes
the reply unparsable (``strip_reasoning``).

A reply that carries no verdict because the endpoint failed (no content, filtered, cut at the token limit, an error
in the choice; ``Completion.failure``) is unparsable in the run that got it and never cached: the next run asks
again. An answer without any choice (an HTTP 200 whose body is an ``error`` object) is a ``JudgeError`` naming the
provider's message, retried like an HTTP 429 when its code is 408, 409, 429 or 5xx.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kick_hub.scoring.judge_cache import VerdictCache, cache_key
from kick_hub.tasks.specs import SPECS

PROMPT_DIR = Path(__file__).parent / "judge_prompts"
BACKENDS = ("openai", "transformers")
SCORE_MIN, SCORE_MAX = 1.0, 10.0
# parse formats: "labelled"   each criterion's label followed by its score (``Coherence: 8``), anywhere in the reply;
#                "first-line" the first non-empty line holds one score per criterion in order (``8 6``; FastChat), or
#                             the first non-empty lines hold one each; else the labels (``Assistant 1: 8``) are used;
#                "bracketed"  one criterion, scored as ``[[8]]`` anywhere in the reply (MT-Bench).
PARSE_FORMATS = ("labelled", "first-line", "bracketed")

_RANGE = r"\d+(?:\.\d+)?\s*(?:-|–|to)\s*\d+(?:\.\d+)?"
_SCALE_BODY = rf"(?:(?:on\s+a\s+)?scale\s+(?:of\s+|from\s+)?)?(?:from\s+)?{_RANGE}|out\s+of\s+\d+"
# a quoted scale: "(1-10)", "[1 to 10]", "(out of 10)", "on a scale of 1 to 10"
_SCALE = rf"\(\s*(?:{_SCALE_BODY})\s*\)|\[\s*(?:{_SCALE_BODY})\s*\]|(?:on\s+a\s+)?scale\s+(?:of\s+|from\s+)?{_RANGE}"
# a number and an optional total: 8, 7.5, -1, 8/10, 8 out of 10 (never part of a longer number)
_NUMBER = (r"(?P<num>[-+]?\d+(?:\.\d+)?)(?!\.?\d)"
           r"(?:\s*(?:/|out\s+of)\s*(?P<den>\d+(?:\.\d+)?)(?!\.?\d))?")
# a score: a number, bare or in [[ ]] / [ ]; never the start of a range (1-10) or a percentage
_VALUE = rf"(?P<open>\[{{1,2}}\s*)?{_NUMBER}(?(open)\s*\]{{1,2}})(?!\s*(?:-|–|to)\s*\d)(?!\s*%)"
# between a label and its score: spaces, markdown, ':', '=', '|', a spaced dash, a quoted scale
_SEP = rf"(?:[\s*_:=|>#]|[-–—](?=\s)|{_SCALE})*"
# after a labelled score: end of line or punctuation, not a word ("Assistant 1: 3 paragraphs" is no score)
_AFTER = r"(?=[ \t]*(?:[\r\n,.;:!)\]*_|(\-–—]|$))"
_VALUE_RE = re.compile(_VALUE, re.IGNORECASE)
_BRACKETED_RE = re.compile(rf"\[\[\s*{_NUMBER}\s*\]\]", re.IGNORECASE)
_LINE_PREFIX_RE = re.compile(rf"[A-Za-z][A-Za-z ]*?\s*(?P<scale>{_SCALE})?\s*:\s*", re.IGNORECASE)
_LINE_SEP_RE = re.compile(r"\s*,\s*|\s+")
_LINE_END_RE = re.compile(r"[\s.]*")
_BAD = object()  # a score that is there but invalid: the whole reply is unparsable


def _scale_ok(text: str) -> bool:
    """Every scale quoted in ``text`` is 1-10 (``1-10``, ``1 to 10``, ``out of 10``)."""
    ranges = re.findall(r"(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)", text, re.IGNORECASE)
    outs = re.findall(r"out\s+of\s+(\d+(?:\.\d+)?)", text, re.IGNORECASE)
    return (all((float(a), float(b)) == (SCORE_MIN, SCORE_MAX) for a, b in ranges)
            and all(float(o) == SCORE_MAX for o in outs))


def _score(match: re.Match) -> float | object:
    """The score of a ``_VALUE`` match, or ``_BAD`` when it is outside 1-10 or out of a total other than 10."""
    num = float(match.group("num"))
    den = match.group("den")
    if den is not None and float(den) != SCORE_MAX:
        return _BAD
    return num if SCORE_MIN <= num <= SCORE_MAX else _BAD


def _one(values: list) -> float | None | object:
    """One criterion's score from every place it was found: None if nowhere, ``_BAD`` if any is invalid or they
    disagree."""
    if not values:
        return None
    if any(v is _BAD for v in values) or len(set(values)) > 1:
        return _BAD
    return values[0]


def _labelled(reply: str, labels: list[str]) -> float | None | object:
    """The score written after any of ``labels``; a score on the line below its label must stand alone there."""
    alts = "|".join(r"\s+".join(map(re.escape, label.split())) for label in labels)
    pattern = re.compile(rf"(?<![\w-])(?:{alts})(?:'s)?(?:\s+(?:score|rating))?(?P<sep>{_SEP}){_VALUE}{_AFTER}",
                         re.IGNORECASE)
    values = []
    for m in pattern.finditer(reply):
        sep = m.group("sep")
        if "\n" in sep:
            line_rest = reply[m.end():].split("\n", 1)[0]
            if not re.fullmatch(r"[\s*_.,;]*", line_rest):
                continue  # "Coherence:\n1. The summary ..." is a numbered list, not a score
        values.append(_score(m) if _scale_ok(sep) else _BAD)
    return _one(values)


def _line_scores(line: str, k: int) -> list | None:
    """``k`` scores making up the whole of ``line`` (after an optional ``Scores (1-10):`` prefix), else None."""
    line = re.sub(r"[*_`#>]", "", line).strip()
    pos, prefix = 0, _LINE_PREFIX_RE.match(line)
    if prefix:
        if prefix.group("scale") and not _scale_ok(prefix.group("scale")):
            return [_BAD] * k
        pos = prefix.end()
    scores = []
    for i in range(k):
        if i:
            sep = _LINE_SEP_RE.match(line, pos)
            if not sep:
                return None
            pos = sep.end()
        m = _VALUE_RE.match(line, pos)
        if not m:
            return None
        scores.append(_score(m))
        pos = m.end()
    return scores if _LINE_END_RE.fullmatch(line, pos) else None


# reasoning blocks of reasoning judges (DeepSeek-R1, Qwen3: <think>; others <thinking>, <reasoning>, <thought>)
REASONING_TAGS = ("think", "thinking", "reasoning", "thought")
_TAGS = "|".join(REASONING_TAGS)
_REASONING_BLOCK_RE = re.compile(rf"<\s*({_TAGS})\s*>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_REASONING_OPEN_RE = re.compile(rf"<\s*(?:{_TAGS})\s*>", re.IGNORECASE)
_REASONING_CLOSE_RE = re.compile(rf"<\s*/\s*(?:{_TAGS})\s*>", re.IGNORECASE)


def strip_reasoning(reply: str) -> str | None:
    """``reply`` without its reasoning blocks (``<think>...</think>``, likewise ``thinking``, ``reasoning``,
    ``thought``; any case), or None when a block is left open or a tag is left over: the reply was cut while the
    judge was still reasoning, and what it wrote so far is a draft, not its verdict. A reply that starts inside a
    block (its chat template wrote the opening tag into the prompt, as DeepSeek-R1's does) loses everything up to the
    first closing tag that comes before any opening one."""
    close, opening = _REASONING_CLOSE_RE.search(reply), _REASONING_OPEN_RE.search(reply)
    if close and (opening is None or close.start() < opening.start()):
        reply = reply[close.end():]
    out = _REASONING_BLOCK_RE.sub("\n", reply)
    if _REASONING_OPEN_RE.search(out) or _REASONING_CLOSE_RE.search(out):
        return None
    return out


def parse_reply(reply: str, parse: dict) -> dict | None:
    """Criterion -> score read from a judge's ``reply`` under a prompt's ``parse`` block, or None when the reply is
    unparsable (a score missing, ambiguous or invalid, or a reasoning block left open; see the module docstring).
    Reasoning blocks are removed first (``strip_reasoning``), whatever the format."""
    criteria: dict[str, list[str]] = parse["criteria"]
    reply = strip_reasoning(reply)
    if reply is None:
        return None
    if parse["format"] == "bracketed":
        [key] = criteria
        scores = {key: _one([_score(m) for m in _BRACKETED_RE.finditer(reply)])}
    elif parse["format"] == "first-line":
        lines = [line for line in reply.splitlines() if line.strip()]
        found = _line_scores(lines[0], len(criteria)) if lines else None
        if found is None and len(lines) >= len(criteria):
            per_line = [_line_scores(line, 1) for line in lines[: len(criteria)]]
            found = None if None in per_line else [s[0] for s in per_line]
        if found is None:
            scores = {k: _labelled(reply, labels) if labels else None for k, labels in criteria.items()}
        else:
            scores = dict(zip(criteria, found))
    else:
        scores = {k: _labelled(reply, labels) for k, labels in criteria.items()}
    if any(v is None or v is _BAD for v in scores.values()):
        return None
    return scores


def _check_prompt(prompt: dict, path: Path) -> dict:
    """A prompt file's keys and parse block, checked so that a broken file fails before any judging."""
    for key in ("name", "system", "template", "parse"):
        if key not in prompt:
            raise ValueError(f"judge prompt {path}: key {key!r} is missing")
    parse = prompt["parse"]
    if not isinstance(parse, dict) or parse.get("format") not in PARSE_FORMATS:
        raise ValueError(f"judge prompt {path}: parse.format must be one of {list(PARSE_FORMATS)}, "
                         f"got {parse.get('format') if isinstance(parse, dict) else parse!r}")
    criteria = parse.get("criteria")
    if not isinstance(criteria, dict) or not criteria or not all(
            isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v) for v in criteria.values()):
        raise ValueError(f"judge prompt {path}: parse.criteria must map each criterion to a list of labels")
    if parse["format"] == "bracketed" and len(criteria) != 1:
        raise ValueError(f"judge prompt {path}: a bracketed parse scores exactly one criterion, got {list(criteria)}")
    if parse["format"] == "labelled" and not all(criteria.values()):
        raise ValueError(f"judge prompt {path}: a labelled parse needs at least one label per criterion")
    if "{reference}" in prompt["template"] and set(criteria) != {"reference", "answer"}:
        raise ValueError(f"judge prompt {path}: a pairwise template ({{reference}} and {{answer}}) scores exactly the "
                         f"criteria 'reference' and 'answer' (so the two orders can be mapped back), got {list(criteria)}")
    return prompt


# judged task -> the judge prompts that fit it, its default first: the task's declaration
# (``tasks.SPECS[task].judge_prompts``, which says why each prompt fits)
TASK_PROMPTS: dict[str, tuple[str, ...]] = {t: s.judge_prompts for t, s in SPECS.items() if s.judge_prompts}


def task_prompts(task: str) -> tuple[str, ...]:
    """The judge prompts that fit ``task`` (``TaskSpec.judge_prompts``, its default first; a task that is not
    judged: none). KeyError for a task name not in ``tasks.SPECS``."""
    return SPECS[task].judge_prompts


def check_task_prompt(task: str, prompt: str) -> str:
    """``prompt`` when it fits ``task`` (``task_prompts``); ValueError naming ``judge-prompt`` and listing the
    prompts that fit ``task`` otherwise."""
    valid = task_prompts(task)
    if prompt not in valid:
        raise ValueError(f"judge-prompt: {prompt!r} does not fit task {task!r} (its template asks about, and its "
                         f"parse block reads, another kind of example); the prompts for {task}: {list(valid)}")
    return prompt


def prompt_names() -> list[str]:
    """The shipped judge prompt names (``judge_prompts/*.json``), sorted."""
    return sorted(p.stem for p in PROMPT_DIR.glob("*.json"))


def load_prompt(name: str) -> dict:
    """A judge prompt by name (``pairwise-v1``, ``single-v1``, ``summary-v1``), its parse block checked."""
    path = PROMPT_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(f"judge-prompt: must be one of {prompt_names()}, got {name!r}")
    return _check_prompt(json.loads(path.read_text(encoding="utf-8")), path)


class JudgeError(RuntimeError):
    """The judge could not give verdicts: its endpoint failed after the last retry, or it answered unparsably more
    often than allowed. The message names the judge and its endpoint (never the key); CLI exit 1."""


@dataclass
class Completion:
    """One answer of a backend: the reply text, its token usage as the backend reports it (None: not reported),
    the requests sent for it (1 + retries), the seconds from the first send to the answer (backoff included), and
    ``failure``: why the endpoint ended the reply abnormally (``"no content"``, ``"cut at the token limit
    (finish_reason length)"``, ...; None: it finished normally). A failed reply without a verdict is never cached."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    seconds: float = 0.0
    failure: str | None = None


class Backend(Protocol):
    """What a ``Judge`` needs of a judge model: a ``name`` (``<backend>:<model>``, recorded in results) and
    ``complete``. Optional: ``cache_id`` (the name plus the endpoint and decoding settings a reply depends on;
default ``name``)
    and ``complete_many`` (many chat turns at once; default: ``complete`` one after another)."""

    name: str

    def complete(self, system: str, user: str) -> str:
        """The model's reply text to one ``system`` + ``user`` chat turn (deterministic decoding)."""
        ...


class RateLimiter:
    """At most ``rpm`` request starts per minute, spaced evenly: each ``wait`` returns no sooner than 60 / ``rpm``
    seconds after the previous one returned (thread-safe; the waiting happens outside the lock)."""

    def __init__(self, rpm: float) -> None:
        if not rpm >= 1:
            raise ValueError(f"judge-rpm: must be at least 1 request per minute, got {rpm!r}")
        self.interval = 60.0 / rpm
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller's slot."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


def public_endpoint(url: str) -> str:
    """``url`` without user info, query or fragment (what an error message may show of an endpoint)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def endpoint_id(url: str) -> str:
    """``url`` as part of a judge's cache identity: scheme, host (lower case, an IPv6 one bracketed), port (left out
    when it is the scheme's default) and path (without a trailing slash); never user info (a key may hide there),
    query or fragment."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    port_text = f":{port}" if port and port != {"http": 80, "https": 443}.get(scheme) else ""
    return f"{scheme}://{host}{port_text}{parts.path.rstrip('/')}"


def check_base_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; ValueError naming ``judge-base-url`` otherwise."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"judge-base-url: must be an http:// or https:// URL with a host, got {url!r}")
    return url


def _check_count(value, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option}: must be an integer of at least 1, got {value!r}")
    return value


# finish reasons that mean the endpoint ended the reply before the judge did (OpenAI, vLLM, TGI, OpenRouter)
FAILED_FINISH = {"length": "cut at the token limit", "content_filter": "filtered", "error": "an error",
                 "abort": "aborted"}
INITIAL_RETRY_DELAY, MAX_RETRY_DELAY, MAX_RETRY_AFTER = 0.5, 8.0, 60.0  # seconds, as the openai client's backoff


def _retryable(code: object) -> bool:
    """An error code inside a 200 body that the client would retry as an HTTP status: 408, 409, 429, 5xx (as a
    number or digits), or a rate-limit / overload / server-error / timeout name."""
    text = str(code).strip().lower() if code is not None else ""
    if text.isdigit():
        return int(text) in (408, 409, 429) or int(text) >= 500
    return any(word in text for word in ("rate_limit", "overloaded", "server_error", "timeout"))


def body_error(body: object) -> tuple[str, bool] | None:
    """``(message, retryable)`` when an HTTP 200 answer of a chat-completions endpoint holds no choice (``choices``
    null, missing or empty; routers such as OpenRouter answer an upstream failure this way, with an ``error``
    object): the provider's message and code, and whether the code is one retried as an HTTP status (``_retryable``).
    None when the body has a choice."""
    if not isinstance(body, dict):
        return f"the body is not a JSON object: {' '.join(str(body).split())[:200]!r}", False
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        message = " ".join(str(error.get("message") or "no message").split())
        code = error.get("code", error.get("status"))
        kind = error.get("type")
        detail = ", ".join(f"{k} {v}" for k, v in (("code", code), ("type", kind)) if v not in (None, ""))
        return f"{message}{f' ({detail})' if detail else ''}"[:300], _retryable(code) or _retryable(kind)
    if error is not None:
        return " ".join(str(error).split())[:300], False
    return "the answer holds no choice and no error", False


def read_choice(body: dict) -> tuple[str, str | None]:
    """``(text, failure)`` of the first choice of a chat-completions body: the message's ``content`` only (a
    reasoning model's ``reasoning_content`` / ``reasoning`` is never read as the verdict), and why the endpoint ended
    the reply abnormally (an ``error`` in the choice, a ``finish_reason`` in ``FAILED_FINISH``, no content), else
    None."""
    choice = body["choices"][0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    text = content if isinstance(content, str) else ""
    finish = choice.get("finish_reason")
    error = choice.get("error")
    if error:
        message_ = error.get("message") if isinstance(error, dict) else error
        failure = f"an error in the choice: {' '.join(str(message_).split())[:200]}"
    elif isinstance(finish, str) and finish in FAILED_FINISH:
        failure = f"{FAILED_FINISH[finish]} (finish_reason {finish})"
    elif not text.strip():
        failure = "no content"
    else:
        failure = None
    if failure is not None and not text.strip() and failure != "no content":
        failure += ", no content"
    return text, failure


def _retry_delay(retry: int, headers: Mapping[str, str]) -> float:
    """Seconds to wait before retry number ``retry`` (0 = the first): the server's ``retry-after-ms`` /
    ``retry-after`` (seconds) when given and at most a minute, else exponential backoff from 0.5 s, at most 8 s,
    less up to 25 % jitter (the openai client's rule for HTTP statuses)."""
    import random

    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            wait = float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
        if 0 < wait <= MAX_RETRY_AFTER:
            return wait
    return min(INITIAL_RETRY_DELAY * 2.0 ** retry, MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


class ChatCompletionsBackend:
    """OpenAI-compatible chat completions (OpenAI, vLLM, TGI, ``transformers serve``, ...) through the ``openai``
    client: up to ``concurrency`` requests in flight (a thread pool), at most ``rpm`` requests a minute (every HTTP
    request, retries included, waits for its slot in ``RateLimiter``), and the client's own retries
    (``max_retries``: exponential backoff from 0.5 s, at most 8 s, or the server's ``retry-after``) on 408 / 409 /
    429 / 5xx answers, timeouts and dropped connections."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", max_tokens: int = 512,
                 timeout: float = 120.0, concurrency: int = 8, rpm: float | None = None,
                 max_retries: int = 4) -> None:
        """Raises ValueError for a base URL that is not http(s) (``judge-base-url``), a concurrency or rate below 1,
        a negative ``max_retries`` or an unset / empty ``api_key_env`` variable (named; a server without
        authentication takes any value, e.g. ``EMPTY``), and ImportError without the openai client."""
        try:
            import openai
        except ImportError as e:
            raise ImportError("the openai judge backend needs the openai client: pip install 'kick-hub[judge]'") from e
        check_base_url(base_url)
        self.concurrency = _check_count(concurrency, "judge-concurrency")
        if max_retries < 0:
            raise ValueError(f"judge-retries: must be 0 or more, got {max_retries!r}")
        key = os.environ.get(api_key_env)
        if not key:
            raise ValueError(f"judge-api-key-env: the environment variable {api_key_env} holding the judge's API key "
                             f"is not set (for a server without authentication set it to any value, e.g. "
                             f"{api_key_env}=EMPTY)")
        self.name = f"openai:{model}"
        self.model, self.max_tokens, self.max_retries = model, max_tokens, max_retries
        self.endpoint = public_endpoint(base_url)
        # the endpoint is part of the judge: another server may serve another model (or build) under the same name
        self.cache_id = f"{self.name} at {endpoint_id(base_url)} max_tokens={max_tokens} temperature=0"
        self._limiter = RateLimiter(rpm) if rpm is not None else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self.requests_sent = 0  # every HTTP request, retries included
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._on_request]})
        # The key stays inside the client; it is not kept on this object, so it cannot end up in a repr or a log.
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries,
                                     http_client=http_client)

    def __repr__(self) -> str:
        return f"ChatCompletionsBackend(model={self.model!r}, endpoint={self.endpoint!r})"

    def _on_request(self, request) -> None:
        """httpx request hook (runs in the sending thread before every attempt): the rate limit and the counts."""
        if self._limiter is not None:
            self._limiter.wait()
        self._local.attempts = getattr(self._local, "attempts", 0) + 1
        with self._lock:
            self.requests_sent += 1

    def _failed(self, detail: str) -> JudgeError:
        return JudgeError(f"judge {self.name} at {self.endpoint}: the request failed after {self._local.attempts} "
                          f"attempt(s) (--judge-retries {self.max_retries}): {detail}")

    def request(self, system: str, user: str) -> Completion:
        """The endpoint's answer to one chat turn at temperature 0 and at most ``max_tokens`` tokens: the first
        choice's content (``read_choice``: text ``""`` and a ``failure`` when the endpoint ended the reply
        abnormally). An HTTP 200 answer without a choice (``body_error``) is retried like an HTTP 429 when its code
        is 408 / 409 / 429 / 5xx, within the same ``max_retries`` (every HTTP request counts). Raises JudgeError
        naming the endpoint (and the provider's message) once the retries are spent or on an answer that is not
        retried (401, 404, a 200 with another error, a body that is not JSON)."""
        import openai

        self._local.attempts = 0
        start = time.perf_counter()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        while True:
            sent = self._local.attempts
            # the client retries HTTP statuses itself; what is left of the budget after earlier 200-with-error answers
            client = self._client if sent == 0 else self._client.with_options(max_retries=self.max_retries - sent)
            try:
                raw = client.chat.completions.with_raw_response.create(
                    messages=messages, model=self.model, max_tokens=self.max_tokens, temperature=0.0)
            except openai.APIError as e:
                raise self._failed(f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
            try:
                body = json.loads(raw.text)
            except ValueError:
                raise self._failed(f"HTTP {raw.status_code} with a body that is not JSON: "
                                   f"{' '.join(raw.text.split())[:200]!r}") from None
            error = body_error(body)
            if error is None:
                break
            message, retryable = error
            if not retryable or self._local.attempts > self.max_retries:
                raise self._failed(f"HTTP {raw.status_code} with an error instead of a reply: {message}")
            time.sleep(_retry_delay(self._local.attempts - 1, raw.headers))
        text, failure = read_choice(body)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Completion(text, usage.get("prompt_tokens"), usage.get("completion_tokens"), self._local.attempts,
                          time.perf_counter() - start, failure)

    def complete(self, system: str, user: str) -> str:
        """The reply text of ``request``."""
        return self.request(system, user).text

    def complete_many(self, messages: list[tuple[str, str]], on_done: Callable[[int, Completion], None] | None = None,
                      progress: str | None = None) -> list[Completion]:
        """``request`` for every ``(system, user)`` pair, ``concurrency`` at a time; answers in input order.
        ``on_done(i, completion)`` runs in the calling thread as each answer arrives. The first failure cancels the
        requests not yet sent and is raised (JudgeError) once those in flight have ended."""
        from concurrent.futures import ThreadPoolExecutor, as_completed

        from tqdm.auto import tqdm

        out: list[Completion | None] = [None] * len(messages)
        if not messages:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(messages)), thread_name_prefix="judge")
        futures = {pool.submit(self.request, s, u): i for i, (s, u) in enumerate(messages)}

        def deliver(fut) -> None:
            i = futures[fut]
            out[i] = fut.result()
            if on_done is not None:
                on_done(i, out[i])

        try:
            for fut in tqdm(as_completed(futures), total=len(futures), desc=progress or "judge", unit="request",
                            disable=progress is None):
                deliver(fut)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            for fut, i in futures.items():  # answers that arrived while the failure was raised: paid for, so kept
                if out[i] is None and fut.done() and not fut.cancelled() and fut.exception() is None:
                    deliver(fut)
            raise
        pool.shutdown(wait=True)
        return out  # type: ignore[return-value]


class TransformersBackend:
    """A local chat model as judge (greedy), its prompts generated ``batch_size`` at a time by the transformers
    engine backend (``kick_hub.backends.make_engine``; only the ``Backend`` protocol is used)."""

    def __init__(self, model: str, max_new_tokens: int = 256, batch_size: int = 8) -> None:
        from kick_hub.backends import make_engine

        self.name = f"transformers:{model}"
        self.cache_id = f"{self.name} max_new_tokens={max_new_tokens} greedy"
        self.engine = make_engine(model, "transformers", batch_size=_check_count(batch_size, "judge-concurrency"))
        self.max_new_tokens = max_new_tokens

    @staticmethod
    def _prompt(system: str, user: str) -> str:
        return f"{system}\n\n{user}"

    def _generate(self, prompts: list[str]) -> list[str]:
        """``Engine.generate`` of ``prompts`` (chat template); JudgeError when any reply came from non-finite
        logits (``Engine.checked``): such a reply is not the judge's verdict."""
        before = self.engine.checked.copy()
        texts = self.engine.generate(prompts, self.max_new_tokens, chat=True)
        bad = self.engine.checked.minus(before).non_finite
        if bad:
            raise JudgeError(f"judge: {self.name} gave non-finite (NaN / inf) logits for {bad} of {len(prompts)} "
                             f"prompts; its replies are not verdicts (a float16 overflow? see docs/gpu.md)")
        return texts

    def complete(self, system: str, user: str) -> str:
        """The local model's greedy reply (at most ``max_new_tokens`` tokens) to ``system`` and ``user`` joined by
        a blank line as one user turn of its chat template (``Engine.generate(..., chat=True)``). Raises
        ValueError when that prompt plus ``max_new_tokens`` does not fit the model's context, JudgeError when the
        model's logits were non-finite."""
        return self._generate([self._prompt(system, user)])[0]

    def complete_many(self, messages: list[tuple[str, str]], on_done: Callable[[int, Completion], None] | None = None,
                      progress: str | None = None) -> list[Completion]:
        """``complete`` for every pair, one ``Engine.generate`` call per ``batch_size`` prompts (the same replies as
        one at a time: greedy, left-padded); answers in input order, ``on_done`` after each batch. Tokens: the
        prompt as the model reads it and the reply re-tokenized; seconds: the batch's time shared evenly. Raises
        JudgeError when a batch's logits were non-finite."""
        from tqdm.auto import tqdm

        prompts = [self._prompt(s, u) for s, u in messages]
        size = self.engine.batch_size
        out: list[Completion] = []
        for start in tqdm(range(0, len(prompts), size), desc=progress or "judge", unit="batch",
                          disable=progress is None):
            chunk = prompts[start:start + size]
            began = time.perf_counter()
            texts = self._generate(chunk)
            seconds = (time.perf_counter() - began) / len(chunk)
            for j, (p, text) in enumerate(zip(chunk, texts)):
                done = Completion(text, self.engine.count_tokens(p, chat=True),
                                  len(self.engine.tokenize(text)), 1, seconds)
                out.append(done)
                if on_done is not None:
                    on_done(start + j, done)
        return out


def make_backend(spec: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 rpm: float | None = None, max_retries: int = 4) -> Backend:
    """``openai:<model>`` (needs ``base_url``; ``concurrency`` requests in flight, ``rpm`` a minute) or
    ``transformers:<model id or dir>`` (``concurrency`` = prompts per generate batch; ``rpm`` and ``max_retries``
    do not apply). Raises ValueError for a bad spec or option (``ChatCompletionsBackend``)."""
    kind, _, model = spec.partition(":")
    if kind not in BACKENDS or not model:
        raise ValueError(f"judge: must be '<backend>:<model>' with backend one of {list(BACKENDS)}, got {spec!r}")
    if kind == "openai":
        if not base_url:
            raise ValueError("judge-base-url: required for the openai backend (e.g. https://api.openai.com/v1)")
        return ChatCompletionsBackend(base_url, model, api_key_env, concurrency=concurrency, rpm=rpm,
                                      max_retries=max_retries)
    return TransformersBackend(model, batch_size=concurrency)


# pairwise prompts are asked in both orders: the reference as Assistant 1 and the answer as Assistant 2, then swapped
ORDERS = ("reference-first", "answer-first")
USAGE_FIELDS = ("replies", "requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens",
                "unparsable_replies", "compared", "disagreements", "wall_s")


@dataclass
class JudgeUsage:
    """What judging cost and how it went: ``replies`` judge replies used (one per example and order),
    ``requests`` requests sent (HTTP requests, retries included, which is what the endpoint counts; prompts
    generated for a local judge), ``retries`` of them repeats, ``cache_hits`` replies not requested (from the
    verdict cache, or an identical request of the same call), ``prompt_tokens`` / ``completion_tokens`` as the
    backend reported them for the requests sent, ``unparsable_replies``, ``compared`` examples whose two orders
    both parsed and ``disagreements`` among them (the judge preferred another side, or a tie, after the swap), and
    ``wall_s`` seconds spent judging."""

    replies: int = 0
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unparsable_replies: int = 0
    compared: int = 0
    disagreements: int = 0
    wall_s: float = 0.0

    def add(self, other: "JudgeUsage") -> None:
        """Add ``other``'s counts to these."""
        for f in USAGE_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def minus(self, other: "JudgeUsage") -> "JudgeUsage":
        """These counts less ``other``'s (what was spent since ``other`` was copied)."""
        return JudgeUsage(**{f: getattr(self, f) - getattr(other, f) for f in USAGE_FIELDS})

    def copy(self) -> "JudgeUsage":
        """An independent copy of these counts."""
        return JudgeUsage(**{f: getattr(self, f) for f in USAGE_FIELDS})

    def to_dict(self) -> dict:
        """The counts as a JSON-ready dict (``wall_s`` rounded to ms)."""
        out = {f: getattr(self, f) for f in USAGE_FIELDS}
        out["wall_s"] = round(self.wall_s, 3)
        return out


@dataclass
class JudgeResult:
    """What ``Judge.score`` returns, in input order: per-criterion means (1-10 scale) over the examples with a
    verdict; each example's verdict (``per_example``: criterion -> score, the mean over the orders asked; None when
    a reply of any order is unparsable); ``unparsable`` examples without a verdict; ``replies`` (each example's raw
    replies, one per order) and ``orders`` (each order's verdict, mapped back to the record's sides: ``reference``
    is always the reference's score); ``order_names`` (``ORDERS`` for a pairwise prompt, else ``("single",)``);
    ``usage`` (``JudgeUsage``) and each example's share of it (``example_usage``)."""

    means: dict[str, float]
    per_example: list[dict | None]
    unparsable: int
    replies: list[list[str]]
    orders: list[list[dict | None]] = field(default_factory=list)
    order_names: tuple[str, ...] = ("single",)
    usage: JudgeUsage = field(default_factory=JudgeUsage)
    example_usage: list[dict] = field(default_factory=list)

    @property
    def disagreement(self) -> float | None:
        """Share of the examples compared in both orders where the judge's preference changed with the order
        (None: none compared)."""
        return self.usage.disagreements / self.usage.compared if self.usage.compared else None

    def scores(self) -> dict[str, float | int]:
        """The task-level numbers: ``judge_<criterion>`` means, ``judge_relative`` (answer / reference, LLM-KICK's
        pairwise score) for a pairwise prompt, ``judge_unparsable`` (examples without a verdict) and
        ``judge_order_disagreement`` (``disagreement``) when examples were compared in both orders."""
        out: dict = {f"judge_{k}": v for k, v in self.means.items()}
        if "answer" in self.means and "reference" in self.means and self.means["reference"]:
            out["judge_relative"] = self.means["answer"] / self.means["reference"]
        out["judge_unparsable"] = self.unparsable
        if self.disagreement is not None:
            out["judge_order_disagreement"] = self.disagreement
        return out

    def sample(self, i: int) -> dict:
        """Example ``i``'s fields for its sample record: ``judge`` (its verdict or None), ``judge_replies`` (raw
        replies, one per order), ``judge_orders`` (order -> verdict, for a prompt asked in both orders) and
        ``judge_usage`` (requests, cache_hits, prompt_tokens, completion_tokens, seconds spent on its requests)."""
        out = {"judge": self.per_example[i], "judge_replies": self.replies[i]}
        if len(self.order_names) > 1:
            out["judge_orders"] = dict(zip(self.order_names, self.orders[i]))
        out["judge_usage"] = self.example_usage[i]
        return out


def _preference(verdict: dict) -> int:
    """+1 when the answer scored above the reference, -1 below, 0 for a tie."""
    return (verdict["answer"] > verdict["reference"]) - (verdict["answer"] < verdict["reference"])


class Judge:
    """Scores answers with a backend and a versioned prompt: a pairwise prompt in both orders (``both_orders``;
    MT-Bench, Zheng et al. 2023, sec. 3.3, swaps positions for the same reason), every reply kept in the verdict
    cache (``cache``: a ``VerdictCache`` or a path; None: no cache) and reused unless ``use_cache`` is False (fresh
    replies are still written, replacing the stored ones); more than ``max_unparsable`` (a share in [0, 1]) of
    unparsable replies fails the call (JudgeError). ``usage`` adds up every call's ``JudgeUsage``."""

    def __init__(self, backend: Backend, prompt: str, cache: VerdictCache | str | Path | None = None,
                 use_cache: bool = True, max_unparsable: float = 0.5, both_orders: bool = True) -> None:
        if not 0 <= max_unparsable <= 1:
            raise ValueError(f"judge-max-unparsable: must be a share in [0, 1], got {max_unparsable!r}")
        self.backend, self.prompt = backend, load_prompt(prompt)
        self.cache = VerdictCache(cache) if isinstance(cache, (str, Path)) else cache
        self.use_cache, self.max_unparsable = use_cache, max_unparsable
        self.pairwise = "{reference}" in self.prompt["template"]
        self.order_names = (ORDERS if both_orders else ORDERS[:1]) if self.pairwise else ("single",)
        self.usage = JudgeUsage()

    @property
    def cache_id(self) -> str:
        """The backend's ``cache_id`` (its ``name`` when it has none)."""
        return getattr(self.backend, "cache_id", None) or self.backend.name

    def parse(self, reply: str) -> dict | None:
        """Criterion -> score from one reply, or None when it is unparsable."""
        return parse_reply(reply, self.prompt["parse"])

    def render(self, question: str, answer: str, reference: str | None, order: str = "single") -> str:
        """The user message for one example in one order (``answer-first`` swaps reference and answer)."""
        if order == "answer-first":
            answer, reference = reference, answer
        return self.prompt["template"].format(question=question, answer=answer, reference=reference or "")

    def failure(self, done: Completion) -> str | None:
        """Why ``done`` carries no trustworthy reply because its backend failed: its own ``failure``; else
        ``"no content"`` for an empty reply; else, for a backend with ``max_new_tokens`` (the local one, which
        reports no finish reason), a reply of that many tokens or more was cut at the limit. None: a normal reply."""
        if done.failure:
            return done.failure
        if not done.text.strip():
            return "no content"
        limit = getattr(self.backend, "max_new_tokens", None)
        if isinstance(limit, int) and done.completion_tokens is not None and done.completion_tokens >= limit:
            return f"cut at the token limit ({done.completion_tokens} of max_new_tokens {limit})"
        return None

    def fresh_verdict(self, done: Completion) -> tuple[dict | None, str | None]:
        """``(verdict, failure)`` of a reply just received: the parsed verdict (None: unparsable) and ``failure``.
        A failed reply keeps a verdict only when its text parses to the same verdict without its last line (that
        line may be cut mid-score: ``relevance: 1`` of ``relevance: 10``), so re-parsing the stored reply later gives
        the same verdict; a failed reply without a verdict is not cached."""
        failure = self.failure(done)
        parsed = self.parse(done.text)
        if failure is not None and parsed is not None:
            head = done.text.rstrip("\n").rpartition("\n")[0]
            if self.parse(head) != parsed:
                parsed = None
        return parsed, failure

    @staticmethod
    def _oriented(parsed: dict | None, order: str) -> dict | None:
        """A verdict mapped back to the record's sides (``answer-first`` swaps them)."""
        if parsed is not None and order == "answer-first":
            parsed = {"reference": parsed["answer"], "answer": parsed["reference"]}
        return parsed

    def _complete(self, messages: list[tuple[str, str]], on_done, progress: str | None) -> None:
        many = getattr(self.backend, "complete_many", None)
        if many is not None:
            many(messages, on_done, progress)
            return
        for i, (system, user) in enumerate(messages):  # a backend with ``complete`` only
            began = time.perf_counter()
            text = self.backend.complete(system, user)
            on_done(i, Completion(text, None, None, 1, time.perf_counter() - began))

    def score(self, questions: list[str], answers: list[str], references: list[str] | None = None,
              progress: str | None = None) -> JudgeResult:
        """Judge each answer (the prompt's template filled with question, answer and, for a pairwise prompt,
        reference; once per order) and parse every reply (``parse_reply``). Replies come from the cache when it
        holds them, else from the backend (``complete_many``: concurrent or batched; identical requests are sent
        once). A fresh reply is cached as it arrives unless the backend failed on it and it has no verdict
        (``fresh_verdict``): such a reply counts as unparsable here and is asked again by the next call.
        ``progress``: a tqdm bar label (None: no bar). ``means`` is empty when no example has a verdict.

        Raises ValueError when the lists differ in length or a pairwise prompt gets no ``references``;
        JudgeError when the backend fails (replies received before the failure are cached) or when more than
        ``max_unparsable`` of the replies are unparsable."""
        if len(questions) != len(answers) or (references is not None and len(references) != len(answers)):
            raise ValueError("questions/answers/references: lengths differ")
        if self.pairwise and references is None:
            raise ValueError(f"references: judge prompt {self.prompt['name']!r} is pairwise and needs references")
        began = time.perf_counter()
        system, name = self.prompt["system"], self.prompt["name"]
        calls = [(i, order, self.render(questions[i], answers[i], references[i] if references else None, order))
                 for i in range(len(answers)) for order in self.order_names]
        keys = [cache_key(self.cache_id, name, system, user) for _, _, user in calls]
        stored = self.cache.get_many(keys) if self.cache is not None and self.use_cache else {}
        # an empty stored reply is a failure an older version cached: asked again
        stored = {k: row for k, row in stored.items() if row["reply"].strip()}
        todo = [k for k in dict.fromkeys(keys) if k not in stored]
        users = {k: user for k, (_, _, user) in zip(keys, calls)}
        fresh: dict[str, Completion] = {}
        fresh_parsed: dict[str, dict | None] = {}
        failures: dict[str, str] = {}  # key -> why the endpoint gave no verdict (not cached)

        def on_done(j: int, done: Completion) -> None:
            key = todo[j]
            fresh[key] = done
            fresh_parsed[key], failure = self.fresh_verdict(done)
            if failure is not None and fresh_parsed[key] is None:
                failures[key] = failure  # the endpoint failed, not the judge: the next run asks again
            elif self.cache is not None:
                self.cache.put(key, self.cache_id, name, done.text, fresh_parsed[key], done.prompt_tokens,
                               done.completion_tokens)

        self._complete([(system, users[k]) for k in todo], on_done, progress)

        usage = JudgeUsage(replies=len(calls))
        n = len(answers)
        replies: list[list[str]] = [[] for _ in range(n)]
        orders: list[list[dict | None]] = [[] for _ in range(n)]
        example_usage = [{"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                          "seconds": 0.0} for _ in range(n)]
        charged: set[str] = set()
        for (i, order, _), key in zip(calls, keys):
            ex = example_usage[i]
            if key in fresh and key not in charged:  # the request was sent for this call
                charged.add(key)
                done = fresh[key]
                text = done.text
                counts = {"requests": done.attempts, "prompt_tokens": done.prompt_tokens or 0,
                          "completion_tokens": done.completion_tokens or 0}
                for k, v in counts.items():
                    ex[k] += v
                    setattr(usage, k, getattr(usage, k) + v)
                usage.retries += done.attempts - 1
                ex["seconds"] = round(ex["seconds"] + done.seconds, 3)
            else:
                text = fresh[key].text if key in fresh else stored[key]["reply"]
                ex["cache_hits"] += 1
                usage.cache_hits += 1
            verdict = self._oriented(fresh_parsed[key] if key in fresh else self.parse(text), order)
            usage.unparsable_replies += verdict is None
            replies[i].append(text)
            orders[i].append(verdict)

        per_example: list[dict | None] = []
        for verdicts in orders:
            if any(v is None for v in verdicts):
                per_example.append(None)
                continue
            per_example.append({k: sum(v[k] for v in verdicts) / len(verdicts) for k in verdicts[0]})
            if len(verdicts) == 2:
                usage.compared += 1
                usage.disagreements += _preference(verdicts[0]) != _preference(verdicts[1])
        usage.wall_s = time.perf_counter() - began
        self.usage.add(usage)
        if usage.replies and usage.unparsable_replies / usage.replies > self.max_unparsable:
            first = next(t for rs, vs in zip(replies, orders) for t, v in zip(rs, vs) if v is None)
            failed = [failures[k] for k in keys if k in failures]
            why = (f"; {len(failed)} of them carried no verdict because the endpoint failed (the first: "
                   f"{failed[0]}), are not cached and are asked again on the next run" if failed else "")
            raise JudgeError(
                f"judge {self.backend.name} (prompt {name}): {usage.unparsable_replies} of {usage.replies} replies "
                f"({usage.unparsable_replies / usage.replies:.0%}) could not be parsed, more than the "
                f"{self.max_unparsable:.0%} allowed (--judge-max-unparsable {self.max_unparsable:g}){why}; the "
                f"first: {' '.join(first.split())[:200]!r}")
        parsed = [p for p in per_example if p is not None]
        keys_ = parsed[0].keys() if parsed else []
        means = {k: sum(p[k] for p in parsed) / len(parsed) for k in keys_}
        return JudgeResult(means, per_example, len(per_example) - len(parsed), replies, orders, self.order_names,
                           usage, example_usage)

    def cached(self) -> int:
        """Replies of this judge and prompt the cache holds (0 without a cache)."""
        return self.cache.count(self.cache_id, self.prompt["name"]) if self.cache is not None else 0


def make_judges(spec: str | None, task_names: list[str], base_url: str | None = None,
                api_key_env: str = "OPENAI_API_KEY", prompt: str | None = None, *, concurrency: int = 8,
                rpm: float | None = None, max_retries: int = 4, cache: str | Path | None = None,
                use_cache: bool = True, max_unparsable: float = 0.5) -> dict[str, Judge] | None:
    """Task name -> ``Judge`` for each of ``task_names`` that has a judge prompt (``tasks.SPECS[n].judge_prompt``:
    icsum, instruction-following), all sharing one backend from ``spec`` (``make_backend``, with ``concurrency``,
    ``rpm`` and ``max_retries``) and one verdict cache at ``cache`` (None: no cache). ``prompt`` overrides every
    task's default prompt name; it must fit every judged task of ``task_names`` (``task_prompts``). Returns None when
    ``spec`` is empty (no judge asked for); an empty dict, building no backend, when no task in ``task_names`` is
    judged. Raises ValueError for a bad ``spec`` or option, a missing ``base_url`` or API key variable for
    ``openai:``, or an unknown prompt name or one that does not fit a task (both checked before the backend is
    built), ImportError when the openai client is not installed, and KeyError for a task name not in
    ``tasks.SPECS``."""
    if not spec:
        return None
    from kick_hub import tasks

    names = {n: prompt or tasks.SPECS[n].judge_prompt for n in task_names if tasks.SPECS[n].judge_prompt}
    for p in set(names.values()):
        load_prompt(p)
    for n, p in names.items():
        check_task_prompt(n, p)
    if not names:  # nothing to judge: no backend is built, so no option of it is needed
        return {}
    if not 0 <= max_unparsable <= 1:
        raise ValueError(f"judge-max-unparsable: must be a share in [0, 1], got {max_unparsable!r}")
    backend = make_backend(spec, base_url, api_key_env, concurrency, rpm, max_retries)
    shared = VerdictCache(cache) if cache is not None else None
    return {n: Judge(backend, p, shared, use_cache, max_unparsable) for n, p in names.items()}


def total_usage(judges: dict[str, Judge] | None) -> JudgeUsage:
    """The summed ``usage`` of ``judges`` (task -> Judge; None: nothing spent)."""
    out = JudgeUsage()
    for j in (judges or {}).values():
        out.add(j.usage)
    return out


def format_usage(usage: JudgeUsage) -> str:
    """One line for a person: requests sent (and retries), cache hits, tokens, unparsable replies, disagreements
    across orders and wall time."""
    line = (f"{usage.requests} requests ({usage.retries} retries), {usage.cache_hits} of {usage.replies} replies "
            f"from the cache, {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens, "
            f"{usage.unparsable_replies} unparsable")
    if usage.compared:
        line += f", orders disagreed on {usage.disagreements} of {usage.compared} examples"
    return line + f", {usage.wall_s:.1f} s"


def estimate(judges: dict[str, Judge], examples: dict[str, int]) -> dict[str, int]:
    """task -> the most judge requests judging ``examples[task]`` examples will send: one per example and order
    (before retries; identical requests and replies already in the cache are not sent)."""
    return {t: n * len(judges[t].order_names) for t, n in examples.items() if t in judges}


def format_estimate(judges: dict[str, Judge], examples: dict[str, int], cells: dict[str, int]) -> str:
    """The line a sweep prints before it starts: at most how many judge requests it will send (per task: cells x
    examples x orders) and how many replies of this judge the cache already holds."""
    need = estimate(judges, {t: n * cells.get(t, 0) for t, n in examples.items()})
    parts = [f"{t}: {cells.get(t, 0)} cells x {examples[t]} examples x {len(judges[t].order_names)} "
             f"order{'s' if len(judges[t].order_names) > 1 else ''}" for t in need]
    any_judge = next(iter(judges.values()), None)
    if any_judge is None:
        return "judge: no judged task"
    held = sum(j.cached() for j in {j.prompt["name"]: j for j in judges.values()}.values())
    cache = (f"; the cache holds {held} replies of this judge, reused where a request matches exactly"
             if any_judge.cache is not None and any_judge.use_cache else "; the cache is not read (--judge-no-cache)"
             if any_judge.cache is not None else "")
    return (f"judge {any_judge.backend.name}: at most {sum(need.values())} requests "
            f"({'; '.join(parts) or 'nothing left to judge'}){cache}")


def usage_from_samples(samples: list[dict]) -> dict | None:
    """What judging cost, added up from a task's sample records (``JudgeResult.sample`` fields): ``replies``,
    ``requests``, ``cache_hits``, ``prompt_tokens``, ``completion_tokens``, ``request_s`` (seconds spent on the
    requests, summed: concurrent requests overlap, so this exceeds the wall time), ``unparsable_replies``,
    ``compared`` (examples with both orders parsed) and ``disagreements``. None when no record was judged."""
    judged = [s for s in samples if "judge_usage" in s]
    if not judged:
        return None
    out = {"replies": 0, "requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
           "request_s": 0.0, "unparsable_replies": 0, "compared": 0, "disagreements": 0}
    for s in judged:
        u = s["judge_usage"]
        for k in ("requests", "cache_hits", "prompt_tokens", "completion_tokens"):
            out[k] += u.get(k, 0)
        out["request_s"] += u.get("seconds", 0.0)
        verdicts = list(s["judge_orders"].values()) if "judge_orders" in s else [s.get("judge")]
        out["replies"] += len(verdicts)
        out["unparsable_replies"] += sum(v is None for v in verdicts)
        if len(verdicts) == 2 and None not in verdicts:
            out["compared"] += 1
            out["disagreements"] += _preference(verdicts[0]) != _preference(verdicts[1])
    out["request_s"] = round(out["request_s"], 3)
    return out
