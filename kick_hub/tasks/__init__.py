"""The LLM-KICK tasks. Each task module holds a ``SPEC`` (settings as data) and ``run(engine, records, ...)``.

Adding a task: a module here, an entry in ``TASKS``, and a folder under ``evaluate_metrics/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    """What a task generates and how it is scored; prompts are keys into ``prompts.PROMPTS``."""

    name: str                 # task id; Hub module ``llmkick/<name>``
    kind: str                 # record schema / loader (see kick_hub.data)
    description: str
    metric: str               # headline metric, higher is better unless ``lower_is_better``
    knowledge: bool           # recall from weights (True) or in-context / fluency (False)
    max_new_tokens: int = 0
    stop: tuple[str, ...] = ()
    chat: bool = False        # wrap the prompt in the model's chat template when it has one
    lower_is_better: bool = False
    protocols: tuple[str, ...] = ("default", "llm-kick")
    hub_task: str = "text-generation"  # task type in a model card's model-index
    extra: dict = field(default_factory=dict)


def registry() -> dict[str, object]:
    """task id -> task module (each has ``SPEC`` and ``run``)."""
    from kick_hub.tasks import factoid_qa, icra_qa, icsum, instruction_following, mcq_reasoning, perplexity

    modules = (factoid_qa, mcq_reasoning, icra_qa, icsum, instruction_following, perplexity)
    return {m.SPEC.name: m for m in modules}


TASK_NAMES = ("factoid-qa", "mcq-reasoning", "icra-qa", "icsum", "instruction-following", "perplexity")


def get(name: str):
    """The task module for ``name`` (ValueError listing the valid ids otherwise)."""
    tasks = registry()
    if name not in tasks:
        raise ValueError(f"task: must be one of {sorted(tasks)} or 'all', got {name!r}")
    return tasks[name]


def check_protocol(spec: TaskSpec, protocol: str) -> str:
    if protocol not in spec.protocols:
        raise ValueError(f"protocol: task {spec.name!r} allows {list(spec.protocols)}, got {protocol!r}")
    return protocol
