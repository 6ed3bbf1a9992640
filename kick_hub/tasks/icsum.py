"""In-context summarization (CNN/DailyMail, three story lengths): ROUGE per bucket, plus judge scores per criterion
(coherence, consistency, fluency, relevance; 1-10) when a judge is given."""

from __future__ import annotations

from kick_hub.scoring.text import rouge, rouge_per_example
from kick_hub.tasks import TaskSpec, check_protocol
from kick_hub.tasks.prompts import PROMPTS

SPEC = TaskSpec(name="icsum", kind="icsum", metric="rougeL", knowledge=False, chat=True,
                description="In-context summarization (CNN/DM): ROUGE per length bucket, optional LLM judge.",
                max_new_tokens=192, protocols=("default", "llm-kick"), extra={"judge_prompt": "summary-v1"},
                hub_task="summarization")


def prompt(record: dict) -> str:
    return PROMPTS["summarize"].format(story=record["story"])


def score(record: dict, output: str) -> float:
    return rouge_per_example([output.strip()], [record["reference"]])[0]


def run(engine, records: list[dict], protocol: str = "default", judge=None, **_) -> tuple[dict, list[dict]]:
    check_protocol(SPEC, protocol)
    # llm-kick's prompts kept the @highlight reference lines in the story; reproduce that only when asked.
    stories = [r["story"] + ("\n\n" + r["reference"] if protocol == "llm-kick" else "") for r in records]
    prompts = [PROMPTS["summarize"].format(story=s) for s in stories]
    outputs = [o.strip() for o in engine.generate(prompts, SPEC.max_new_tokens, chat=SPEC.chat, progress=SPEC.name)]
    refs = [r["reference"] for r in records]
    scores: dict = dict(rouge(outputs, refs))
    buckets = sorted({r["bucket"] for r in records})
    scores["per_bucket"] = {}
    for b in buckets:
        idx = [i for i, r in enumerate(records) if r["bucket"] == b]
        scores["per_bucket"][b] = {**rouge([outputs[i] for i in idx], [refs[i] for i in idx]), "n": len(idx)}
    per_example = rouge_per_example(outputs, refs)
    judged = None
    if judge is not None:
        judged = judge.score(stories, outputs, progress="judge icsum")
        scores.update({f"judge_{k}": v for k, v in judged.means.items()})
        scores["judge_unparsable"] = judged.unparsable
    samples = [{"id": r["id"], "bucket": r["bucket"], "prompt": p, "output": o, "reference": r["reference"],
                "score": s, **({"judge": judged.per_example[i]} if judged else {})}
               for i, (r, p, o, s) in enumerate(zip(records, prompts, outputs, per_example))]
    return scores, samples
