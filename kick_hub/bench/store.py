"""The results store: one SQLite file per run dir (stdlib sqlite3).

Tables: ``meta`` (model, schema version, settings), ``runs`` (each invocation), ``variants`` (one row per cell
with results), ``evaluated`` (one row per cell and task evaluated, or skipped for want of data), ``scores`` (variant,
task, metric, value) and ``samples`` (per-example records). A cell's tasks are written in a single transaction after
they finish, so a killed process leaves either all of them or nothing.

Settings: every number in a store was measured with the settings the store records, and a run asking for other ones
is refused (``differences`` lists them). ``meta.settings`` holds the run-wide ones (model, data, protocol, batch
size, calibration source / nsamples / seqlen, the device type and dtype the models ran in), recorded when a run starts and fixed once the store holds a result;
``meta.task_settings`` holds each task's (examples limit, judge, and ``data``: the identity of its data by content,
``kick_hub.tasks.records.identity``, whose ``digest`` is compared and whose ``files`` name what changed), recorded
with the first cell evaluated on it; the compression spec of each cell (including its seed) is ``variants.spec``. A
store of schema 1 recorded none of this; task settings recorded before ``data`` existed are compared on what they hold.

Paths: ``variants.path`` of a model inside the run dir is stored relative to it (``./variants/<label>``) and read back
as a path of the run dir wherever it now is (``variants``), so a run dir can be copied or moved; an older store's
absolute ``.../variants/<label>`` is read as this run dir's own. The run's identity (``run_identity``) is derived from
its creation record, never from a path.

Readers open the store read-only (``open_readonly``), also where nothing can be written (read-only media): SQLite's
``mode=ro``, else ``immutable=1``, else (a killed driver's unmerged ``-wal``) a private copy. Only a file that is not a
kick-hub store is reported as one.

Sweep bookkeeping: ``failed`` holds the cells a Ray sweep gave up on (error, attempts so far; a cell's row goes when
its results are written) and ``pushed`` the variants pushed to the Hub by ``--keep-variants pushed`` (repo, commit
URL) before their local copy was deleted. Both tables are added to an existing store by the driver (``CREATE TABLE
IF NOT EXISTS``), so a store without them is still read: as empty.

Non-finite numbers: a score that is not finite (a broken model's perplexity) is stored in ``scores.value`` as the
TEXT ``'inf'``, ``'-inf'`` or ``'nan'`` (SQLite would turn a NaN REAL into NULL), and ``scores()`` reads it back as a
float; the JSON columns (``spec``, ``manifest``, ``samples.record``) hold strict JSON from ``kick_hub.io.dumps``.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sqlite3
import time
from pathlib import Path

from kick_hub.io import dumps, loads, non_finite_token

SCHEMA_VERSION = 2
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
CREATE TABLE IF NOT EXISTS evaluated (
    label TEXT NOT NULL REFERENCES variants(label), task TEXT NOT NULL, skipped TEXT, run_id INTEGER,
    finished REAL NOT NULL, PRIMARY KEY (label, task));
CREATE TABLE IF NOT EXISTS failed (
    label TEXT PRIMARY KEY, tasks TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, run_id INTEGER,
    failed REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pushed (label TEXT PRIMARY KEY, repo TEXT NOT NULL, url TEXT, pushed REAL NOT NULL);
"""
FILENAME = "results.sqlite"
FILES = (FILENAME, f"{FILENAME}-wal", f"{FILENAME}-shm", f"{FILENAME}-journal")  # the store and SQLite's side files
RUN_SETTINGS = ("model", "data", "protocol", "batch_size", "calibration", "nsamples", "seqlen", "device", "dtype")
# settings added after stores of this schema were written, with the value every older run had (no option: auto)
SETTING_DEFAULTS = {"device": "auto", "dtype": "auto"}
TASK_SETTINGS = ("limit", "judge", "mcq_protocols", "data")  # mcq_protocols: only when --mcq-protocols was given
# task settings a store written before they existed does not hold: not compared there (nothing to compare with)
TASK_SETTINGS_ADDED = ("data",)


class StoreError(ValueError):
    """A run dir's store cannot be used as asked (unreadable, another model's, other settings); CLI exit 2."""


