"""MCQ wall time: ``kick evaluate`` against lm-evaluation-harness 0.4.13 on the same questions, model and prompts.

    python benchmarks/bench_mcq_lm_eval.py [--model smollm2] [--data ../shared/data] [--subject high_school_geography]
        [--limit 100] [--batch-size 8] [--repeats 2]

The questions: MMLU ``--subject`` (its test rows, 5-shot from its dev rows, LLM-KICK's prompt) from ``--data``, as a
one-subject data root of links in a temporary folder (nothing copied). Three commands, each in a fresh interpreter,
alternated ``--repeats`` times, medians reported:

- ``kick evaluate --task mcq-reasoning`` (default protocol: the log-likelihood of each option letter), with
  shared-prefix evaluation (the subject's header and five shots run once per batch group, docs/backends.md);
- the same without shared prefixes (``TransformersEngine.share_prefix = False``), the path before it existed;
- ``lm_eval`` (``simple_evaluate``, ``hf`` model, float32 on the CPU) on kick's exported task
  ``llmkick_mcq_reasoning`` (``kick lm-eval-tasks``): the same prompts and ``multiple_choice`` over `` A``-`` D``.

Columns: the whole command (interpreter start, imports, model load, evaluation), the evaluation alone (kick: the
results config's ``task_time_s``; lm-eval: the ``simple_evaluate`` call less its model load, timed around
``HFLM.__init__``), accuracy, and the ratio of each to lm-eval's. The target (issue 37): kick's whole command
<= 0.33x lm-eval's with the same accuracy.
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

KICK = """
import json, sys, time
start = time.perf_counter()
share = sys.argv[1] == "1"
import kick_hub.backends as backends
from kick_hub.backends.transformers import TransformersEngine
original = backends.make_engine
def make_engine(*args, **kwargs):
    engine = original(*args, **kwargs)
    if isinstance(engine, TransformersEngine):
        engine.share_prefix = share
    return engine
backends.make_engine = make_engine
from kick_hub.cli import main
code = main(["evaluate", "--model", sys.argv[2], "--task", "mcq-reasoning", "--data", sys.argv[3], "--limit",
             sys.argv[4], "--batch-size", sys.argv[5], "--output", sys.argv[6]])
wall = time.perf_counter() - start
out = json.load(open(sys.argv[6]))
print(json.dumps({"code": code, "wall": wall, "eval": out["config"]["task_time_s"]["mcq-reasoning"],
                  "accuracy": out["results"]["mcq-reasoning"]["accuracy"]}))
"""

LM_EVAL = """
import json, sys, time
start = time.perf_counter()
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
loading = [0.0]
init = HFLM.__init__
def timed_init(self, *args, **kwargs):
    t = time.perf_counter()
    init(self, *args, **kwargs)
    loading[0] += time.perf_counter() - t
HFLM.__init__ = timed_init
t = time.perf_counter()
res = simple_evaluate(model="hf", model_args=f"pretrained={sys.argv[1]},dtype=float32", tasks=["llmkick_mcq_reasoning"],
                      batch_size=int(sys.argv[4]), device="cpu", limit=int(sys.argv[3]),
                      task_manager=TaskManager(include_path=sys.argv[2], include_defaults=False))
evaluated = time.perf_counter() - t - loading[0]
wall = time.perf_counter() - start
print(json.dumps({"code": 0, "wall": wall, "eval": evaluated,
                  "accuracy": res["results"]["llmkick_mcq_reasoning"]["accuracy,none"]}))
"""


def subject_root(data: Path, subject: str, into: Path) -> Path:
    """A data root holding only ``subject``'s MMLU files, as links: ``into/mmlu/{dev,test}/<subject>_*.csv``."""
    for split in ("dev", "test"):
        src = data / "mmlu" / split / f"{subject}_{split}.csv"
        if not src.exists():
            raise SystemExit(f"data: {src} not found (MMLU {split} file of {subject})")
        (into / "mmlu" / split).mkdir(parents=True, exist_ok=True)
        (into / "mmlu" / split / src.name).symlink_to(src.resolve())
    return into


def run(script: str, args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env={**os.environ, **ENV})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--subject", default="high_school_geography")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    from kick_hub.harness.export import export
    from kick_hub.models import resolve

    model = resolve(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="bench-mcq-"))
    root = subject_root(args.data, args.subject, tmp / "data")
    export(tmp / "tasks", str(root))
    rows: dict[str, list[dict]] = {"kick (shared prefixes)": [], "kick (plain)": [], "lm-eval 0.4.13": []}
    for i in range(args.repeats):
        for name in rows:
            if name.startswith("kick"):
                out = run(KICK, ["1" if "shared" in name else "0", model, str(root), str(args.limit),
                                 str(args.batch_size), str(tmp / f"out-{i}.json")])
            else:
                out = run(LM_EVAL, [model, str(tmp / "tasks"), str(args.limit), str(args.batch_size)])
            rows[name].append(out)
            print(f"  {name} #{i + 1}: {out}", file=sys.stderr, flush=True)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in ("wall", "eval", "accuracy")}
           for name, runs in rows.items()}
    ref = med["lm-eval 0.4.13"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\n`python benchmarks/bench_mcq_lm_eval.py --model {args.model} --subject {args.subject} --limit "
          f"{args.limit} --batch-size {args.batch_size} --repeats {args.repeats}` ({cores} cores, float32, medians)\n")
    print("| command | whole command | evaluation | accuracy | whole / lm-eval | evaluation / lm-eval |")
    print("|---|---|---|---|---|---|")
    for name, m in med.items():
        print(f"| {name} | {m['wall']:.1f} s | {m['eval']:.1f} s | {m['accuracy']:.3f} | "
              f"{m['wall'] / ref['wall']:.2f}x | {m['eval'] / ref['eval']:.2f}x |")


if __name__ == "__main__":
    main()
