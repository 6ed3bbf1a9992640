"""Run a sweep: for every planned cell and task not yet in the store, compress (cached in the run dir), evaluate,
store. ``execute(config)`` runs the sweep of a ``SweepConfig`` (``bench.config``) under the run dir's lock, each cell
by ``cell.run_cell`` (in this process, or as a Ray task: ``ray_executor``); ``run(...)`` builds the config from
keyword arguments and takes the lock; ``runner.run_bench`` adds the report and the pushes.

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
from typing import TYPE_CHECKING

from kick_hub.bench.cell import DENSE_DISTRIBUTIONS, dense_distributions, remove_variant, run_cell, variant_dir
from kick_hub.bench.config import SweepConfig
from kick_hub.bench.plan import Cell
from kick_hub.bench.store import FILENAME, FILES, RUN_SETTINGS, Store, StoreError, local_source
from kick_hub.io import dumps, loads, public_name, write_json

if TYPE_CHECKING:
    from kick_hub.device import Placement

LOCK_FILE = ".kick-bench.lock"
OWNER_FILE = ".kick-bench.owner"  # who holds the lock: pid, host, start time, argv
ARCHIVE_DIR = "superseded"
# what a sweep writes in its run dir besides the store (moved aside together with it by ``archive``)
OUTPUTS = ("variants", "lm_eval", "report.md", "report.html", "findings.json", "sparsity.png", "nm_quant.png",
           "signals.png", DENSE_DISTRIBUTIONS)

_held: set[str] = set()  # resolved run dirs whose lock this process holds


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
                 seqlen: int | None, placement: "Placement | None" = None) -> dict:
    """The run-wide settings a cell's numbers depend on (``store.RUN_SETTINGS``), as recorded in the store. The
    device and dtype are ``placement``'s as asked (``auto`` resolves on each machine; each variant's manifest and
    results record what it resolved to)."""
    asked = placement.to_dict() if placement is not None else {}
    values = {"model": model, "data": data, "protocol": protocol, "batch_size": batch_size,
              "calibration": calibration, "nsamples": nsamples, "seqlen": seqlen,
              "device": asked.get("device", "auto"), "dtype": asked.get("dtype", "auto")}
    return {k: values[k] for k in RUN_SETTINGS}


def task_settings(task: str, limit: int | dict[str, int] | None, judge=None,
                  mcq_protocols: list[str] | None = None, data: str | None = None) -> dict:
    """One task's settings (``store.TASK_SETTINGS``): its examples limit and its judge (backend and prompt), for
    mcq-reasoning scored under several protocols (``--mcq-protocols``) their names as ``mcq_protocols``, and, given
    the ``data`` source, the identity of the task's data by content (``kick_hub.tasks.records.identity``: a digest of
    the records used and of every file read; None where the source has none of the task's data)."""
    from kick_hub.evaluation import task_limit
    from kick_hub.tasks.mcq_reasoning import check_mcq_protocols

    j = judge.get(task) if isinstance(judge, dict) else None
    name = None
    if j is not None:  # a pairwise prompt asked in both orders scores differently from one order: part of the identity
        name = f"{j.backend.name}, prompt {j.prompt['name']}" + (", both orders" if len(j.order_names) > 1 else "")
    out = {"limit": task_limit(limit, task), "judge": name}
    protocols = check_mcq_protocols(mcq_protocols)
    if task == "mcq-reasoning" and protocols:
        out["mcq_protocols"] = protocols
    if data is not None:
        from kick_hub.tasks.records import identity

        out["data"] = identity(task, data, out["limit"])
    return out


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
    data = [(name[len("data ("):-1], stored, asked) for name, stored, asked in diffs if name.startswith("data (")]
    diffs = [d for d in diffs if not d[0].startswith("data (")]
    source = next((d for d in diffs if d[0] == "data"), None)
    if source and data and local_source(source[1]) and local_source(source[2]):
        diffs = [d for d in diffs if d[0] != "data"]  # local data at another path: what matters is what differs in it
    elif source:  # another kind of source: its files differ as a matter of course
        data = []
    data = [d for d in data if f"limit ({d[0]})" not in {name for name, _, _ in diffs}]  # other records: the limit
    clauses = [f"was measured with {_sides(diffs, 1)}; this run asks {_sides(diffs, 2)}"] if diffs else []
    if data:
        clauses.append("holds results measured on other data than this run's: " +
                       "; ".join(f"{task} ({_data_change(stored, asked)})" for task, stored, asked in data))
    return (f"run-dir: {run_dir} {'; it '.join(clauses)}: use another --run-dir, or --force to move the stored "
            f"results aside (to {Path(run_dir) / ARCHIVE_DIR}/) and start over")