class Store:
    """A run dir's results store, opened for reading (``model=None``) or by the sweep driver (``model`` given)."""

    def __init__(self, run_dir: str | Path, model: str | None, create: bool = True) -> None:
        """``model=None`` opens an existing store whatever it holds and writes nothing (readers: status, report,
        push, push-results, the Space, cards: ``open_readonly``), also on read-only media. With a ``model`` the
        driver opens it: created when missing and ``create``; an older store without results is upgraded, one with
        results of an older schema or of another model is refused (StoreError)."""
        self.path = Path(run_dir) / FILENAME
        self._scratch = None  # a private copy a reader opened instead (``_connect_readonly``)
        if not self.path.exists() and (model is None or not create):
            raise StoreError(f"run-dir: {run_dir} holds no {FILENAME}")
        try:
            if model is None:  # readers cannot write: SQLite's read-only mode
                self.db = self._connect_readonly()
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if model is not None and not tables:  # a new store
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(SCHEMA)
                tables = self._tables()
            if not {"meta", "variants"} <= tables:
                raise sqlite3.DatabaseError(f"no kick-hub tables; it holds {sorted(tables) or 'none'}")
            stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
            results = self.db.execute("SELECT 1 FROM variants LIMIT 1").fetchone() is not None
        except sqlite3.OperationalError as e:  # cannot open or lock it (permissions, media, busy): not broken
            self._drop()
            raise StoreError(f"run-dir: {self.path} cannot be opened here ({e}); the store was left as it is") \
                from e
        except sqlite3.DatabaseError as e:
            self._drop()
            raise StoreError(f"run-dir: {self.path} is not a readable kick-hub store ({e}); it was left untouched, "
                             f"move it away or choose another --run-dir") from e
        self.schema_version = int(stored.get("schema_version", SCHEMA_VERSION))
        if model is None:
            self.model = stored.get("model", "")
            return
        if results and self.schema_version != SCHEMA_VERSION:
            self.db.close()
            raise StoreError(f"run-dir: {run_dir} was written by an older kick-hub (store schema "
                             f"{self.schema_version}), which did not record the settings its results were measured "
                             f"with; use another --run-dir, or --force to move them aside")
        if results and stored.get("model") != model:
            self.db.close()
            raise StoreError(f"run-dir: {run_dir} holds results for model {stored.get('model')!r}, not {model!r}; "
                             f"use another --run-dir, or --force to move them aside")
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)  # adds what an older store lacks
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise StoreError(f"run-dir: {self.path} is not a writable kick-hub store ({e})") from e
        if not results:  # nothing measured yet: the store takes this model (and, in ``begin``, this run's settings)
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [("model", model), ("schema_version", str(SCHEMA_VERSION))])
            self.schema_version = SCHEMA_VERSION
        self.model = model

    @classmethod
    def open_readonly(cls, run_dir: str | Path) -> "Store":
        """The store of ``run_dir`` opened for reading only: the one way readers open it. Works on a store the
        process cannot write (read-only media, a read-only bind mount, another user's files); StoreError when
        there is none or it is not a kick-hub store."""
        return cls(run_dir, None)

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection (``mode=ro``). Where that cannot open the store because its directory is not
        writable (a WAL store needs its ``-shm`` file, which SQLite creates beside it), the store is opened as
        ``immutable=1`` (nothing can change it there), or, when its ``-wal`` still holds writes a killed driver
        never merged, a private copy of the store and its ``-wal`` is opened instead."""
        uri = self.path.resolve().as_uri()
        db = None
        try:
            db = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, timeout=30)
            db.execute("SELECT name FROM sqlite_master").fetchall()
            return db
        except sqlite3.OperationalError:
            if db is not None:
                db.close()
            if os.access(self.path.parent, os.W_OK):  # not read-only media: the error is real
                raise
        wal = self.path.with_name(f"{FILENAME}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            import tempfile

            self._scratch = tempfile.TemporaryDirectory(prefix="kick-store-")
            for name in (FILENAME, f"{FILENAME}-wal"):
                shutil.copyfile(self.path.with_name(name), Path(self._scratch.name) / name)
            return sqlite3.connect(Path(self._scratch.name) / FILENAME, isolation_level=None, timeout=30)
        db = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, timeout=30)
        db.execute("SELECT name FROM sqlite_master").fetchall()
        return db

    def _drop(self) -> None:
        """Close what ``__init__`` opened before it failed."""
        if getattr(self, "db", None) is not None:
            self.db.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def has_results(self) -> bool:
        """Whether any cell has been written."""
        return self.db.execute("SELECT 1 FROM variants LIMIT 1").fetchone() is not None

    def settings(self) -> dict | None:
        """The run-wide settings (``RUN_SETTINGS`` keys) every result was measured with; None before any run
        recorded them (and in a schema-1 store)."""
        raw = self._meta().get("settings")
        return {**SETTING_DEFAULTS, **loads(raw)} if raw else None

    def task_settings(self) -> dict[str, dict]:
        """task -> its settings (``TASK_SETTINGS`` keys) for every task a cell was evaluated on."""
        raw = self._meta().get("task_settings")
        return loads(raw) if raw else {}

    def measured_tasks(self) -> set[str]:
        """Tasks with at least one score."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT task FROM scores")}

    def meta(self) -> dict:
        """What readers label results with: ``model``, ``schema_version`` and the settings the numbers were
        measured with: ``data``, ``protocol``, ``batch_size``, ``calibration``, ``nsamples``, ``seqlen``, ``device``,
        ``dtype``, ``limit``
        (examples per task: one value when every measured task shares it, else task -> value) and ``judge`` (task ->
        judge, for judged tasks). A schema-1 store gives what it has (``data``, ``limit``, ``protocol``), as the
        last run there set it."""
        meta = self._meta()
        if "limit" in meta:
            meta["limit"] = loads(meta["limit"])
        meta.pop("task_settings", None)
        settings = {**SETTING_DEFAULTS, **loads(meta.pop("settings"))} if meta.get("settings") else None
        if settings is not None:
            meta.update({k: v for k, v in settings.items() if k != "model"})
        per_task = self.task_settings()
        measured = [t for t in per_task if t in self.measured_tasks()]
        if measured:
            limits = {t: per_task[t].get("limit") for t in measured}
            values = {dumps(v) for v in limits.values()}
            meta["limit"] = next(iter(limits.values())) if len(values) == 1 else limits
            judges = {t: per_task[t]["judge"] for t in measured if per_task[t].get("judge")}
            if judges:
                meta["judge"] = judges
        return meta

    def differences(self, settings: dict, task_settings: dict[str, dict],
                    specs: dict[str, dict | None]) -> list[tuple[str, object, object]]:
        """(setting, stored, asked) for every setting of a run asking for ``settings`` (run-wide), ``task_settings``
        (task -> settings) and ``specs`` (cell label -> compression spec dict, None for dense) that differs from what
        this store's results were measured with. Empty when the store holds no results. A schema-1 store with
        results gives one entry, ``store schema``."""
        if not self.has_results():
            return []
        if self.schema_version != SCHEMA_VERSION:
            return [("store schema", self.schema_version, SCHEMA_VERSION)]
        out = []
        stored = self.settings() or {}
        stored.setdefault("model", self.model)
        recorded = self.task_settings()
        for key in RUN_SETTINGS:
            if key in settings and stored.get(key) != settings[key]:
                if key == "data" and _same_content(stored.get(key), settings[key], recorded, task_settings):
                    continue  # the same data at another path (a moved file, another machine)
                out.append((key, stored.get(key), settings[key]))
        for task, asked in task_settings.items():
            for key in TASK_SETTINGS:
                if task not in recorded or (key in TASK_SETTINGS_ADDED and key not in recorded[task]):
                    continue
                if key == "data" and asked.get(key) is not None and recorded[task].get(key) is not None:
                    if asked[key]["digest"] != recorded[task][key]["digest"]:
                        out.append((f"{key} ({task})", recorded[task][key], asked[key]))
                elif recorded[task].get(key) != asked.get(key):
                    out.append((f"{key} ({task})", recorded[task].get(key), asked.get(key)))
        cells = dict(self.db.execute("SELECT label, spec FROM variants").fetchall())
        for label, spec in specs.items():
            if label not in cells:
                continue
            have, want = loads(cells[label]) if cells[label] else {}, loads(dumps(spec or {}))
            for key in sorted(set(have) | set(want)):
                if have.get(key) != want.get(key):
                    out.append((f"{key} ({label})", have.get(key), want.get(key)))
        return out

    def begin(self, settings: dict) -> bool:
        """Record ``settings`` (run-wide) as the ones this run measures with. A store with results must already
        hold exactly these (StoreError otherwise: callers check ``differences`` first); a store without results
        takes them. True when the settings recorded before differed in what compressed variants depend on (model,
        calibration, nsamples, seqlen), so that variants cached in the run dir were made otherwise."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            stored = self.settings()
            if self.has_results():
                if stored != settings:
                    raise StoreError(f"run-dir: {self.path.parent} holds results measured with {stored}, not "
                                     f"{settings}")
                stale = False
            else:
                keys = ("model", "calibration", "nsamples", "seqlen")
                stale = stored is None or any(stored.get(k) != settings.get(k) for k in keys)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (dumps(settings),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return stale

    def run_identity(self) -> str:
        """A stable id of the run this store holds (16 hex digits), derived from its creation record (the model and
        the start time of its first invocation, ``runs`` row 1), never from a path: the same wherever the run dir is
        copied or moved and after every resume, new when results start over (``--force`` moves the store aside)."""
        row = self.db.execute("SELECT started FROM runs ORDER BY id LIMIT 1").fetchone()
        return hashlib.sha256(dumps([self.model, repr(row[0]) if row else None]).encode()).hexdigest()[:16]

    def start_run(self, argv: list[str]) -> int:
        """Record one invocation (its argv); returns its id."""
        cur = self.db.execute("INSERT INTO runs (started, argv) VALUES (?, ?)", (time.time(), dumps(argv)))
        return cur.lastrowid

    def done(self) -> dict[str, set[str]]:
        """label -> tasks evaluated on that cell (scored, or skipped for want of data)."""
        out: dict[str, set[str]] = {}
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        query = "SELECT label, task FROM evaluated" if "evaluated" in tables else \
            "SELECT DISTINCT label, task FROM scores"  # a schema-1 store (read only) records no skipped tasks
        for label, task in self.db.execute(query):
            out.setdefault(label, set()).add(task)
        return out

    def write_cell(self, label: str, method: str, spec: dict | None, manifest: dict | None, path: str | None,
                   results: dict, samples: dict, run_id: int, seconds: float, skipped: dict[str, str] | None = None,
                   task_settings: dict[str, dict] | None = None) -> list[str]:
        """One cell's evaluated tasks (``results`` / ``samples``: task -> ...; ``skipped``: task -> why it had no
        data; ``path``: the model evaluated, stored relative to the run dir when it lies in it), in one transaction (all or nothing), with the settings of each task (``task_settings``) when they
        are not recorded yet. A task already stored for this cell (another writer got there first) is left as it
        is. Returns the tasks written."""
        spec = spec or {}
        skipped = skipped or {}
        path = self._stored_path(path)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            have = {r[0] for r in self.db.execute("SELECT task FROM evaluated WHERE label = ?", (label,))}
            have |= {r[0] for r in self.db.execute("SELECT DISTINCT task FROM scores WHERE label = ?", (label,))}
            tasks = [t for t in [*results, *skipped] if t not in have]
            if tasks:
                now = time.time()
                self.db.execute(
                    "INSERT OR IGNORE INTO variants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (label, method, spec.get("sparsity"), spec.get("pattern"), spec.get("bits"), dumps(spec),
                     dumps(manifest) if manifest else None, path, run_id, 0.0, now))
                self.db.execute("UPDATE variants SET seconds = seconds + ?, finished = ?, path = ?, "
                                "manifest = COALESCE(?, manifest) WHERE label = ?",
                                (seconds, now, path, dumps(manifest) if manifest else None, label))
                self.db.executemany("INSERT INTO evaluated VALUES (?, ?, ?, ?, ?)",
                                    [(label, t, skipped.get(t), run_id, now) for t in tasks])
                self.db.executemany("INSERT INTO scores VALUES (?, ?, ?, ?)",
                                    [(label, task, metric, _score_value(value)) for task in tasks
                                     for metric, value in results.get(task, {}).items()
                                     if isinstance(value, (int, float))])
                self.db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)",
                                    [(label, task, i, dumps(s)) for task in tasks
                                     for i, s in enumerate(samples.get(task, []))])
                if task_settings:
                    recorded = self.task_settings()
                    new = {t: task_settings[t] for t in tasks if t in task_settings and t not in recorded}
                    if new:
                        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('task_settings', ?)",
                                        (dumps({**recorded, **new}),))
            if "failed" in self._tables():  # a cell with results is no longer a failed one
                self.db.execute("DELETE FROM failed WHERE label = ?", (label,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return tasks

    def _tables(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def record_failure(self, label: str, tasks: list[str], error: str, attempts: int, run_id: int) -> int:
        """Record that cell ``label`` failed on ``tasks`` with ``error`` after ``attempts`` tries in this run (added
        to those of earlier runs); returns the attempts so far. A later ``write_cell`` of the cell removes it."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT attempts FROM failed WHERE label = ?", (label,)).fetchone()
            total = attempts + (row[0] if row else 0)
            self.db.execute("INSERT OR REPLACE INTO failed VALUES (?, ?, ?, ?, ?, ?)",
                            (label, dumps(list(tasks)), error, total, run_id, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return total

    def failed(self) -> list[dict]:
        """Cells recorded as failed and not written since, oldest first: dicts of label, tasks, error, attempts."""
        if "failed" not in self._tables():
            return []
        rows = self.db.execute("SELECT label, tasks, error, attempts FROM failed ORDER BY failed").fetchall()
        return [{"label": r[0], "tasks": loads(r[1]), "error": r[2], "attempts": r[3]} for r in rows]

    def record_push(self, label: str, repo: str, url: str | None) -> None:
        """Record that variant ``label`` was pushed to ``repo`` (commit ``url``)."""
        self.db.execute("INSERT OR REPLACE INTO pushed VALUES (?, ?, ?, ?)", (label, repo, url, time.time()))

    def pushed(self) -> dict[str, dict]:
        """label -> ``{"repo", "url"}`` for every variant ``record_push`` recorded."""
        if "pushed" not in self._tables():
            return {}
        return {r[0]: {"repo": r[1], "url": r[2]} for r in self.db.execute("SELECT label, repo, url FROM pushed")}

    def variants(self) -> list[dict]:
        """Every recorded variant, oldest finished first, as dicts of label, method, sparsity, pattern, bits, spec
        and manifest (JSON text; manifest None for dense), path (the model evaluated: a variant's directory in this
        run dir, wherever the run dir now is; ``_read_path``), and seconds (compress + evaluate time so far)."""
        cols = ["label", "method", "sparsity", "pattern", "bits", "spec", "manifest", "path", "seconds"]
        rows = self.db.execute(f"SELECT {', '.join(cols)} FROM variants ORDER BY finished").fetchall()
        out = [dict(zip(cols, r)) for r in rows]
        for v in out:
            v["path"] = self._read_path(v["label"], v["path"])
        return out

    def _stored_path(self, path: str | None) -> str | None:
        """``path`` as the store keeps it: an existing path inside the run dir as ``./`` + its path relative to the
        run dir (so the run dir can be copied or moved), anything else (a Hub id, a model elsewhere) as given."""
        if not path or str(path).startswith("./"):
            return path
        p = Path(path)
        if not p.exists():
            return str(path)
        try:
            return "./" + p.resolve().relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _read_path(self, label: str, path: str | None) -> str | None:
        """A stored path as a path of this run dir, wherever it is now: ``./...`` under the run dir; an absolute
        path an older store recorded for the sweep's own ``variants/<label>`` as this run dir's ``variants/<label>``
        (never the original run dir's, which may still be there); anything else as stored."""
        if not path:
            return path
        if path.startswith("./"):
            return str(self.path.parent / path[2:])
        p = Path(path)
        if p.is_absolute() and p.parts[-2:] == ("variants", label):
            return str(self.path.parent / "variants" / label)
        return path

    def scores(self) -> dict[str, dict[str, dict[str, float]]]:
        """label -> task -> metric -> value (non-finite values as ``inf`` / ``-inf`` / ``nan`` floats)."""
        out: dict = {}
        for label, task, metric, value in self.db.execute("SELECT label, task, metric, value FROM scores"):
            out.setdefault(label, {}).setdefault(task, {})[metric] = float(value) if isinstance(value, str) else value
        return out

    def samples(self, label: str, task: str) -> list[dict]:
        """The per-example records of ``task`` for variant ``label``, in example order; ``[]`` when none are
        stored."""
        rows = self.db.execute("SELECT record FROM samples WHERE label = ? AND task = ? ORDER BY idx", (label, task))
        return [loads(r[0]) for r in rows]

    def close(self) -> None:
        """Close the SQLite connection; the store cannot be used afterwards."""
        self.db.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


def local_source(source: object) -> bool:
    """Whether a ``data`` setting is a local path (not ``world`` / ``world-heldout`` / ``hub`` / ``hub:<id>``)."""
    return isinstance(source, str) and source not in ("world", "world-heldout", "hub") and \
        not source.startswith("hub:")


def _same_content(stored: object, asked: object, recorded: dict[str, dict], task_settings: dict[str, dict]) -> bool:
    """Whether data source ``asked`` is ``stored`` at another path: both local paths (``local_source``), and every
    task of this run with stored results has the recorded data digest."""
    if not (local_source(stored) and local_source(asked)):
        return False
    tasks = [t for t in task_settings if t in recorded]
    return bool(tasks) and all(
        isinstance(recorded[t].get("data"), dict) and isinstance(task_settings[t].get("data"), dict)
        and recorded[t]["data"]["digest"] == task_settings[t]["data"]["digest"] for t in tasks)


def _score_value(value: float) -> float | str:
    """A score as stored: a finite number as REAL, a non-finite one as its TEXT token (``'inf'``, ``'nan'``)."""
    value = float(value)
    return value if math.isfinite(value) else non_finite_token(value)
