"""A small OpenAI-compatible chat-completions server for tests (127.0.0.1 only, stdlib http.server).

``POST /v1/chat/completions`` answers with a scripted reply: the next one of a list (cycling, one per answered request) or
``replies(body)`` for a callable, so that concurrent requests get the reply their content asks for. It records every
request body, Authorization header and arrival time, counts the requests in flight (``max_in_flight``: the most at
once), and can answer slowly (``delay`` seconds per request) or fail on purpose: ``failures`` maps an arrival number
(1 = the first request) to ``"429"`` (rate limited, with ``retry-after-ms: 20``), ``"500"`` (server error, no retry
hint), ``"drop"`` (the connection is closed without an answer), ``"slow"`` (the answer comes after
``SLOW`` seconds, past a short client timeout), or a dict: an HTTP 200 answer with that JSON body as it is (with
``retry-after-ms: 20``), for the ways an endpoint fails inside a 200 (``body``: a reply with no content, cut at the
token limit, only ``reasoning_content``, ``choices: null`` with an ``error`` object). ``usage`` in each answer
counts whitespace-separated words: ``prompt_tokens`` over the messages' contents, ``completion_tokens`` over the
reply; ``usage_totals`` sums those of the scripted answers a client could read (not the "slow" ones).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW = 1.0  # seconds a "slow" failure waits before answering


def body(content: str | None, finish_reason: str = "stop", **message: object) -> dict:
    """A chat-completions body with one choice: ``content`` (None: JSON null), ``finish_reason`` and any other
    message fields (``reasoning_content=...``), for a dict failure."""
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "judge",
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content, **message}}]}


class ChatServer:
    def __init__(self, replies: list[str] | Callable[[dict], str], delay: float = 0.0,
                 failures: dict[int, str | dict] | None = None) -> None:
        self.replies = replies if callable(replies) else list(replies)
        self.delay, self.failures = delay, dict(failures or {})
        self.requests: list[dict] = []      # every request body, in arrival order (failed ones included)
        self.auth: list[str | None] = []    # the Authorization header of each
        self.arrivals: list[float] = []     # time.monotonic() at each arrival
        self.outcomes: list[str] = []       # "200", "429", "500", "drop", "slow" or "body" (a dict failure)
        self.in_flight = self.max_in_flight = 0
        self.usage_totals = {"prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self.send_error(404)
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                    server.arrivals.append(time.monotonic())
                    number = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    server._answer(self, body, number)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict, number: int) -> None:
        failure = self.failures.get(number)
        with self._lock:
            self.outcomes.append("body" if isinstance(failure, dict) else failure or "200")
            answered = self.outcomes.count("200")
        if isinstance(failure, dict):  # a 200 whose body says the endpoint failed
            _send_json(handler, 200, failure, retry_after=True)
            return
        if failure == "drop":
            handler.close_connection = True  # no status line at all: the client sees the connection end
            return
        if failure in ("429", "500"):
            _send_json(handler, int(failure), {"error": {"message": f"injected {failure}", "type": "test"}},
                       retry_after=failure == "429")
            return
        if failure == "slow":
            time.sleep(SLOW)  # the client has given up by now; the answer below goes nowhere
        elif failure is not None:
            raise ValueError(f"failures: unknown kind {failure!r}")
        if callable(self.replies):
            reply = self.replies(body)
        else:
            reply = self.replies[(answered - 1) % len(self.replies)]
        usage = {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])),
                 "completion_tokens": len(reply.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if failure is None:  # a "slow" answer is never read, so its usage is no one's
            with self._lock:
                self.usage_totals["prompt_tokens"] += usage["prompt_tokens"]
                self.usage_totals["completion_tokens"] += usage["completion_tokens"]
        payload = json.dumps({
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "judge"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
            "usage": usage,
        }).encode()
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            if failure != "slow":
                raise

    def user_texts(self) -> list[str]:
        """The user message of every request received, in arrival order."""
        return [m["content"] for body in self.requests for m in body["messages"] if m["role"] == "user"]

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _send_json(handler, status: int, body: dict, retry_after: bool = False) -> None:
    """Answer ``handler``'s request with ``status`` and ``body`` as JSON (``retry-after-ms: 20`` when asked)."""
    payload = json.dumps(body).encode()
    handler.send_response(status)
    if retry_after:
        handler.send_header("retry-after-ms", "20")
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