def _data_change(stored: dict | None, asked: dict | None) -> str:
    """What differs between two ``records.identity`` values of a task, by file: the files changed, added or gone."""
    if stored is None or asked is None:
        return "it had no data then" if stored is None else "this data source has none of it"
    have, want = stored.get("files") or {}, asked.get("files") or {}
    parts = [f"{name} changed" for name in sorted(set(have) & set(want)) if have[name] != want[name]]
    parts += [f"{name} is new" for name in sorted(set(want) - set(have))]
    parts += [f"{name} is gone" for name in sorted(set(have) - set(want))]
    if len(parts) > 6:
        parts = parts[:6] + [f"{len(parts) - 6} more files"]
    return ", ".join(parts) or "other records from the same files"


def _sides(diffs: list[tuple[str, object, object]], i: int) -> str:
    """One side (1: stored, 2: asked) of the settings in ``diffs``, each with the tasks or cells it applies to."""
    groups: dict[tuple[str, str, str], list[str]] = {}  # (setting, stored, asked) -> tasks or cells it applies to
    for name, stored, asked in diffs:
        key, _, where = name.partition(" (")
        groups.setdefault((key.replace("_", "-") if key in RUN_SETTINGS else key, _show(name, stored),
                           _show(name, asked)), []).append(where.rstrip(")"))

    return ", ".join(f"{k[0]}={k[i]}" + (f" ({', '.join(w)})" if any(w) else "") for k, w in groups.items())


def check_settings(run_dir: str | Path, settings: dict, per_task: dict[str, dict], cells: list[Cell],
                   force: bool = False) -> Path | None:
    """Refuse (StoreError) a run whose settings differ from those of the results stored in ``run_dir``; with
    ``force`` move those results aside instead and return where they went. Reads only; call it holding the lock."""
    if not (Path(run_dir) / FILENAME).exists():
        return None
    store = Store.open_readonly(run_dir)
    try:
        diffs = store.differences(settings, per_task, {c.label: c.identity() for c in cells})
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


def kept_variants(run_dir: str | Path) -> list[str]:
    """Labels of the complete variants (a manifest present) in the run dir's ``variants/``, sorted."""
    from kick_hub.variant import MANIFEST

    root = Path(run_dir) / "variants"
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).exists()) if root.is_dir() else []


def variant_bytes(model: str, placement: "Placement | None" = None) -> int | None:
    """About how many bytes one compressed variant of ``model`` takes on disk (dense storage: every parameter at
    the dtype the variant is saved in; for quantized variants an upper bound): ``kick_hub.variant.variant_bytes``
    without a spec, the estimate ``kick compress`` checks too. None when the size cannot be known (a Hub model
    offline, weights without safetensors)."""
    from kick_hub.variant import variant_bytes as estimate

    return estimate(model, placement)


def disk_need(run_dir: str | Path, todo: list[Cell], per_variant: int | None, keep_variants: str,
              at_once: int = 1) -> tuple[int, int] | None:
    """(bytes the sweep still writes at its peak, bytes free on the run dir's filesystem), or None when the variant
    size is unknown. With ``keep_variants="all"`` every cell of ``todo`` without a variant on disk adds
    ``per_variant``; with ``none`` / ``pushed`` at most ``at_once`` variants (the cells running together) exist at
    a time."""
    if per_variant is None:
        return None
    run_dir = Path(run_dir)
    have = set(kept_variants(run_dir))
    building = [c for c in todo if c.spec is not None and c.label not in have]
    n = len(building) if keep_variants == "all" else min(len(building), at_once)
    probe = next(p for p in [run_dir, *run_dir.resolve().parents] if p.exists())
    return n * per_variant, shutil.disk_usage(probe).free


def check_disk(run_dir: str | Path, todo: list[Cell], per_variant: int | None, keep_variants: str,
               at_once: int = 1) -> None:
    """Refuse (StoreError, before any model work) a sweep whose variants would not fit on the run dir's
    filesystem (``disk_need``), naming ``--keep-variants none``."""
    need = disk_need(run_dir, todo, per_variant, keep_variants, at_once)
    if need is None or need[0] <= need[1]:
        return
    from kick_hub.io import format_size as gb  # binary units, 3 significant digits: 7.94 MiB, 14.7 MiB
    n = need[0] // per_variant
    hint = ("use --keep-variants none (each variant deleted once scored: one at a time on disk) or a run dir with "
            "more space" if keep_variants == "all" else "use a run dir with more space")
    raise StoreError(f"run-dir: {run_dir} has {gb(need[1])} free but the sweep needs about {gb(need[0])} "
                     f"({n} variants x {gb(per_variant)}, --keep-variants {keep_variants}); {hint}")


