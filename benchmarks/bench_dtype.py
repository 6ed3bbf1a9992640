"""Evaluation in bfloat16 against float32 on the CPU: the time of each task and how far each score moves.

    python benchmarks/bench_dtype.py [--model world] [--data world] [--limit 100] [--repeats 2]
        [--tasks factoid-qa mcq-reasoning icra-qa icsum instruction-following perplexity]

Each run is one ``kick evaluate --model M --task ... --dtype D`` in a fresh interpreter (float32 and bfloat16
alternated, ``--repeats`` times each; the tasks' own seconds, ``config["task_time_s"]``, as medians). Scores are the
headline metric of each task (``bench.analysis.HEADLINE``) with its standard error, and the share of examples whose
output (or, for perplexity, per-text perplexity to 4 significant digits) differs between the two dtypes. On CPUs with
AMX or AVX-512 bf16 (``lscpu`` flags ``amx_bf16`` / ``avx512_bf16``) torch runs bf16 matmuls in hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_TELEMETRY": "1"}
TASKS = ["factoid-qa", "mcq-reasoning", "icra-qa", "icsum", "instruction-following", "perplexity"]


def evaluate(model: str, data: str, limit: int, tasks: list[str], dtype: str, out: Path) -> dict:
    """One ``kick evaluate`` in a fresh interpreter; its output JSON."""
    cmd = [sys.executable, "-m", "kick_hub.cli", "evaluate", "--model", model, "--data", data, "--limit",
           str(limit), "--dtype", dtype, "--output", str(out), "--task", *tasks]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(out.read_text())


def changed(a: list[dict], b: list[dict], task: str) -> float:
    """Share of examples whose output (perplexity: per-text perplexity, 4 significant digits) differs."""
    key = (lambda s: f"{s.get('score', 0):.4g}") if task == "perplexity" else (lambda s: s.get("output"))
    pairs = list(zip(a, b, strict=True))
    return sum(key(x) != key(y) for x, y in pairs) / max(len(pairs), 1)


def main(argv: list[str] | None = None) -> None:
    from kick_hub.bench.analysis import HEADLINE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="world")
    p.add_argument("--data", default="world")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tasks", nargs="+", default=TASKS)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dtype-"))
    runs: dict[str, list[dict]] = {"float32": [], "bfloat16": []}
    for i in range(args.repeats):
        for dtype in runs:
            runs[dtype].append(evaluate(args.model, args.data, args.limit, args.tasks, dtype,
                                        tmp / f"{dtype}-{i}.json"))
            print(f"  {dtype} #{i + 1}: {runs[dtype][-1]['config']['task_time_s']}", file=sys.stderr, flush=True)
    f32, b16 = runs["float32"][0], runs["bfloat16"][0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\n`python benchmarks/bench_dtype.py --model {args.model} --data {args.data} --limit {args.limit} "
          f"--repeats {args.repeats}` ({cores} cores; task seconds are medians)\n")
    print("| task | metric | float32 | bfloat16 | outputs changed | float32 s | bfloat16 s | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for task in [t for t in args.tasks if t in f32["results"]]:
        metric = HEADLINE[task]
        cells = []
        for out in (f32, b16):
            r = out["results"][task]
            se = r.get(f"{metric}_stderr")
            cells.append(f"{r[metric]:.4g}" + (f" ± {se:.2g}" if se is not None else ""))
        secs = [statistics.median(o["config"]["task_time_s"][task] for o in runs[d]) for d in runs]
        print(f"| {task} | {metric} | {cells[0]} | {cells[1]} | "
              f"{changed(f32['samples'][task], b16['samples'][task], task):.0%} | {secs[0]:.1f} | {secs[1]:.1f} | "
              f"{secs[0] / secs[1]:.2f}x |")


if __name__ == "__main__":
    main()
