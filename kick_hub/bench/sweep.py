"""Run a sweep: for every planned cell not yet in the store, compress (cached in the run dir), evaluate, store."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from kick_hub.bench.plan import Cell
from kick_hub.bench.store import Store


def variant_dir(run_dir: Path, label: str) -> Path:
    return Path(run_dir) / "variants" / label


def run(model: str, run_dir: str | Path, cells: list[Cell], tasks: list[str], data: str = "world",
        limit: int | dict[str, int] | None = None, protocol: str = "default", judge=None, force: bool = False,
        calibration: str = "world", nsamples: int = 128, seqlen: int | None = None, batch_size: int = 32,
        progress: bool = True) -> Store:
    """Evaluate every cell not yet stored; each finished cell is committed at once (resumable after a kill)."""
    from tqdm.auto import tqdm

    from kick_hub.compress import make_variant
    from kick_hub.engine import Engine, resolve_model
    from kick_hub.evaluation import evaluate
    from kick_hub.variant import MANIFEST, load_manifest

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(run_dir, model, force=force)
    run_id = store.start_run(sys.argv)
    store.set_meta(data=data, limit=json.dumps(limit), protocol=protocol)
    done = store.done()
    todo = [c for c in cells if c.label not in done]
    for cell in tqdm(todo, desc="cells", unit="cell", disable=not progress):
        start = time.perf_counter()
        if cell.spec is None:
            path, manifest = resolve_model(model), None
        else:
            vdir = variant_dir(run_dir, cell.label)
            if not (vdir / MANIFEST).exists():  # variants are written atomically: a manifest means complete
                make_variant(model, cell.spec, vdir, calibration, nsamples, seqlen, overwrite=True,
                             progress=progress)
            path, manifest = str(vdir), load_manifest(vdir)
        engine = Engine.from_name(path, batch_size=batch_size)
        out = evaluate(engine, tasks, data, limit, protocol, judge, model_name=cell.label,
                       skip_missing=len(tasks) > 1)
        store.write_cell(cell.label, cell.method, cell.spec.to_dict() if cell.spec else None, manifest, path,
                         out["results"], out["samples"], run_id, time.perf_counter() - start)
    return store


def status(run_dir: str | Path, cells: list[Cell] | None = None) -> str:
    """What is done in a run dir (and, given the plan, what is left)."""
    path = Path(run_dir) / "results.sqlite"
    if not path.exists():
        return f"{run_dir}: no results yet"
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    model = dict(db.execute("SELECT key, value FROM meta").fetchall()).get("model")
    rows = db.execute("SELECT label, seconds FROM variants ORDER BY finished").fetchall()
    db.close()
    lines = [f"{run_dir}: model {model}, {len(rows)} cells done"]
    lines += [f"  done  {label:<24} {seconds:7.1f} s" for label, seconds in rows]
    if cells is not None:
        finished = {r[0] for r in rows}
        lines += [f"  todo  {c.label}" for c in cells if c.label not in finished]
    return "\n".join(lines)