def _settle(store: Store, config: SweepConfig, cell: Cell) -> None:
    """What ``config.keep_variants`` asks of a committed cell's variant: ``none`` deletes it, ``pushed`` pushes it
    to ``config.push``/<model>-<label> (recorded in the store) and then deletes it, ``all`` keeps it."""
    run_dir = config.run_dir
    if cell.spec is None or config.keep_variants == "all" or not variant_dir(run_dir, cell.label).exists():
        return
    if config.keep_variants == "pushed":
        from kick_hub.hub.push import push_variant, repo_name

        repo = f"{config.push}/{repo_name(config.model, cell.label)}"
        url = push_variant(variant_dir(run_dir, cell.label), repo, config.private, run_dir)
        store.record_push(cell.label, repo, url)
    remove_variant(run_dir, cell.label)


def run(model: str, run_dir: str | Path, cells: list[Cell], tasks: list[str], data: str = "world",
        limit: int | dict[str, int] | None = None, protocol: str = "default", judge=None, force: bool = False,
        calibration: str = "world", nsamples: int | None = None, seqlen: int | None = None, batch_size: int = 32,
        progress: bool = True, placement: "Placement | None" = None, keep_variants: str = "all",
        push: str | None = None, private: bool = False, executor: str = "local", ray_address: str | None = None,
        cell_cpus: int = 1, cell_gpus: float = 0, cell_retries: int = 2,
        mcq_protocols: list[str] | None = None) -> Store:
    """``execute`` the ``SweepConfig`` these arguments make (its fields; ValueError from its checks before any
    work), holding the run dir's lock (RunDirBusy when another process has it). Returns the store, open for
    reading. ``bench.runner.run_bench`` adds the report and the pushes."""
    config = SweepConfig(model=model, run_dir=Path(run_dir), cells=cells, tasks=tasks, data=data, limit=limit,
                         protocol=protocol, judge=judge, force=force, calibration=calibration, nsamples=nsamples,
                         seqlen=seqlen, batch_size=batch_size, progress=progress, placement=placement,
                         keep_variants=keep_variants, push=push, private=private, executor=executor,
                         ray_address=ray_address, cell_cpus=cell_cpus, cell_gpus=cell_gpus,
                         cell_retries=cell_retries, mcq_protocols=mcq_protocols)
    with hold(config.run_dir):
        return execute(config)


def execute(config: SweepConfig) -> Store:
    """Evaluate every cell of ``config`` on every task it has not been evaluated on; each finished cell is
    committed at once (resumable after a kill). Call it holding the run dir's lock (``hold``; RuntimeError
    otherwise). Settings that differ from the stored results' are refused (StoreError) before any model work, or
    with ``force`` the old results are moved aside (``check_settings``). A sweep whose variants would not fit on
    the run dir's disk (``check_disk``), or a spec the model or the calibration cannot take
    (``compress.check_plan``), is refused next. A cell whose variant is missing is compressed again.

    ``keep_variants``: ``all`` keeps every variant under ``variants/``; ``none`` deletes a cell's variant once its
    scores are committed; ``pushed`` pushes it to ``push``/<model>-<label> once committed, then deletes it.

    ``executor``: ``local`` runs the cells (``cell.run_cell``) one after another in this process, each text
    tokenized once for all of them (``backends.transformers.token_ids_shared``); ``ray`` runs
    each as a Ray task on the cluster at ``ray_address`` (``kick_hub.bench.ray_executor``: connected here, and
    disconnected on return, when this process is not connected already; ``cell_cpus`` / ``cell_gpus`` per cell, a
    cell whose worker dies retried up to ``cell_retries`` times, then recorded as failed: ``Store.failed``).
    Returns the store, open for reading."""
    if str(config.run_dir.resolve()) not in _held:
        raise RuntimeError(f"sweep.execute: call it inside sweep.hold({str(config.run_dir)!r})")
    if config.executor == "ray":  # a cluster that is not there, or has no node for a cell, is refused first
        from kick_hub.bench import ray_executor

        with ray_executor.session(config) as slots:
            return _execute(config, slots)
    from kick_hub.backends.transformers import token_ids_shared

    with token_ids_shared():  # the local cells' tokenizers: dense's, saved with each variant
        return _execute(config, 1)


