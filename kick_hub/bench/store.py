"""The results store: one SQLite file per run dir (stdlib sqlite3).

Tables: ``meta`` (model, schema version), ``runs`` (each invocation), ``variants`` (one row per finished cell),
``scores`` (variant, task, metric, value) and ``samples`` (per-example records). A cell is written in a single
transaction after it finishes, so a killed process leaves either the whole cell or nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, argv TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS variants (
    label TEXT PRIMARY KEY, method TEXT NOT NULL, sparsity REAL, pattern TEXT, bits INTEGER,
    spec TEXT, manifest TEXT, path TEXT, run_id INTEGER, seconds REAL, finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    label TEXT NOT NULL REFERENCES variants(label), task TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (label, task, metric));
CREATE TABLE IF NOT EXISTS samples (
    label TEXT NOT NULL REFERENCES variants(label), task TEXT NOT NULL, idx INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (label, task, idx));
"""
FILENAME = "results.sqlite"


class StoreError(ValueError):
    pass


class Store:
    """Open (or create) the store of a run dir; refuses a store made for another model unless ``force``."""

    def __init__(self, run_dir: str | Path, model: str | None, force: bool = False, create: bool = True) -> None:
        """``model=None`` opens an existing store whatever model it holds (for readers: push, report, Space)."""
        self.path = Path(run_dir) / FILENAME
        if not self.path.exists() and (model is None or not create):
            raise StoreError(f"run-dir: {run_dir} holds no {FILENAME}")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise StoreError(f"run-dir: {self.path} is not a readable kick-hub store ({e}); it was left untouched, "
                             f"move it away or choose another --run-dir") from e
        if model is None:
            model = stored.get("model", "")
        elif not stored:
            self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                                [("model", model), ("schema_version", str(SCHEMA_VERSION))])
        elif stored.get("model") != model:
            if not force:
                raise StoreError(f"run-dir: {run_dir} holds results for model {stored.get('model')!r}, not "
                                 f"{model!r}; use another --run-dir or pass --force")
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'model'", (model,))
        self.model = model

    def meta(self) -> dict:
        """Run-wide settings (model, schema version, data source, limit, protocol); ``limit`` decoded from JSON."""
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if "limit" in meta:
            meta["limit"] = json.loads(meta["limit"])
        return meta

    def set_meta(self, **values) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    def start_run(self, argv: list[str]) -> int:
        cur = self.db.execute("INSERT INTO runs (started, argv) VALUES (?, ?)", (time.time(), json.dumps(argv)))
        return cur.lastrowid

    def done(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT label FROM variants")}

    def write_cell(self, label: str, method: str, spec: dict | None, manifest: dict | None, path: str | None,
                   results: dict, samples: dict, run_id: int, seconds: float) -> None:
        """Everything about one finished cell, in one transaction (all or nothing)."""
        spec = spec or {}
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "INSERT INTO variants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (label, method, spec.get("sparsity"), spec.get("pattern"), spec.get("bits"), json.dumps(spec),
                 json.dumps(manifest) if manifest else None, path, run_id, seconds, time.time()))
            self.db.executemany("INSERT INTO scores VALUES (?, ?, ?, ?)",
                                [(label, task, metric, float(value)) for task, metrics in results.items()
                                 for metric, value in metrics.items() if isinstance(value, (int, float))])
            self.db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)",
                                [(label, task, i, json.dumps(s, ensure_ascii=False)) for task, rows in samples.items()
                                 for i, s in enumerate(rows)])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def variants(self) -> list[dict]:
        cols = ["label", "method", "sparsity", "pattern", "bits", "spec", "manifest", "path", "seconds"]
        rows = self.db.execute(f"SELECT {', '.join(cols)} FROM variants ORDER BY finished").fetchall()
        return [dict(zip(cols, r)) for r in rows]

    def scores(self) -> dict[str, dict[str, dict[str, float]]]:
        """label -> task -> metric -> value."""
        out: dict = {}
        for label, task, metric, value in self.db.execute("SELECT label, task, metric, value FROM scores"):
            out.setdefault(label, {}).setdefault(task, {})[metric] = value
        return out

    def samples(self, label: str, task: str) -> list[dict]:
        rows = self.db.execute("SELECT record FROM samples WHERE label = ? AND task = ? ORDER BY idx", (label, task))
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        self.db.close()
