"""Sweep disk use (``--keep-variants none`` vs ``all``), the Ray executor's overhead against the local one, and
(``--profile``) where a sweep's time goes.

    python benchmarks/bench_sweep.py            # a reduced world sweep (8 cells, 3 tasks, 16 examples each)
    python benchmarks/bench_sweep.py --full     # the default world sweep (31 cells, 100 examples per task)
    python benchmarks/bench_sweep.py --profile [--full] [--no-share-prefix] [--keep RUN_DIR]

``--profile`` runs ``kick bench`` in this process (local executor) with a timer around each phase and prints one row
per cell and one for the run: load (``make_engine``), compress (``make_variant``), data (``records.load``), each task's
``run``, statistics (per-task standard errors while evaluating; paired tests, flips, intervals in the report), store
(``Store`` methods), dense reference (dense's next-token distributions, loads included), report (``report.write``,
its statistics and store reads excluded) and other (the rest: imports, planning, argument checks). Times are
exclusive: a phase inside another (the load inside the dense reference, the statistics inside the report) counts
only in the inner one, so a row sums to the cell's wall time. Without ``--full`` it profiles ``PROFILE_SUBSET``: the
default sweep's tasks, limit and protocols on 5 of its 31 cells (dense, magnitude / Wanda / SparseGPT 50 %, GPTQ
4-bit; about 2 min on 2 idle cores). ``--no-share-prefix`` runs the engines without shared-prefix evaluation
(docs/backends.md), the path before it existed.

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

PROFILE_SUBSET = ["--methods", "magnitude", "wanda", "sparsegpt", "gptq", "--sparsities", "0.5", "--patterns",
                  "--bits", "4"]
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


class Profile:
    """Exclusive wall seconds per (cell, phase): ``wrap(phase, fn)`` charges the time spent in ``fn`` to ``phase``
    of the cell being run, less the time of phases entered inside it; a phase re-entered inside itself (a task's
    ``run`` calling itself per protocol) counts once."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = {}
        self.stack: list[list] = []  # [phase, since]
        self.cell = "(run)"
        self.order: list[str] = ["(run)"]

    def _charge(self, phase: str, secs: float) -> None:
        key = (self.cell, phase)
        self.seconds[key] = self.seconds.get(key, 0.0) + secs

    def wrap(self, phase: str, fn):
        import functools

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.stack and self.stack[-1][0] == phase:
                return fn(*args, **kwargs)
            now = time.perf_counter()
            if self.stack:
                self._charge(self.stack[-1][0], now - self.stack[-1][1])
            self.stack.append([phase, now])
            try:
                return fn(*args, **kwargs)
            finally:
                now = time.perf_counter()
                top, since = self.stack.pop()
                self._charge(top, now - since)
                if self.stack:
                    self.stack[-1][1] = now
        return timed

    def cell_wrap(self, fn):
        """``sweep.run_cell`` with its time charged to the cell's own row (``other`` until a phase starts)."""
        import functools

        @functools.wraps(fn)
        def timed(config, cell, *args, **kwargs):
            self.cell = cell.label
            self.order.append(cell.label)
            try:
                return self.wrap("other", fn)(config, cell, *args, **kwargs)
            finally:
                self.cell = "(run)"
        return timed


