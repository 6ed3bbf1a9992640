"""Sweep disk use (``--keep-variants none`` vs ``all``) and the Ray executor's overhead against the local one.

    python benchmarks/bench_sweep.py            # a reduced world sweep (8 cells, 3 tasks, 16 examples each)
    python benchmarks/bench_sweep.py --full     # the default world sweep (31 cells, 100 examples per task)

Each row is one ``kick bench`` run in a fresh run dir, timed from the command's start to its exit (so Ray's rows
include starting a local Ray cluster and its workers). While it runs, the size of ``RUN_DIR/variants`` is sampled
every 0.1 s: ``peak`` is the most it held, ``final`` what is left. ``cell s`` sums the cells' own compress + evaluate
seconds as the store records them; ``outside cells`` is wall - cell s / cells run at once (start-up, loading, the
report; for Ray also starting it and its workers and moving results), and ``overhead/cell`` is the difference of that
to the local ``all`` run, per cell. On a shared machine the cells' own times vary with the load; the ``outside
cells`` column does not depend on them.

Rows: local ``all`` and ``none``; Ray with ``--cell-cpus 2`` (one cell at a time on a 2-core machine: the same work
as local, so the difference is Ray's overhead) and with ``--cell-cpus 1`` (two cells at once, one thread each).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(key, value)

REDUCED = ["--methods", "magnitude", "wanda", "gptq", "--sparsities", "0.3", "0.6", "--patterns", "2:4", "--bits",
           "4", "--tasks", "factoid-qa", "mcq-reasoning", "perplexity", "--limit", "16", "--nsamples", "16",
           "--seqlen", "128"]


def tree_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # deleted while walking
                pass
    return total


def run(run_dir: Path, sweep_args: list[str], extra: list[str]) -> dict:
    """One ``kick bench`` in ``run_dir``; wall seconds, peak and final variant bytes, cells, summed cell seconds."""
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_bytes(run_dir / "variants"))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "kick_hub.cli", "bench", "--run-dir", str(run_dir), *sweep_args,
                          *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if out.returncode != 0:
        raise SystemExit(f"kick bench {' '.join(extra)} failed:\n{out.stderr[-3000:]}")
    db = sqlite3.connect(run_dir / "results.sqlite")
    cells, cell_s = db.execute("SELECT count(*), sum(seconds) FROM variants").fetchone()
    db.close()
    return {"wall": wall, "peak": max(peak[0], tree_bytes(run_dir / "variants")),
            "final": tree_bytes(run_dir / "variants"), "cells": cells, "cell_s": cell_s}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the default world sweep (31 cells, 100 examples per task)")
    p.add_argument("--skip-ray", action="store_true", help="only the local rows")
    args = p.parse_args(argv)
    sweep_args = [] if args.full else REDUCED
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    configs = [("local", "all", ["--keep-variants", "all"], 1), ("local", "none", ["--keep-variants", "none"], 1)]
    if not args.skip_ray:
        configs += [("ray, 2 CPUs/cell", "all", ["--executor", "ray", "--cell-cpus", "2"], max(1, cores // 2)),
                    ("ray, 1 CPU/cell", "all", ["--executor", "ray", "--cell-cpus", "1"], cores)]
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    rows = []
    try:
        for executor, keep, extra, at_once in configs:
            r = run(root / f"{len(rows)}", sweep_args, extra)
            r["outside"] = r["wall"] - r["cell_s"] / at_once
            rows.append((executor, keep, r))
            print(f"done: {executor} --keep-variants {keep}: {rows[-1][2]['wall']:.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = rows[0][2]["outside"]
    mb = lambda b: f"{b / 1e6:.1f} MB"  # noqa: E731
    what = "default world sweep" if args.full else "reduced world sweep (" + " ".join(REDUCED) + ")"
    print(f"\n{what}, {rows[0][2]['cells']} cells, {cores} cores\n")
    print("| executor | --keep-variants | wall | cell s (sum) | outside cells | overhead/cell | variants peak | "
          "variants final |")
    print("|---|---|---|---|---|---|---|---|")
    for executor, keep, r in rows:
        print(f"| {executor} | {keep} | {r['wall']:.1f} s | {r['cell_s']:.1f} s | {r['outside']:.1f} s | "
              f"{(r['outside'] - base) / r['cells']:+.2f} s | {mb(r['peak'])} | {mb(r['final'])} |")


if __name__ == "__main__":
    main()
