"""Perplexity on a text set (WikiText-style): the metric LLM-KICK shows to hide knowledge loss."""

from __future__ import annotations

from kick_hub.tasks import TaskSpec, check_protocol

SPEC = TaskSpec(name="perplexity", kind="perplexity", metric="perplexity", knowledge=False, lower_is_better=True,
                description="Token-level perplexity on a text set (lower is better).", protocols=("default",))


def run(engine, records: list[dict], protocol: str = "default", **_) -> tuple[dict, list[dict]]:
    check_protocol(SPEC, protocol)
    result = engine.perplexity([r["text"] for r in records], progress=SPEC.name)
    per_text = result.pop("per_example")
    samples = [{"id": r["id"], "prompt": r["text"], "output": "", "reference": "", "score": s}
               for r, s in zip(records, per_text)]
    return result, samples
