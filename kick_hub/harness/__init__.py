"""The LLM-KICK tasks inside EleutherAI's lm-evaluation-harness (``lm-eval``), and lm-eval's results in kick's store.

- ``export``: ``kick lm-eval-tasks --output DIR`` writes one lm-eval task YAML per task and protocol (groups
  ``llmkick`` and ``llmkick_llm_kick``) and the ``utils.py`` they reference with ``!function``; every prompt, record
  and score comes from kick's own task declarations, loaders and scorers (``kick_hub.harness.functions``).
- ``importer``: ``kick import-lm-eval RESULTS_DIR --run-dir RUN --label LABEL`` reads lm-eval's ``results_*.json``
  and ``samples_*.jsonl`` and writes one cell into a sweep store, rescored with kick's scorers.
- ``judge_samples``: ``kick judge SAMPLES.jsonl --judge ...`` judges the generations lm-eval logged for icsum and
  instruction-following with kick's judge (lm-eval has none).

lm-eval is imported by none of these modules (the exported functions run inside lm-eval, which imports them), so
kick-hub works without it installed. lm-eval 0.4.13 has no plugin entry point for tasks or metrics (its registry has
no entry-point group), so the tasks are passed with ``--include_path DIR``.

The table here names every exported lm-eval task: ``LmEvalTask`` (lm-eval name -> kick task, protocol, part).
"""

from __future__ import annotations

from dataclasses import dataclass

from kick_hub.tasks.specs import SPECS

PREFIX = "llmkick"
GROUPS = {"default": PREFIX, "llm-kick": f"{PREFIX}_llm_kick"}  # group name per protocol


@dataclass(frozen=True)
class LmEvalTask:
    """One exported lm-eval task: which kick task, protocol and part (icra-qa runs as two lm-eval tasks, the
    open-book and the closed-book prompt, since lm-eval makes one request per document)."""

    name: str       # lm-eval task name, e.g. llmkick_factoid_qa_llm_kick
    task: str       # kick task id
    protocol: str   # kick protocol
    part: str = "main"  # "main", or "closed_book" for icra-qa's closed-book half


def lm_eval_tasks() -> list[LmEvalTask]:
    """Every exported task: one per kick task, protocol and part, in ``TASK_NAMES`` order."""
    out = []
    for spec in SPECS.values():
        for protocol in spec.protocols:
            suffix = "" if protocol == "default" else "_" + protocol.replace("-", "_")
            base = f"{PREFIX}_{spec.id.replace('-', '_')}"
            out.append(LmEvalTask(base + suffix, spec.id, protocol))
            if spec.id == "icra-qa":
                out.append(LmEvalTask(f"{base}_closed_book{suffix}", spec.id, protocol, "closed_book"))
    return out


def by_name() -> dict[str, LmEvalTask]:
    """lm-eval task name -> ``LmEvalTask``."""
    return {t.name: t for t in lm_eval_tasks()}
