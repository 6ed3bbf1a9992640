"""Closed-book factoid QA (FreebaseQA): recall a fact from the weights."""

from __future__ import annotations

from kick_hub.scoring.qa import exact_match, score_factoid
from kick_hub.tasks import TaskSpec, check_protocol
from kick_hub.tasks.prompts import PROMPTS

SPEC = TaskSpec(name="factoid-qa", kind="factoid", metric="exact_match", knowledge=True,
                description="Closed-book factoid QA (FreebaseQA): normalised exact match against alias lists.",
                max_new_tokens=16, stop=("\n",),
                hub_task="question-answering")


def prompt(record: dict) -> str:
    return PROMPTS["factoid"].format(question=record["question"])


def score(record: dict, output: str) -> float:
    """One example's score under the default protocol (the Space scores outputs one by one)."""
    return exact_match(output, record["answers"])


def run(engine, records: list[dict], protocol: str = "default", **_) -> tuple[dict, list[dict]]:
    check_protocol(SPEC, protocol)
    prompts = [prompt(r) for r in records]
    outputs = engine.generate(prompts, SPEC.max_new_tokens, SPEC.stop, progress=SPEC.name)
    # LLM-KICK matched against the decoded text, which still contains the prompt.
    texts = [p + o for p, o in zip(prompts, outputs)] if protocol == "llm-kick" else outputs
    scores = score_factoid(texts, [r["answers"] for r in records], protocol)
    samples = [{"id": r["id"], "prompt": p, "output": o, "reference": r["answers"], "score": s}
               for r, p, o, s in zip(records, prompts, outputs, scores.pop("per_example"))]
    return scores, samples
