"""Run a sweep: for every planned cell and task not yet in the store, compress (cached in the run dir), evaluate,
store.

One driver at a time: ``hold`` locks the run dir (an OS file lock on ``.kick-bench.lock``, released when the process
ends, however it ends) and a second driver is refused at once, naming the holder's pid and host. Readers (``kick bench
--status``, the report, push, the Space) do not take the lock.

Settings: a run whose settings differ from those the store's results were measured with is refused, naming each one
(``check_settings``), unless ``force``, which moves the old results aside (``archive``) and starts over.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kick_hub.bench.plan import Cell
from kick_hub.bench.store import FILENAME, FILES, RUN_SETTINGS, Store, StoreError
from kick_hub.io import dumps, loads, public_name, write_json

LOCK_FILE = ".kick-bench.lock"
OWNER_FILE = ".kick-bench.owner"  # who holds the lock: pid, host, start time, argv
ARCHIVE_DIR = "superseded"
# what a sweep writes in its run dir besides the store (moved aside together with it by ``archive``)
OUTPUTS = ("variants", "lm_eval", "report.md", "report.html", "findings.json", "sparsity.png", "nm_quant.png")

_held: set[str] = set()  # resolved run dirs whose lock this process holds


def variant_dir(run_dir: Path, label: str) -> Path:
    """Where the sweep keeps the compressed variant of a cell."""
    return Path(run_dir) / "variants" / label


class RunDirBusy(StoreError):
    """Another process holds the run dir's lock."""


@contextmanager
def hold(run_dir: str | Path) -> Iterator[None]:
    """Hold the run dir's driver lock for the block (re-entrant within a process); RunDirBusy at once when another
    process holds it. The lock is the OS's (``filelock``): a killed holder never leaves it behind."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _held:  # an outer block of this process holds it
        yield
        return
    lock = FileLock(str(run_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirBusy(f"run-dir: {run_dir} is in use by another kick bench ({_owner(run_dir)}); wait for it to "
                         f"finish or use another --run-dir") from None
    _held.add(key)
    try:
        write_json(run_dir / OWNER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv})
        yield
    finally:
        _held.discard(key)
        try:
            (run_dir / OWNER_FILE).unlink(missing_ok=True)
        finally:
            lock.release()


def _owner(run_dir: Path) -> str:
    """The lock holder as its owner file names it; the holder writes it just after locking, so a missing or stale
    one (a dead pid on this host) is read again for up to a second."""
    for _ in range(10):
        try:
            info = loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and (info.get("host") != socket.gethostname() or _alive(info.get("pid"))):
            break
        time.sleep(0.1)
    else:
        return "pid not recorded yet"
    argv = " ".join(str(a) for a in info.get("argv") or [])
    return f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}: {argv}"


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def run_settings(model: str, data: str, protocol: str, batch_size: int, calibration: str, nsamples: int | None,
                 seqlen: int | None) -> dict:
    """The run-wide settings a cell's numbers depend on (``store.RUN_SETTINGS``), as recorded in the store."""
    values = {"model": model, "data": data, "protocol": protocol, "batch_size": batch_size,
              "calibration": calibration, "nsamples": nsamples, "seqlen": seqlen}
    return {k: values[k] for k in RUN_SETTINGS}


def task_settings(task: str, limit: int | dict[str, int] | None, judge=None) -> dict:
    """One task's settings (``store.TASK_SETTINGS``): its examples limit and its judge (backend and prompt)."""
    from kick_hub.evaluation import task_limit

    j = judge.get(task) if isinstance(judge, dict) else None
    name = f"{j.backend.name}, prompt {j.prompt['name']}" if j is not None else None
    return {"limit": task_limit(limit, task), "judge": name}


def _show(key: str, value) -> str:
    if value is None:
        return {"nsamples": "default", "seqlen": "default", "limit": "all", "judge": "none"}.get(key.split()[0],
                                                                                              "none")
    if isinstance(value, str):
        return public_name(value) if key.split()[0] in ("model", "data", "calibration") else value
    return dumps(value)


