"""Evaluate one model on LLM-KICK tasks: load records, run each task, gather lm-evaluation-harness-style results."""

from __future__ import annotations

import time
from pathlib import Path

from kick_hub import data, tasks, versions
from kick_hub.engine import Engine

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
    """Run tasks and return ``{"results", "config", "samples"}`` (lm-evaluation-harness layout).

    ``results[task]["n"]`` counts the examples scored. ``config["context"]`` records the model's context
    (``tokens``) and, per task, the prompts fitted into it: ``prompts_shortened`` (few-shot examples or a passage
    tail dropped), ``prompts_skipped`` (not scored: too long even shortened) and ``texts_windowed`` (perplexity
    texts scored in several windows); the rules are in ``kick_hub.tasks.fit`` and docs/context.md.
    ``config["generation"]`` records how the engine decodes (``Engine.generation_settings``: the stop token ids taken
    from the model's generation config, the pad id, greedy)."""
    names = resolve_tasks(task_names)
    if protocol not in tasks.PROTOCOLS:  # a task without the protocol asked for (perplexity) runs its default
        raise ValueError(f"protocol: must be one of {list(tasks.PROTOCOLS)}, got {protocol!r}")
    results, samples, skipped, timings = {}, {}, {}, {}
    context: dict = {"tokens": engine.max_length, "prompts_shortened": {}, "prompts_skipped": {},
                     "texts_windowed": {}}
    for name in names:
        module = tasks.get(name)
        try:
            records = data.load(name, source, task_limit(limit, name))
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
        results[name] = {"n": sum("skipped" not in s for s in task_samples), **scores}
        samples[name] = task_samples
        context["prompts_shortened"][name] = sum(bool(s.get("shortened")) for s in task_samples)
        context["prompts_skipped"][name] = sum("skipped" in s for s in task_samples)
        context["texts_windowed"][name] = sum(s.get("windows", 1) > 1 for s in task_samples)
    config = {
        "model": model_name, "data": source, "limit": limit, "protocol": protocol,
        "batch_size": engine.batch_size, "tasks": names, "skipped": skipped, "task_time_s": timings,
        "versions": versions(), "judge": {k: v.backend.name for k, v in (judge or {}).items()},
        "context": context, "generation": engine.generation_settings(),
    }
    return {"results": results, "config": config, "samples": samples}


def task_limit(limit: int | dict[str, int] | None, task: str) -> int | None:
    """``limit`` for one task: an int for all, or a dict of task -> int with an optional ``"*"`` default."""
    if isinstance(limit, dict):
        return limit.get(task, limit.get("*"))
    return limit


def merge_limits(limit: int | None, task_limits: list[tuple[str, int]] | dict[str, int] | None
                 ) -> int | dict[str, int] | None:
    """One ``limit`` for ``evaluate``: ``limit`` itself (examples per task, None: all) when there are no per-task
    overrides, else ``{"*": limit, task: n, ...}`` (the form ``task_limit`` reads), later pairs winning."""
    if not task_limits:
        return limit
    return {"*": limit, **dict(task_limits)}


def write_json(payload: dict, path: str | Path) -> Path:
    """Write strict JSON atomically (``kick_hub.io.write_json``: a non-finite score such as a broken model's
    perplexity is written as ``null`` and named under the top-level ``non_finite`` key)."""
    from kick_hub.io import write_json as write_strict_json

    return write_strict_json(path, payload)


def table(results: dict) -> str:
    """Plain-text table of each task's reported metrics (``TaskSpec.metrics``) and judge scores in a results dict (a
    non-finite value prints as ``inf`` / ``NaN``)."""
    from kick_hub.io import format_number

    rows = [("task", "metric", "value", "n")]
    for task, scores in results.items():
        for metric in tasks.SPECS[task].metrics if task in tasks.SPECS else ():
            if metric in scores:
                rows.append((task, metric, format_number(scores[metric], ".4f", "inf"), str(scores.get("n", ""))))
        rows += [(task, k, format_number(v, ".4f", "inf"), "") for k, v in scores.items() if k.startswith("judge_")]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
