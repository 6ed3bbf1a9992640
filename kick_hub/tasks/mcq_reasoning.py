"""Multiple-choice reasoning (MMLU, 5-shot): pick the option letter.

Protocols: ``default`` compares the log-likelihood of the four letters after ``Answer:`` (one forward pass per
question, as lm-evaluation-harness); ``llm-kick`` generates one greedy token and reads its last character.
"""

from __future__ import annotations

from kick_hub.scoring.mcq import LETTERS, extract_letter, score_mcq
from kick_hub.tasks import TaskSpec, check_protocol
from kick_hub.tasks.prompts import PROMPTS, mcq_prompt

SPEC = TaskSpec(name="mcq-reasoning", kind="mcq", metric="accuracy", knowledge=True,
                description="Multiple-choice reasoning (MMLU 5-shot): accuracy overall, per subject and category.",
                max_new_tokens=1, extra={"num_fewshot": 5},
                hub_task="multiple-choice")


def build_prompt(record: dict, num_fewshot: int = 5) -> str:
    """MMLU prompt: subject header, ``num_fewshot`` solved dev items, then the question."""
    text = PROMPTS["mcq_header"].format(subject=record["subject"].replace("_", " "))
    for shot in record.get("fewshot", [])[:num_fewshot]:
        text += mcq_prompt(shot["question"], shot["options"], shot["answer"])
    return text + mcq_prompt(record["question"], record["options"])


def prompt(record: dict) -> str:
    return build_prompt(record, SPEC.extra["num_fewshot"])


def score(record: dict, output: str) -> float:
    """One generated answer's score: its option letter against the gold letter."""
    return float(extract_letter(output) == record["answer"])


def run(engine, records: list[dict], protocol: str = "default", num_fewshot: int | None = None,
        **_) -> tuple[dict, list[dict]]:
    check_protocol(SPEC, protocol)
    shots = SPEC.extra["num_fewshot"] if num_fewshot is None else num_fewshot
    prompts = [build_prompt(r, shots) for r in records]
    if protocol == "llm-kick":
        outputs = engine.generate(prompts, SPEC.max_new_tokens, progress=SPEC.name)
        preds = [extract_letter(o) for o in outputs]
    else:
        logprobs = engine.choice_logprobs(prompts, [f" {l}" for l in LETTERS], progress=SPEC.name)
        preds = [LETTERS[max(range(4), key=lp.__getitem__)] for lp in logprobs]
        outputs = preds
    scores = score_mcq(preds, [r["answer"] for r in records], [r["subject"] for r in records])
    samples = [{"id": r["id"], "prompt": p, "output": o, "reference": r["answer"], "score": s}
               for r, p, o, s in zip(records, prompts, outputs, scores.pop("per_example"))]
    return scores, samples
