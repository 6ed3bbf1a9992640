"""The judge's verdict cache: one SQLite file (stdlib sqlite3, WAL), shared by every judge of a run.

A row holds one judge reply, keyed by ``cache_key``: the sha256 of the judge (backend, model, endpoint for the openai
backend (scheme, host, port and path; never user info or query) and decoding settings, ``Backend.cache_id``), the
prompt name (which carries its version, ``pairwise-v1``) and the exact system and user
messages sent. The verdict is always parsed again from the stored raw reply, so a change to the parser never serves a
stale verdict; the stored verdict is there for inspection. Where it lives: ``<run_dir>/judge-cache.sqlite`` for
``kick bench`` (it stays in place when ``--force`` moves results aside: its rows stay valid under any other setting),
``<cache_root>/judge-cache.sqlite`` for ``kick evaluate`` (``kick_hub.models.cache_root``). The file is never
published: the Hub pushes upload variant directories, plots and results records only.

Each row is written in its own transaction as its reply arrives, so a killed run keeps every verdict it paid for.
A reply that carries no verdict because the endpoint failed (no content, filtered, cut at the token limit, an error;
``judge.Judge.fresh_verdict``) is never written, and an empty stored reply is not reused: the next run asks again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

FILENAME = "judge-cache.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY, judge TEXT NOT NULL, prompt TEXT NOT NULL, reply TEXT NOT NULL, verdict TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, created REAL NOT NULL);
"""


def cache_key(judge: str, prompt: str, system: str, user: str) -> str:
    """The cache key (64 hex digits) of one judge request: sha256 over the judge's ``cache_id``, the prompt name and
    the exact ``system`` and ``user`` messages (JSON-encoded, so no two different requests share a key)."""
    text = json.dumps([judge, prompt, system, user], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VerdictCache:
    """Judge replies stored by ``cache_key``. The file (and its folder) is created on first use, so building a judge
    touches nothing on disk. Not thread-safe: the judge reads and writes it from the calling thread only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)  # autocommit: one row, one transaction
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """key -> ``{"reply", "prompt_tokens", "completion_tokens"}`` for the keys the cache holds."""
        out: dict[str, dict] = {}
        if not keys or (self._db is None and not self.path.exists()):
            return out
        db = self._conn()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
            chunk = unique[start:start + 500]
            rows = db.execute(f"SELECT key, reply, prompt_tokens, completion_tokens FROM verdicts WHERE key IN "
                              f"({', '.join('?' * len(chunk))})", chunk)
            for key, reply, prompt_tokens, completion_tokens in rows:
                out[key] = {"reply": reply, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        return out

    def put(self, key: str, judge: str, prompt: str, reply: str, verdict: dict | None,
            prompt_tokens: int | None, completion_tokens: int | None) -> None:
        """Store (or replace) one reply with its parsed ``verdict`` (None: unparsable) and token usage."""
        self._conn().execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (key, judge, prompt, reply, None if verdict is None else json.dumps(verdict),
                              prompt_tokens, completion_tokens, time.time()))

    def count(self, judge: str | None = None, prompt: str | None = None) -> int:
        """Rows held, optionally only those of one judge (``cache_id``) and / or prompt name; 0 before first use."""
        if self._db is None and not self.path.exists():
            return 0
        where = [(c, v) for c, v in (("judge", judge), ("prompt", prompt)) if v is not None]
        sql = "SELECT COUNT(*) FROM verdicts" + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where) if where else "")
        return self._conn().execute(sql, [v for _, v in where]).fetchone()[0]

    def __getstate__(self) -> dict:
        """Pickled (sent to another process) without its connection: the other process opens its own."""
        return {"path": self.path, "_db": None}

    def close(self) -> None:
        """Close the connection (a later call opens it again)."""
        if self._db is not None:
            self._db.close()
            self._db = None