def describe_differences(run_dir: str | Path, diffs: list[tuple[str, object, object]]) -> str:
    """The refusal message for ``Store.differences``: each setting with its stored and asked value."""
    if diffs and diffs[0][0] == "store schema":
        return (f"run-dir: {run_dir} was written by an older kick-hub (store schema {diffs[0][1]}), which did not "
                f"record the settings its results were measured with; use another --run-dir, or --force to move its "
                f"results aside (to {Path(run_dir) / ARCHIVE_DIR}/) and start over")
    groups: dict[tuple[str, str, str], list[str]] = {}  # (setting, stored, asked) -> tasks or cells it applies to
    for name, stored, asked in diffs:
        key, _, where = name.partition(" (")
        groups.setdefault((key.replace("_", "-") if key in RUN_SETTINGS else key, _show(name, stored),
                           _show(name, asked)), []).append(where.rstrip(")"))

    def side(i: int) -> str:
        return ", ".join(f"{k[0]}={k[i]}" + (f" ({', '.join(w)})" if any(w) else "") for k, w in groups.items())

    return (f"run-dir: {run_dir} was measured with {side(1)}; this run asks {side(2)}: use another --run-dir, or "
            f"--force to move the stored results aside (to {Path(run_dir) / ARCHIVE_DIR}/) and start over")


def check_settings(run_dir: str | Path, settings: dict, per_task: dict[str, dict], cells: list[Cell],
                   force: bool = False) -> Path | None:
    """Refuse (StoreError) a run whose settings differ from those of the results stored in ``run_dir``; with
    ``force`` move those results aside instead and return where they went. Reads only; call it holding the lock."""
    if not (Path(run_dir) / FILENAME).exists():
        return None
    store = Store(run_dir, None)
    try:
        diffs = store.differences(settings, per_task, {c.label: c.spec.to_dict() if c.spec else None for c in cells})
    finally:
        store.close()
    if not diffs:
        return None
    if not force:
        raise StoreError(describe_differences(run_dir, diffs))
    return archive(run_dir)


def archive(run_dir: str | Path) -> Path:
    """Move the store, the variants and the report files of ``run_dir`` into ``superseded/<time>/`` (nothing is
    deleted); returns that folder. Call it holding the lock."""
    run_dir = Path(run_dir)
    dest = run_dir / ARCHIVE_DIR / time.strftime("%Y%m%dT%H%M%S")
    while dest.exists():
        dest = dest.with_name(dest.name + "-1")
    dest.mkdir(parents=True)
    for name in (*FILES, *OUTPUTS):  # the store first: a store without its variants is still readable
        if (run_dir / name).exists():
            os.replace(run_dir / name, dest / name)
    return dest


def _discard_variants(run_dir: Path) -> None:
    """Remove variants cached in the run dir (made with settings no result was measured with)."""
    variants = run_dir / "variants"
    if variants.exists():
        gone = run_dir / f".discarded-variants-{time.time_ns()}"
        os.replace(variants, gone)  # one rename: the run dir never holds half a cache
        shutil.rmtree(gone, ignore_errors=True)


def _cached(vdir: Path, spec) -> dict | None:
    """The manifest of a complete variant in ``vdir`` made with ``spec``, or None (missing, partial, other spec)."""
    from kick_hub.variant import MANIFEST, load_manifest

    if not (vdir / MANIFEST).exists():  # variants are written atomically: a manifest means complete
        return None
    manifest = load_manifest(vdir)
    return manifest if manifest.get("spec") == loads(dumps(spec.to_dict())) else None


