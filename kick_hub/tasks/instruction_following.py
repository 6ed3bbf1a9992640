"""Instruction following (Vicuna-80 / MT-Bench single turn): reference-based ROUGE-L and diversity statistics,
plus an LLM judge (pairwise against the reference answer as LLM-KICK did, or single-answer) when one is given.

Context: the instruction is the whole prompt and is never cut; one that does not fit the model's context with room
for ``max_new_tokens`` is not scored (sample ``skipped``, counted in the output's config). See docs/context.md.
"""

from __future__ import annotations

from kick_hub.backends import Backend
from kick_hub.scoring.text import diversity, rouge, rouge_per_example
from kick_hub.tasks import SPECS, check_protocol
from kick_hub.tasks.fit import fit_whole, kept, sample_fields, spread, warn_once

SPEC = SPECS["instruction-following"]


def prompt(record: dict) -> str:
    """The instruction as the model reads it (the chat template is applied by the engine)."""
    return SPEC.prompts["prompt"].format(question=record["question"])


def score(records: list[dict], outputs: list[str], protocol: str = "default") -> tuple[dict, list[dict]]:
    """``(results, per_example)`` of the answers ``outputs`` (stripped first) for ``records``: ROUGE-L against the
    reference answers and the answers' diversity (``scoring.text.diversity``: distinct-n), and per example
    ``rougeL``, ``score`` (the same) and ``output``. Raises ValueError as ``scoring.text.rouge`` does."""
    stripped = [o.strip() for o in outputs]
    refs = [r["reference"] for r in records]
    rouge_l = rouge_per_example(stripped, refs)
    return ({"rougeL": rouge(stripped, refs)["rougeL"], **diversity(stripped)},
            [{"rougeL": s, "score": s, "output": o} for s, o in zip(rouge_l, stripped)])


def run(engine: Backend, records: list[dict], protocol: str = "default", judge=None, **_) -> tuple[dict, list[dict]]:
    """ROUGE-L, diversity (and the judge's numbers, ``JudgeResult.scores``: a pairwise prompt asked in both orders)
    over the instructions that fit the context; samples carry the judge's fields (``JudgeResult.sample``), and those
    of instructions not scored carry ``skipped``."""
    check_protocol(SPEC, protocol)
    fitted = [fit_whole(engine, prompt(r), SPEC.max_new_tokens, SPEC.chat) for r in records]
    idx = kept(fitted)
    scored_records = [records[i] for i in idx]
    scores, per = score(scored_records, engine.generate([fitted[i] for i in idx], SPEC.max_new_tokens,
                                                        chat=SPEC.chat, progress=SPEC.id), protocol)
    outputs = [e["output"] for e in per]
    refs = [r["reference"] for r in scored_records]
    judged = None
    if judge is not None:
        judged = judge.score([r["question"] for r in scored_records], outputs, refs if judge.pairwise else None,
                             progress="judge instructions")
        scores.update(judged.scores())
    n = len(records)
    outputs_all, scores_all = spread(outputs, idx, n, ""), spread([e["score"] for e in per], idx, n)
    judged_all = spread([judged.sample(j) for j in range(len(idx))], idx, n) if judged else None
    warn_once(SPEC.id, engine, n, 0, n - len(idx), "")
    samples = []
    for i, r in enumerate(records):
        sample = {"id": r["id"], "category": r["category"], "prompt": prompt(r), "output": outputs_all[i],
                  "reference": r["reference"]}
        sample.update(sample_fields(fitted[i], False))  # never shortened: fits whole or is skipped
        if fitted[i] is not None:
            sample["score"] = scores_all[i]
            if judged:
                sample.update(judged_all[i])
        samples.append(sample)
    return scores, samples