def _execute(config: SweepConfig, slots: int) -> Store:
    """``execute``'s work once the executor is ready; ``slots``: cells the executor runs at once."""
    from tqdm.auto import tqdm

    from kick_hub.compress import check_plan
    from kick_hub.compress.memory import collections_skip_what_lives_now
    from kick_hub.compress.registry import PluginError

    c, run_dir = config, config.run_dir
    settings = run_settings(c.model, c.data, c.protocol, c.batch_size, c.calibration, c.nsamples, c.seqlen,
                            c.placement)
    per_task = {t: task_settings(t, c.limit, c.judge, c.protocols, c.data) for t in c.tasks}
    moved = check_settings(run_dir, settings, per_task, list(c.cells), c.force)
    if moved is not None:
        print(f"moved results measured with other settings to {moved}", file=sys.stderr)
    done: dict[str, set[str]] = {}
    if (run_dir / FILENAME).exists():  # what is done, read before anything is written
        ro = Store.open_readonly(run_dir)
        try:
            done = ro.done()
        finally:
            ro.close()
    todo = [(cell, [t for t in c.tasks if t not in done.get(cell.label, set())]) for cell in c.cells]
    sources = [cell.source for cell, missing in todo if missing and cell.source is not None]
    if sources:  # external checkpoints that are not causal LMs, need a missing package or another tokenizer
        from kick_hub.external import check_sources

        check_sources(c.model, sources, c.tasks, c.data)
    specs = [cell.spec for cell, missing in todo if missing and cell.spec is not None]
    if specs:  # variants that would not fit on the disk, or a spec the model's layers or the calibration options
        # cannot take, fail now, before the store is created or written, not at their cell
        check_disk(run_dir, [cell for cell, missing in todo if missing], variant_bytes(c.model, c.placement),
                   c.keep_variants, slots)
        # where the cells run decides the device; a Ray cell with GPUs resolves it on its GPU node
        check_plan(c.model, specs, c.calibration, c.nsamples, c.seqlen,
                   c.placement if c.executor == "local" or not c.cell_gpus else None)
    store = Store(run_dir, c.model)
    try:
        recorded = store.settings() if store.has_results() else None
        if recorded and recorded.get("data") != settings["data"]:  # the same content at another path (checked
            settings = {**settings, "data": recorded["data"]}  # above): the results keep the source they name
        if store.begin(settings):
            _discard_variants(run_dir)
        run_id = store.start_run(sys.argv)
        done = store.done()
        todo = [(cell, [t for t in c.tasks if t not in done.get(cell.label, set())]) for cell in c.cells]
        for cell, missing in todo:  # finished cells whose variant a killed run had not settled yet
            if not missing:
                _settle(store, c, cell)
        todo = [(cell, missing) for cell, missing in todo if missing]
        dense_reference(c, settings, todo)  # dense's distributions once per run, before any cell reads them

        def commit(cell: Cell, out: dict) -> None:
            # a variant's path relative to the run dir, so the run dir can be copied or moved
            if cell.source is not None:  # an external checkpoint: its Hub id, or its directory
                path = cell.source.public_source if cell.source.hub else out["path"]
            else:
                path = out["path"] if cell.spec is None else f"./variants/{cell.label}"
            store.write_cell(cell.label, cell.method, cell.identity(),
                             out["manifest"], path, out["results"], out["samples"], run_id,
                             out["seconds"], skipped=out["skipped"], task_settings=per_task)
            _settle(store, c, cell)

        if c.executor == "ray" and todo:
            from kick_hub.bench import ray_executor

            ray_executor.run(c, todo, commit, store, run_id, slots)
        else:
            # on a terminal one "cells" bar above each cell's own bars; in a log (stderr not a terminal) one line
            # per cell phase instead, since nested bars write cursor-movement codes that a log keeps as garbage
            terminal = c.progress and sys.stderr.isatty()
            with collections_skip_what_lives_now():  # the imports' objects: not rescanned at every collection
                for k, (cell, missing) in enumerate(tqdm(todo, desc="cells", unit="cell", disable=not terminal)):
                    log = None if terminal or not c.progress else (
                        lambda line, k=k, cell=cell: print(f"cell {k + 1}/{len(todo)} {cell.label}: {line}",
                                                           file=sys.stderr, flush=True))
                    try:
                        out = run_cell(c, cell, missing, log=log)
                    except PluginError as e:  # a method plugin's failure is its cell's: recorded, the sweep goes on
                        print(f"cell {cell.label} failed: {e}", file=sys.stderr, flush=True)
                        store.record_failure(cell.label, missing, str(e), 1, run_id)
                        continue
                    commit(cell, out)
    except BaseException:
        store.close()
        raise
    return store


