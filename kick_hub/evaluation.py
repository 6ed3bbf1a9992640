"""Evaluate one model on LLM-KICK tasks: load records, run each task, gather lm-evaluation-harness-style results."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from kick_hub import data, tasks
from kick_hub.engine import Engine

PROTOCOLS = ("default", "llm-kick")  # tasks without an llm-kick variant (perplexity) run their default


def resolve_tasks(names: list[str] | str) -> list[str]:
    """Task ids from a list (``all`` expands to every task); unknown names raise listing the valid ones."""
    names = [names] if isinstance(names, str) else list(names)
    if "all" in names:
        return list(tasks.TASK_NAMES)
    for n in names:
        tasks.get(n)
    return names


def evaluate(engine: Engine, task_names: list[str] | str = "all", source: str = "world",
             limit: int | dict[str, int] | None = None,
             protocol: str = "default", judge=None, model_name: str = "", skip_missing: bool = False) -> dict:
    """Run tasks and return ``{"results", "config", "samples"}`` (lm-evaluation-harness layout)."""
    names = resolve_tasks(task_names)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: must be one of {list(PROTOCOLS)}, got {protocol!r}")
    results, samples, skipped, timings = {}, {}, {}, {}
    for name in names:
        module = tasks.get(name)
        try:
            records = data.load(module.SPEC.kind, source, task_limit(limit, name))
        except ValueError as e:
            if not skip_missing:
                raise
            skipped[name] = str(e)
            continue
        task_protocol = protocol if protocol in module.SPEC.protocols else "default"
        start = time.perf_counter()
        judge_for_task = judge.get(name) if isinstance(judge, dict) else None
        scores, task_samples = module.run(engine, records, protocol=task_protocol, judge=judge_for_task)
        timings[name] = round(time.perf_counter() - start, 3)
        results[name] = {"n": len(records), **scores}
        samples[name] = task_samples
    config = {
        "model": model_name, "data": source, "limit": limit, "protocol": protocol,
        "batch_size": engine.batch_size, "tasks": names, "skipped": skipped, "task_time_s": timings,
        "versions": versions(), "judge": {k: v.backend.name for k, v in (judge or {}).items()},
    }
    return {"results": results, "config": config, "samples": samples}


def task_limit(limit: int | dict[str, int] | None, task: str) -> int | None:
    """``limit`` for one task: an int for all, or a dict of task -> int with an optional ``"*"`` default."""
    if isinstance(limit, dict):
        return limit.get(task, limit.get("*"))
    return limit


def versions() -> dict[str, str]:
    import torch
    import transformers

    from kick_hub import __version__

    return {"kick_hub": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def write_json(payload: dict, path: str | Path) -> Path:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    from kick_hub.io import atomic_write_text

    return atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


HEADLINE = {"factoid-qa": ["exact_match", "contains"], "mcq-reasoning": ["accuracy"],
            "icra-qa": ["exact_match", "f1", "closed_book_exact_match"], "icsum": ["rouge1", "rougeL"],
            "instruction-following": ["rougeL", "distinct_2"], "perplexity": ["perplexity"]}


def table(results: dict) -> str:
    """Plain-text table of the headline metrics of a results dict."""
    rows = [("task", "metric", "value", "n")]
    for task, scores in results.items():
        for metric in HEADLINE.get(task, []):
            if metric in scores:
                rows.append((task, metric, f"{scores[metric]:.4f}", str(scores.get("n", ""))))
        rows += [(task, k, f"{v:.4f}", "") for k, v in scores.items() if k.startswith("judge_")]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