def install_profile(profile: Profile, share_prefix: bool) -> None:
    """Wrap the sweep's phases (module docstring) in ``profile``'s timers; ``share_prefix=False`` makes every
    transformers engine run without shared-prefix evaluation."""
    import kick_hub.backends as backends
    import kick_hub.bench.report as report
    import kick_hub.bench.sweep as sweep
    import kick_hub.compress as compress
    import kick_hub.evaluation as evaluation
    import kick_hub.scoring.stats as stats
    import kick_hub.tasks.records as records
    from kick_hub import tasks
    from kick_hub.bench.store import Store

    make_engine = backends.make_engine

    def engine(name, backend="transformers", placement=None, **kwargs):
        if backend == "transformers" and not share_prefix:
            kwargs["share_prefix"] = False
        return make_engine(name, backend, placement, **kwargs)

    backends.make_engine = profile.wrap("load", engine)
    compress.make_variant = profile.wrap("compress", compress.make_variant)
    records.load = profile.wrap("data", records.load)
    for name in tasks.TASK_NAMES:
        module = tasks.get(name)
        module.run = profile.wrap(f"task {name}", module.run)
    evaluation.task_stderrs = profile.wrap("statistics", evaluation.task_stderrs)
    for name in ("paired", "flips", "changes", "estimate", "recognition", "relative_mean", "relative_mean_difference",
                 "series", "sign_flip", "examples_needed"):
        if hasattr(stats, name):
            setattr(stats, name, profile.wrap("statistics", getattr(stats, name)))
    for name in dir(Store):
        attr = getattr(Store, name)
        if not name.startswith("__") and callable(attr) and not isinstance(attr, type):
            if isinstance(Store.__dict__.get(name), classmethod):
                continue
            setattr(Store, name, profile.wrap("store", attr))
    sweep.dense_reference = profile.wrap("dense reference", sweep.dense_reference)
    sweep.run_cell = profile.cell_wrap(sweep.run_cell)
    report.write = profile.wrap("report", report.write)


def profile_main(full: bool, share_prefix: bool, keep: Path | None = None) -> None:
    """``--profile``: one in-process ``kick bench`` in a fresh run dir (``keep``: in that dir, left in place so its
    report can be compared with another run's), then the table (module docstring)."""
    from kick_hub.cli import main as kick

    sweep_args = [] if full else PROFILE_SUBSET
    profile = Profile()
    install_profile(profile, share_prefix)
    if keep is not None and keep.exists():
        raise SystemExit(f"--keep: {keep} exists; give a new directory")
    root = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    run_dir = keep or root / "run"
    try:
        start = time.perf_counter()
        code = profile.wrap("other", kick)(["bench", "--run-dir", str(run_dir), *sweep_args])
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if code not in (0, None):
        raise SystemExit(f"kick bench exited {code}")
    phases = ["load", "compress", "data"] + [p for _, p in sorted(profile.seconds) if p.startswith("task ")]
    phases = list(dict.fromkeys(phases + ["statistics", "store", "dense reference", "report", "other"]))
    cells = profile.order[1:] + ["(run)"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    command = "python benchmarks/bench_sweep.py --profile" + (" --full" if full else "") + (
        "" if share_prefix else " --no-share-prefix")
    what = "kick bench " + (" ".join(sweep_args) if sweep_args else "(defaults)")
    print(f"\n`{command}`: {what}; {len(cells) - 1} cells, {cores} cores, shared-prefix evaluation "
          f"{'on' if share_prefix else 'off'}; wall {wall:.1f} s\n")
    print("| cell | " + " | ".join(p.removeprefix("task ") for p in phases) + " | total |")
    print("|---" * (len(phases) + 2) + "|")
    for cell in cells + ["all"]:
        vals = [sum(v for (c, p), v in profile.seconds.items() if p == phase and (cell == "all" or c == cell))
                for phase in phases]
        label = "**all**" if cell == "all" else cell
        print(f"| {label} | " + " | ".join(f"{v:.1f}" if v >= 0.05 else "-" for v in vals) + f" | {sum(vals):.1f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the default world sweep (31 cells, 100 examples per task)")
    p.add_argument("--skip-ray", action="store_true", help="only the local rows")
    p.add_argument("--profile", action="store_true", help="where the sweep's time goes, per cell and phase")
    p.add_argument("--no-share-prefix", action="store_true", help="with --profile: engines without shared prefixes")
    p.add_argument("--keep", type=Path, metavar="RUN_DIR",
                   help="with --profile: run in this new directory and keep it (its report.md, findings.json)")
    args = p.parse_args(argv)
    if args.profile:
        profile_main(args.full, not args.no_share_prefix, args.keep)
        return
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
