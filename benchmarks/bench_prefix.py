"""Shared-prefix evaluation against the plain path: ``kick evaluate`` wall time and task time, same scores.

    python benchmarks/bench_prefix.py [--repeats 3] [--model world] [--threads N]
        [--runs "mcq-reasoning" "mcq-reasoning --mcq-protocols loglik generate" "all"]

Each run is one ``kick evaluate --model MODEL --task ...`` in this process, alternating the plain path (engines made
with ``share_prefix=False``, how evaluation ran before shared prefixes) and the shared one, ``--repeats`` times each;
the table gives medians: the whole command (load and start-up included) and the tasks' own seconds (the results
config's ``task_time_s``), and whether the scores are identical (every number in ``results``, and every sample's
output). The first run of each command is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(key, value)


def plain_engines(share: bool) -> None:
    """Make every transformers engine that ``make_engine`` builds from now on share prefixes (``share``) or not."""
    import kick_hub.backends as backends
    from kick_hub.backends.transformers import TransformersEngine

    original = getattr(backends.make_engine, "__wrapped__", backends.make_engine)

    def make_engine(*args, **kwargs):
        engine = original(*args, **kwargs)
        if isinstance(engine, TransformersEngine):
            engine.share_prefix = share
        return engine
    make_engine.__wrapped__ = original
    backends.make_engine = make_engine


def one(model: str, args: list[str], share: bool, threads: int | None, out: Path) -> tuple[float, float, dict]:
    """One in-process ``kick evaluate``: (wall s, summed task s, the output JSON)."""
    from kick_hub.cli import main as kick

    plain_engines(share)
    extra = ["--threads", str(threads)] if threads else []
    start = time.perf_counter()
    code = kick(["evaluate", "--model", model, "--task", *args, "--output", str(out), *extra])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"kick evaluate {' '.join(args)} exited {code}")
    result = json.loads(out.read_text())
    return wall, sum(result["config"]["task_time_s"].values()), result


def same(a: dict, b: dict) -> bool:
    """Identical results and sample outputs."""
    outputs = lambda r: {t: [s.get("output") for s in rows] for t, rows in r["samples"].items()}  # noqa: E731
    return a["results"] == b["results"] and outputs(a) == outputs(b)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="world")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", nargs="+", default=["mcq-reasoning", "mcq-reasoning --mcq-protocols loglik generate",
                                                   "all"])
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            words = run.split()
            one(args.model, words, True, args.threads, Path(tmp) / "warm.json")  # warm-up
            times = {False: [], True: []}
            results = {}
            for _ in range(args.repeats):
                for share in (False, True):
                    wall, task_s, result = one(args.model, words, share, args.threads, Path(tmp) / f"{share}.json")
                    times[share].append((wall, task_s))
                    results[share] = result
                    print(f"done: {run} share={share}: {wall:.1f} s", file=sys.stderr)
            med = {s: (statistics.median(w for w, _ in t), statistics.median(x for _, x in t)) for s, t in times.items()}
            rows.append((run, med[False], med[True], same(results[False], results[True])))
    threads = args.threads or "default"
    print(f"\n`python benchmarks/bench_prefix.py --model {args.model} --repeats {args.repeats}`, {cores} cores, "
          f"threads {threads}; medians\n")
    print("| kick evaluate --task | plain: wall / tasks | shared: wall / tasks | tasks time ratio | identical scores |")
    print("|---|---|---|---|---|")
    for run, plain, shared, ident in rows:
        print(f"| `{run}` | {plain[0]:.2f} s / {plain[1]:.2f} s | {shared[0]:.2f} s / {shared[1]:.2f} s | "
              f"{shared[1] / plain[1]:.2f}x | {'yes' if ident else '**no**'} |")


if __name__ == "__main__":
    main()