def dense_reference(config: SweepConfig, settings: dict, todo: list[tuple[Cell, list[str]]]) -> Path | None:
    """Dense's next-token distributions on the perplexity texts for the cells of ``todo`` (cell, tasks it lacks)
    that still need perplexity, computed once per run (``scoring.fidelity.measure_reference``: the dense model
    loaded with the sweep's placement and batch size) and written atomically to ``cell.dense_distributions``; every
    cell's perplexity reads them (``cell.run_cell``). A file already there is reused when its meta matches: the
    model as the store records it (``settings``, ``run_settings``), the texts (digest), the device and dtype as
    asked, the batch size. Returns the file's path; None when no cell needs perplexity (or, in a sweep of several
    tasks, the data has none: the cells skip it too) or dense's logits were not finite (a stale file is removed,
    the cells then measure no fidelity). Raises what loading the data or the model raises."""
    if "perplexity" not in config.tasks or not any("perplexity" in missing for _, missing in todo):
        return None
    from kick_hub.backends import make_engine
    from kick_hub.evaluation import task_limit
    from kick_hub.models import resolve as resolve_model
    from kick_hub.scoring import fidelity
    from kick_hub.tasks import records as task_records

    try:
        records = task_records.load("perplexity", config.data, task_limit(config.limit, "perplexity"))
    except ValueError:
        if len(config.tasks) > 1:
            return None
        raise
    texts = [r["text"] for r in records]
    want = {"model": settings["model"], "device": settings["device"], "dtype": settings["dtype"],
            "batch_size": settings["batch_size"]}
    path = dense_distributions(config.run_dir)
    have = fidelity.stored_meta(path)
    if have is not None and all(have.get(k) == v for k, v in {**want, "texts": fidelity.texts_digest(texts),
                                                              "format": fidelity.FORMAT}.items()):
        return path
    engine = make_engine(resolve_model(config.model), placement=config.placement, batch_size=config.batch_size)
    try:
        ref = fidelity.measure_reference(engine, texts, meta=want,
                                         progress="dense distributions" if config.progress else None)
        broken = engine.checked.non_finite
    finally:
        del engine
    if broken:  # NaN / inf in dense's own logits: nothing to measure against (dense's perplexity is invalid too)
        path.unlink(missing_ok=True)
        print(f"dense distributions: dense gave non-finite logits on {broken} perplexity texts; no distribution "
              f"fidelity this run", file=sys.stderr)
        return None
    return fidelity.save_reference(ref, path)


def status(run_dir: str | Path, cells: list[Cell] | None = None, tasks: list[str] | None = None) -> str:
    """What is done in a run dir: each cell with results, the tasks it was evaluated on, whether its variant is
    kept (``kept``), was pushed and deleted (``pushed ORG/NAME``) or deleted (``deleted``), and the settings the
    results were measured with; cells that failed under the Ray executor with their error and attempts; given the
    plan (``cells``, ``tasks``), what is left. Reads only and takes no lock."""
    if not (Path(run_dir) / FILENAME).exists():
        return f"{run_dir}: no results yet"
    store = Store.open_readonly(run_dir)
    try:
        meta, rows, done = store.meta(), store.variants(), store.done()
        failed, pushed = store.failed(), store.pushed()
    finally:
        store.close()
    kept = set(kept_variants(run_dir))
    compressed = [r["label"] for r in rows if r["label"] != "dense"]
    lines = [f"{run_dir}: model {public_name(meta.get('model'))}, {len(rows)} cells done, variants kept: "
             f"{sum(1 for c in compressed if c in kept)} of {len(compressed)}"]
    if rows:
        shown = {k: meta[k] for k in ("data", "limit", "protocol", "batch_size", "calibration", "nsamples",
                                      "seqlen", "device", "dtype", "judge") if k in meta}
        lines.append("  measured with " + ", ".join(f"{k.replace('_', '-')}={_show(k, v)}" for k, v in shown.items()))

    def variant(label: str) -> str:
        if label == "dense":
            return "base model"
        if label in kept:
            return "kept"
        return f"pushed {pushed[label]['repo']}" if label in pushed else "deleted"

    lines += [f"  done  {r['label']:<24} {r['seconds']:7.1f} s  {variant(r['label']):<10} "
              f"{', '.join(sorted(done.get(r['label'], ())))}" for r in rows]
    lines += [f"  failed {f['label']:<23} after {f['attempts']} attempt(s): {f['error'].strip().splitlines()[0]}"
              for f in failed if f["error"].strip()]
    for cell in cells or []:
        have = done.get(cell.label, set())
        missing = [t for t in tasks if t not in have] if tasks is not None else ([] if have else ["all"])
        if missing:
            lines.append(f"  todo  {cell.label:<24} {', '.join(missing)}")
    return "\n".join(lines)
