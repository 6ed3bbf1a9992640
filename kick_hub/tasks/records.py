"""Task records by task id: ``load(task, source, limit)`` reads task ``task``'s records from the embedded world
(``world`` / ``world-heldout``), a local path or the Hub, ``hub_records`` / ``load_hub`` turn Hub rows into them, and
``identity`` names the data a run is measured on by content.

It lives in the tasks layer, not in ``kick_hub.data``, because it is keyed by task: it picks a task's reader and
files (sub-folders, the world's held-out set, its Hub dataset) from the task's declaration (``TaskSpec.sources`` in
``kick_hub.tasks.specs``), and builds the embedded world's files (``kick_hub.world.export.data_dir``) for the
``world`` sources. The readers themselves (``kick_hub.data``) know no task: each reads one dataset's format.
"""

from __future__ import annotations

import os
from pathlib import Path

from kick_hub.data import WORLD_SOURCES, _files_read, check_source, hub_dataset, records_digest
from kick_hub.tasks.specs import SPECS, spec


def _sources(task: str):
    """The ``Sources`` of task ``task`` from its declaration (ValueError naming ``task`` otherwise)."""
    return spec(task).sources


def hub_records(task: str, rows, name: str, split: str, dev_rows=None) -> list[dict]:
    """Hub rows (any iterable of dicts, e.g. a ``datasets.Dataset``) of dataset ``name`` -> records of ``task``,
    each row checked like a local file's (errors name the dataset, split and row index); ``dev_rows`` are the
    few-shot rows of a task that has them (mcq-reasoning)."""
    hub = _sources(task).hub
    if hub is None:
        raise ValueError(f"data: no Hub source for {task!r} (use a local path)")
    return hub.records(rows, name, split, dev_rows)


def load_hub(task: str, dataset_id: str | None = None) -> list[dict]:
    """The real dataset of ``task`` from the Hub (needs network; honours HF_DATASETS_OFFLINE: offline without a
    cached copy, or an unreachable Hub, is a ValueError naming ``data``, see ``hub_dataset``)."""
    hub = _sources(task).hub
    if hub is None:
        allowed = sorted(t for t, s in SPECS.items() if s.sources.hub)
        raise ValueError(f"data: no Hub source for {task!r}; allowed: {allowed} (use a local path)")
    name = dataset_id or hub.dataset
    rows = hub_dataset(name, hub.config, split=hub.split)
    dev = hub_dataset(name, hub.config, split=hub.fewshot_split) if hub.fewshot_split else None
    return hub.records(rows, name, hub.split, dev)


def load(task: str, source: str = "world", limit: int | None = None) -> list[dict]:
    """Records of task ``task`` (its id, e.g. ``factoid-qa``) from ``source``: ``world`` / ``world-heldout``, a
    local path (a dataset's file or folder, or a data root holding the task's folder), ``hub`` (the task's Hub
    dataset) or ``hub:<dataset id>``."""
    sources = _sources(task)
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit: must be a positive integer, got {limit!r}")
    check_source(source)
    if source in WORLD_SOURCES:
        from kick_hub.world.export import data_dir

        sub = sources.folders[0] + ("-heldout" if source == "world-heldout" and sources.heldout else "")
        records = sources.load(data_dir() / sub)
    elif source == "hub" or source.startswith("hub:"):
        records = load_hub(task, source[4:] or None)
    else:
        sub = next((Path(source) / d for d in sources.folders if (Path(source) / d).is_dir()), None)
        records = sources.load(sub or source)
    return records[:limit] if limit else records


def identity(task: str, source: str = "world", limit: int | None = None) -> dict | None:
    """The identity of the data a run of ``task`` on ``source`` with ``limit`` examples is measured on, by content,
    not by path: ``{"digest": records_digest of the records used (each record carries everything its prompt is
    built from: question, context, few-shot examples), "files": {name: SHA-256 prefix (16 hex digits)} of every
    file the loader read}`` (the files name what changed when the digest does),
    file names relative to the source (the world's data folder for ``world``), never absolute. None when ``source``
    holds no data of ``task`` (``load``'s ValueError; the sweep skips such a task)."""
    token = _files_read.set({})
    try:
        records = load(task, source, limit)
        files = _files_read.get() or {}
    except ValueError:
        return None
    finally:
        _files_read.reset(token)
    if source in WORLD_SOURCES:
        from kick_hub.world.export import data_dir

        root = data_dir()
    else:
        root = Path(source) if os.path.exists(source) else None
        root = root.parent if root is not None and root.is_file() else root
    names = {}
    for path, digest in files.items():
        try:
            name = path.resolve().relative_to(root.resolve()).as_posix() if root is not None else path.name
        except ValueError:
            name = path.name
        names[name] = digest
    return {"digest": records_digest(records), "files": dict(sorted(names.items()))}
