"""The LLM judge's wall time: 80 Vicuna-style answers judged against a local OpenAI-compatible server that takes 1 s
per request (tests/chat_server.py on 127.0.0.1), sequential vs concurrent, and a rerun served by the verdict cache.

    python benchmarks/bench_judge.py [--n 80] [--delay 1.0] [--concurrency 8 16]

Rows: the judge one request at a time in one order (what kick's judge did before it ran concurrently: N requests,
about N x delay seconds); the pairwise prompt in both orders (2 N requests) at each ``--concurrency``; and the same
judging again over the cache the previous row filled (no request). ``in flight`` is the most requests the server saw
at once; ``requests`` what it counted, which the judge's own accounting matches.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kick_hub.scoring.judge import ChatCompletionsBackend, Judge  # noqa: E402
from kick_hub.scoring.judge.cache import FILENAME  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402


def reply(body: dict) -> str:
    """A fixed verdict from the question's number (the server's work is only the delay)."""
    user = body["messages"][1]["content"]
    k = int(user.split("[Question]\nVicuna question ", 1)[1].split(":", 1)[0])
    return f"{6 + k % 4} {3 + k % 6}\nAssistant 1 gives more detail."


def examples(n: int) -> tuple[list[str], list[str], list[str]]:
    questions = [f"Vicuna question {k}: how would you explain topic {k} to a curious friend?" for k in range(n)]
    references = [f"A careful, detailed reference answer about topic {k}, in several sentences." for k in range(n)]
    answers = [f"The compressed model's shorter answer about topic {k}." for k in range(n)]
    return questions, answers, references


def run(server: ChatServer, n: int, concurrency: int, both_orders: bool, cache: Path | None) -> dict:
    before = len(server.requests)
    server.max_in_flight = 0
    backend = ChatCompletionsBackend(server.url, "judge", concurrency=concurrency)
    judge = Judge(backend, "pairwise-v1", cache=cache, both_orders=both_orders)
    start = time.perf_counter()
    result = judge.score(*examples(n), progress=None)
    wall = time.perf_counter() - start
    assert result.usage.requests == len(server.requests) - before  # the accounting matches the server
    return {"wall": wall, "requests": result.usage.requests, "cached": result.usage.cache_hits,
            "in_flight": server.max_in_flight, "replies": result.usage.replies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=80, help="answers to judge (default 80, Vicuna's size)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ChatServer(reply, delay=args.delay) as server:
        rows.append(("sequential, one order (before)", 1, run(server, args.n, 1, False, None)))
        for c in args.concurrency:
            rows.append(("concurrent, both orders", c, run(server, args.n, c, True, Path(tmp) / f"{c}-{FILENAME}")))
        last = args.concurrency[-1]
        rows.append(("rerun from the cache", last, run(server, args.n, last, True, Path(tmp) / f"{last}-{FILENAME}")))
    print(f"{args.n} answers, server delay {args.delay:g} s per request, python {sys.version.split()[0]}\n")
    header = f"{'judging':<32} {'concurrency':>11} {'replies':>7} {'requests':>8} {'cached':>6} {'in flight':>9} " \
             f"{'wall s':>7} {'req/s':>6}"
    print(header)
    print("-" * len(header))
    for name, c, r in rows:
        print(f"{name:<32} {c:>11} {r['replies']:>7} {r['requests']:>8} {r['cached']:>6} {r['in_flight']:>9} "
              f"{r['wall']:>7.1f} {r['requests'] / r['wall']:>6.2f}")


if __name__ == "__main__":
    main()
