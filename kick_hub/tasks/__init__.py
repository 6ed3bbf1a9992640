"""The LLM-KICK tasks. Each task is declared once in ``kick_hub.tasks.specs`` (``TaskSpec``: data sources, prompts,
generation, reported metrics, the sample fields behind each metric's standard error, judge prompts, lm-eval metrics,
its role in the report's findings, card and Space details); its module here holds only the code: ``prompt(record)``,
``score(records, outputs, protocol)`` (results and per-example scores of the model's outputs: the one scorer that
``run``, the lm-eval export and importer, and the Space call) and ``run(engine, records, protocol, **task_options)``
(fit the prompts into the context, run the engine, ``score``, build the samples). The per-task tables other modules
keep (``scoring.stats.FIELDS`` / ``DIFFERENCES`` / ``JUDGED``, ``scoring.judge.TASK_PROMPTS``,
``harness.functions.METRICS``, ``bench.analysis``' headline, knowledge and judged tasks and findings) are derived
from the declarations; ``tests/test_task_registry.py`` checks that every per-task registry has exactly the tasks.
``records`` (``load``, ``identity``, ``hub_records``, ``load_hub``) reads a task's records by its id with the reader
and files its declaration names; the readers in ``kick_hub.data`` know no task.

Adding a task touches:

1. ``specs.py``: its ``TaskSpec``.
2. ``tasks/<id>.py`` (``-`` as ``_``, as Python module names must be): ``SPEC``, ``prompt``, ``score``, ``run``.
3. ``kick_hub/data``: a reader for its dataset's file format and Hub rows, unless an existing one reads it
   (named in its ``Sources``; ``records.load`` needs no change).
4. ``kick_hub/evaluate_metrics/<id>/``: its evaluate module.
5. ``kick_hub/world/export.py`` (and ``world/corpus.py`` for the training text): its set in the embedded world.
6. ``kick_hub/harness/functions.py``: only when its prompt, target or logged output is not the generic one (a branch
   of ``prompt`` / ``doc_to_target`` / ``prediction``), for the lm-eval export.
7. ``kick_hub/scoring/stats.py`` ``series``: only for a metric that is not a mean of a per-example sample field
   (perplexity's token-weighted ratio, distinct-n's corpus statistic).
"""
from __future__ import annotations

from kick_hub.tasks.specs import PROTOCOLS, SPECS, TASK_NAMES, TaskSpec

__all__ = ["PROTOCOLS", "SPECS", "TASK_NAMES", "TaskSpec", "check_protocol", "get", "registry"]


def registry() -> dict[str, object]:
    """task id -> task module (each has ``SPEC`` and ``run``), in ``TASK_NAMES`` order."""
    return {name: get(name) for name in TASK_NAMES}


def get(name: str):
    """The task module for ``name`` (ValueError listing the valid ids otherwise)."""
    import importlib

    if name not in SPECS:
        raise ValueError(f"task: must be one of {sorted(SPECS)} or 'all', got {name!r}")
    return importlib.import_module(f"kick_hub.tasks.{name.replace('-', '_')}")


def check_protocol(spec: TaskSpec, protocol: str) -> str:
    """``protocol`` when task ``spec`` has it; otherwise a ValueError naming the protocols it allows."""
    if protocol not in spec.protocols:
        raise ValueError(f"protocol: task {spec.id!r} allows {list(spec.protocols)}, got {protocol!r}")
    return protocol
