"""Evaluate one model on LLM-KICK tasks: load records, run each task, gather lm-evaluation-harness-style results."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from kick_hub import tasks, versions
from kick_hub.backends import Backend
from kick_hub.scoring.stats import task_stderrs
from kick_hub.tasks import records as task_records

def resolve_tasks(names: list[str] | str) -> list[str]:
    """Task ids from a list (``all`` expands to every task); unknown names raise listing the valid ones."""
    names = [names] if isinstance(names, str) else list(names)
    if "all" in names:
        return list(tasks.TASK_NAMES)
    for n in names:
        tasks.get(n)
    return names


def evaluate(engine: Backend, task_names: list[str] | str = "all", source: str = "world",
             limit: int | dict[str, int] | None = None,
             protocol: str = "default", judge=None, model_name: str = "", skip_missing: bool = False,
             mcq_protocols: list[str] | None = None, task_options: dict[str, dict] | None = None) -> dict:
    """Run tasks and return ``{"results", "config", "samples"}`` (lm-evaluation-harness layout).

    ``results[task]["n"]`` counts the examples scored. ``config["context"]`` records the model's context
    (``tokens``) and, per task, the prompts fitted into it: ``prompts_shortened`` (few-shot examples or a passage
    tail dropped), ``prompts_skipped`` (not scored: too long even shortened) and ``texts_windowed`` (perplexity
    texts scored in several windows); the rules are in ``kick_hub.tasks.fit`` and docs/context.md.
    Every number in ``results[task]`` that the samples give per example comes with ``<metric>_stderr`` (its
    standard error, ``kick_hub.scoring.stats.task_stderrs``; none with fewer than 2 examples). ``mcq_protocols``
    (names of ``tasks.mcq_reasoning.MCQ_PROTOCOLS``) scores mcq-reasoning under each, adding ``accuracy_<name>``
    (the same as ``task_options={"mcq-reasoning": {"protocols": [...]}}``). ``task_options``: task -> keyword
    arguments of its ``run`` (``check_task_options``), e.g. ``{"perplexity": {"reference": ref}}`` with dense's
    ``scoring.fidelity.Reference`` on the perplexity texts, which adds the distribution-fidelity scores; what a
    reference was measured on is recorded as ``config["fidelity"][task]`` (its meta, model by ``public_name``).
    ``config["generation"]`` records how the engine decodes (``Backend.generation_settings``: the stop token ids taken
    from the model's generation config, the pad id, greedy). ``config["placement"]`` records where the model ran
    (``Backend.placement``: device, dtype, device map, and what was asked). ``config["judge_usage"][task]`` is what
    judging the task cost (``scoring.judge.JudgeUsage.to_dict``: replies, requests sent, retries, cache hits,
    tokens, unparsable replies, examples compared in both orders and disagreements, wall seconds). A task during
    which the model gave NaN / inf logits (``Backend.checked``) is marked invalid (``mark_invalid``: null scores,
    ``non_finite_logits``, ``invalid_reason``; no standard errors)."""
    names = resolve_tasks(task_names)
    options = check_task_options(task_options, names)
    given = options.get("mcq-reasoning", {}).pop("protocols", None)
    if mcq_protocols and given and list(mcq_protocols) != list(given):
        raise ValueError(f"mcq-protocols: given as {list(mcq_protocols)} and as task option protocols "
                         f"{list(given)}; give one")
    mcq_protocols = tasks.get("mcq-reasoning").check_mcq_protocols(mcq_protocols or given)
    if mcq_protocols:
        options.setdefault("mcq-reasoning", {})["protocols"] = mcq_protocols
    if protocol not in tasks.PROTOCOLS:  # a task without the protocol asked for (perplexity) runs its default
        raise ValueError(f"protocol: must be one of {list(tasks.PROTOCOLS)}, got {protocol!r}")
    results, samples, skipped, timings = {}, {}, {}, {}
    judge_usage: dict[str, dict] = {}
    context: dict = {"tokens": engine.max_length, "prompts_shortened": {}, "prompts_skipped": {},
                     "texts_windowed": {}}
    for name in names:
        module = tasks.get(name)
        try:
            records = task_records.load(name, source, task_limit(limit, name))
        except ValueError as e:
            if not skip_missing:
                raise
            skipped[name] = str(e)
            continue
        task_protocol = protocol if protocol in module.SPEC.protocols else "default"
        start = time.perf_counter()
        judge_for_task = judge.get(name) if isinstance(judge, dict) else None
        judge_before = judge_for_task.usage.copy() if judge_for_task is not None else None
        extra = options.get(name, {})
        checked_before = engine.checked.copy()
        scores, task_samples = module.run(engine, records, protocol=task_protocol, judge=judge_for_task, **extra)
        checked = engine.checked.minus(checked_before)  # inputs whose logits were NaN / inf (Engine.checked)
        timings[name] = round(time.perf_counter() - start, 3)
        if judge_for_task is not None:  # what judging this task cost (scoring.judge.JudgeUsage)
            judge_usage[name] = judge_for_task.usage.minus(judge_before).to_dict()
        results[name] = {"n": sum("skipped" not in s for s in task_samples), **scores}
        if checked.non_finite:
            mark_invalid(results[name], task_samples, checked.non_finite, checked.inputs)
        else:
            for key, se in task_stderrs(name, scores, task_samples).items():
                results[name].setdefault(key, se)  # a task's own stderr (fidelity's: texts as units) is kept
        samples[name] = task_samples
        context["prompts_shortened"][name] = sum(bool(s.get("shortened")) for s in task_samples)
        context["prompts_skipped"][name] = sum("skipped" in s for s in task_samples)
        context["texts_windowed"][name] = sum(s.get("windows", 1) > 1 for s in task_samples)
    config = {
        "model": model_name, "data": source, "limit": limit, "protocol": protocol, "mcq_protocols": mcq_protocols,
        "batch_size": engine.batch_size, "tasks": names, "skipped": skipped, "task_time_s": timings,
        "versions": versions(), "judge": {k: v.backend.name for k, v in (judge or {}).items()},
        "judge_usage": judge_usage,
        "context": context, "generation": engine.generation_settings(),
        "placement": engine.placement(),  # device and dtype, asked and resolved (kick_hub.device)
        "threads": torch.get_num_threads(),  # torch's intra-op threads (kick_hub.device.resolve_threads)
    }
    fidelity = {t: reference_meta(o["reference"]) for t, o in options.items()
                if t in results and o.get("reference") is not None}
    if fidelity:  # what the distribution-fidelity scores were measured against (no local path)
        config["fidelity"] = fidelity
    return {"results": results, "config": config, "samples": samples}


def check_task_options(task_options: dict[str, dict] | None, names: list[str]) -> dict[str, dict]:
    """A copy of ``task_options`` (task -> keyword arguments of its module's ``run``) after checking it: each task
    is one of ``names`` (the tasks run) and each option a parameter its ``run`` names; ValueError naming the task
    or the option and the allowed ones otherwise."""
    import inspect

    out = {}
    for task, opts in (task_options or {}).items():
        if task not in names:
            raise ValueError(f"task-options: {task!r} is not among the tasks run ({', '.join(names)})")
        if not isinstance(opts, dict):
            raise ValueError(f"task-options: {task}'s options must be a mapping of name -> value, got {opts!r}")
        params = inspect.signature(tasks.get(task).run).parameters
        allowed = [p for p, x in params.items() if x.kind is x.KEYWORD_ONLY or (
            x.kind is x.POSITIONAL_OR_KEYWORD and p not in ("engine", "records", "protocol", "judge"))]
        unknown = [k for k in opts if k not in allowed]
        if unknown:
            raise ValueError(f"task-options: {task} takes no option {unknown[0]!r}; its options: "
                             f"{', '.join(allowed) or 'none'}")
        out[task] = dict(opts)
    return out


def reference_meta(reference) -> dict:
    """What a ``scoring.fidelity.Reference`` was measured on, as a results file records it: its meta with the model
    by ``io.public_name`` (never a local path)."""
    from kick_hub.io import public_name

    return {k: public_name(v) if k == "model" else v for k, v in reference.meta.items()}


INVALID_EXIT = 3  # `kick evaluate`'s exit status when a task is invalid (non-finite logits); bad input is 2


def mark_invalid(scores: dict, samples: list[dict], non_finite: int, inputs: int) -> None:
    """Mark a task's results invalid in place because ``non_finite`` of the ``inputs`` prompts / texts it ran gave
    NaN / inf logits (``backends.LogitCheck``): every float in ``scores`` (headline, judge scores, per subject or
    bucket) becomes None (JSON ``null``), counts stay; ``non_finite_logits`` (a number, so the sweep store keeps it:
    a task is invalid when it is above 0) counts the inputs and ``invalid_reason`` says why. Each sample loses its
    float fields (``score``, ``f1``, ...) and gets ``invalid: true``: a number computed from non-finite logits is not
    the model's score; so does ``top1_same``, a count read off those logits (distribution fidelity)."""
    def void(value):
        if isinstance(value, float):
            return None
        if isinstance(value, dict):
            return {k: void(v) for k, v in value.items()}
        return value

    scores.update({k: void(v) for k, v in scores.items() if k != "n"})
    scores["non_finite_logits"] = non_finite
    scores["invalid_reason"] = (f"non-finite (NaN / inf) logits for {non_finite} of {inputs} model inputs; no score "
                                f"reported (a float16 overflow? see docs/gpu.md)")
    for sample in samples:
        for key in [k for k, v in sample.items() if isinstance(v, float) or k in ("judge", "top1_same")]:
            del sample[key]
        sample["invalid"] = True


def invalid_tasks(results: dict) -> dict[str, str]:
    """Task -> why, for the tasks of a results dict that ``mark_invalid`` marked."""
    return {task: scores.get("invalid_reason", "non-finite logits") for task, scores in results.items()
            if scores.get("non_finite_logits")}


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
    """Plain-text table of each task's reported metrics (``TaskSpec.metrics``, each ``accuracy_<protocol>``) and
    judge scores in a results dict, with ``± <metric>_stderr`` where the results carry one (a non-finite value
    prints as ``inf`` / ``NaN``); a task marked invalid (``mark_invalid``) has one ``invalid`` row with its count of
    inputs with non-finite logits instead of scores."""
    from kick_hub.io import format_number

    def value(scores: dict, metric: str) -> str:
        se = scores.get(f"{metric}_stderr")
        return format_number(scores[metric], ".4f", "inf") + (f" ± {se:.4f}" if se is not None else "")

    rows = [("task", "metric", "value", "n")]
    for task, scores in results.items():
        if scores.get("non_finite_logits"):
            rows.append((task, "invalid", f"non-finite logits: {scores.get('non_finite_logits')}",
                         str(scores.get("n", ""))))
            continue
        shown = [m for m in tasks.SPECS[task].metrics if m in scores] if task in tasks.SPECS else []
        shown += [m for m in scores if m.startswith("accuracy_") and not m.endswith("_stderr")]  # --mcq-protocols
        rows += [(task, m, value(scores, m), str(scores.get("n", ""))) for m in shown]
        rows += [(task, k, value(scores, k), "") for k in scores if k.startswith("judge_")
                 and not k.endswith("_stderr")]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
