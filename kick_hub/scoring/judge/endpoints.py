"""Where verdicts come from: ``ChatCompletionsBackend`` (an OpenAI-compatible endpoint: concurrency, a
requests-per-minute limit, retries, replies that carry no verdict) and ``TransformersBackend`` (a local chat model run
by the project's engine); ``make_backend`` picks one from ``<backend>:<model>``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

BACKENDS = ("openai", "transformers")


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
