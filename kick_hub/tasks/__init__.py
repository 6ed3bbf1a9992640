"""The LLM-KICK tasks. Each task is declared once in ``kick_hub.tasks.specs`` (data, prompts, generation, metrics);
its module here (``SPEC``, ``prompt``, ``score``, ``run``) holds only the code: fitting prompts into the context and
scoring.

Adding a task: a declaration in ``specs.py``, a module here named after its id (``-`` as ``_``, as Python module
names must be) and a folder under ``evaluate_metrics/``.
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