def run(model: str, run_dir: str | Path, cells: list[Cell], tasks: list[str], data: str = "world",
        limit: int | dict[str, int] | None = None, protocol: str = "default", judge=None, force: bool = False,
        calibration: str = "world", nsamples: int | None = None, seqlen: int | None = None, batch_size: int = 32,
        progress: bool = True) -> Store:
    """Evaluate every planned cell on every task it has not been evaluated on; each finished cell is committed at
    once (resumable after a kill). Holds the run dir's lock throughout (RunDirBusy when another process has it).
    Settings that differ from the stored results' are refused before any model work, or with ``force`` the old
    results are moved aside (``check_settings``). ``calibration`` / ``nsamples`` / ``seqlen`` are
    ``make_variant``'s (unset sizes: an id file's own shape). Returns the store, open for reading."""
    from tqdm.auto import tqdm

    from kick_hub.compress import check_plan, make_variant
    from kick_hub.engine import Engine, resolve_model
    from kick_hub.evaluation import evaluate
    from kick_hub.variant import load_manifest

    run_dir = Path(run_dir)
    settings = run_settings(model, data, protocol, batch_size, calibration, nsamples, seqlen)
    per_task = {t: task_settings(t, limit, judge) for t in tasks}
    with hold(run_dir):
        moved = check_settings(run_dir, settings, per_task, cells, force)
        if moved is not None:
            print(f"moved results measured with other settings to {moved}", file=sys.stderr)
        store = Store(run_dir, model)
        try:
            if store.begin(settings):
                _discard_variants(run_dir)
            run_id = store.start_run(sys.argv)
            done = store.done()
            todo = [(c, [t for t in tasks if t not in done.get(c.label, set())]) for c in cells]
            todo = [(c, missing) for c, missing in todo if missing]
            specs = [c.spec for c, _ in todo if c.spec is not None]
            if specs:  # a spec the model's layers or the calibration options cannot take fails now, not at its cell
                check_plan(model, specs, calibration, nsamples, seqlen)
            for cell, missing in tqdm(todo, desc="cells", unit="cell", disable=not progress):
                start = time.perf_counter()
                if cell.spec is None:
                    path, manifest = resolve_model(model), None
                else:
                    vdir = variant_dir(run_dir, cell.label)
                    manifest = _cached(vdir, cell.spec)
                    if manifest is None:
                        make_variant(model, cell.spec, vdir, calibration, nsamples, seqlen, overwrite=True,
                                     progress=progress)
                        manifest = load_manifest(vdir)
                    path = str(vdir)
                engine = Engine.from_name(path, batch_size=batch_size)
                out = evaluate(engine, missing, data, limit, protocol, judge, model_name=cell.label,
                               skip_missing=len(tasks) > 1)
                store.write_cell(cell.label, cell.method, cell.spec.to_dict() if cell.spec else None, manifest, path,
                                 out["results"], out["samples"], run_id, time.perf_counter() - start,
                                 skipped=out["config"]["skipped"], task_settings=per_task)
        except BaseException:
            store.close()
            raise
    return store


def status(run_dir: str | Path, cells: list[Cell] | None = None, tasks: list[str] | None = None) -> str:
    """What is done in a run dir: each cell with results, the tasks it was evaluated on and the settings they were
    measured with; given the plan (``cells``, ``tasks``), what is left. Reads only and takes no lock."""
    if not (Path(run_dir) / FILENAME).exists():
        return f"{run_dir}: no results yet"
    store = Store(run_dir, None)
    try:
        meta, rows, done = store.meta(), store.variants(), store.done()
    finally:
        store.close()
    lines = [f"{run_dir}: model {public_name(meta.get('model'))}, {len(rows)} cells done"]
    if rows:
        shown = {k: meta[k] for k in ("data", "limit", "protocol", "batch_size", "calibration", "nsamples",
                                      "seqlen", "judge") if k in meta}
        lines.append("  measured with " + ", ".join(f"{k.replace('_', '-')}={_show(k, v)}" for k, v in shown.items()))
    lines += [f"  done  {r['label']:<24} {r['seconds']:7.1f} s  {', '.join(sorted(done.get(r['label'], ())))}"
              for r in rows]
    for cell in cells or []:
        have = done.get(cell.label, set())
        missing = [t for t in tasks if t not in have] if tasks is not None else ([] if have else ["all"])
        if missing:
            lines.append(f"  todo  {cell.label:<24} {', '.join(missing)}")
    return "\n".join(lines)
