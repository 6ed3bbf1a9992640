"""Instruction following (Vicuna-80 / MT-Bench single turn): reference-based ROUGE-L and diversity statistics,
plus an LLM judge (pairwise against the reference answer as LLM-KICK did, or single-answer) when one is given."""

from __future__ import annotations

from kick_hub.scoring.text import diversity, rouge, rouge_per_example
from kick_hub.tasks import TaskSpec, check_protocol
from kick_hub.tasks.prompts import PROMPTS

SPEC = TaskSpec(name="instruction-following", kind="instruction", metric="rougeL", knowledge=False, chat=True,
                description="Instruction following (Vicuna-80): ROUGE-L vs reference, distinct-n, optional judge.",
                max_new_tokens=256, protocols=("default", "llm-kick"), extra={"judge_prompt": "pairwise-v1"})


def prompt(record: dict) -> str:
    return PROMPTS["instruction"].format(question=record["question"])


def score(record: dict, output: str) -> float:
    return rouge_per_example([output.strip()], [record["reference"]])[0]


def run(engine, records: list[dict], protocol: str = "default", judge=None, **_) -> tuple[dict, list[dict]]:
    check_protocol(SPEC, protocol)
    prompts = [prompt(r) for r in records]
    outputs = [o.strip() for o in engine.generate(prompts, SPEC.max_new_tokens, chat=SPEC.chat, progress=SPEC.name)]
    refs = [r["reference"] for r in records]
    scores: dict = {"rougeL": rouge(outputs, refs)["rougeL"], **diversity(outputs)}
    judged = None
    if judge is not None:
        pairwise = "{reference}" in judge.prompt["template"]
        judged = judge.score([r["question"] for r in records], outputs, refs if pairwise else None,
                             progress="judge instructions")
        scores.update({f"judge_{k}": v for k, v in judged.means.items()})
        if pairwise and judged.means:
            scores["judge_relative"] = judged.means["answer"] / judged.means["reference"]
        scores["judge_unparsable"] = judged.unparsable
    samples = [{"id": r["id"], "category": r["category"], "prompt": p, "output": o, "reference": r["reference"],
                "score": s, **({"judge": judged.per_example[i]} if judged else {})}
               for i, (r, p, o, s) in enumerate(zip(records, prompts, outputs, rouge_per_example(outputs, refs)))]
    return scores, samples
