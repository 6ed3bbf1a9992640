"""In-context summarization (CNN/DailyMail, three story lengths): ROUGE per bucket, plus judge scores per criterion
(coherence, consistency, fluency, relevance; 1-10) when a judge is given.

Context: a prompt that does not fit the model's context with room for ``max_new_tokens`` keeps the summarization
instruction whole and drops the story's tail (the lead of a news story carries most of its content); each sample
records ``truncated_tokens`` and the judge reads the story as the model saw it. A prompt that does not fit even with
an empty story is not scored (sample ``skipped``). See ``kick_hub.tasks.fit`` and docs/context.md.
"""

from __future__ import annotations

from kick_hub.backends import Backend
from kick_hub.scoring.text import ROUGE_TYPES, rouge, rouge_per_example
from kick_hub.tasks import SPECS, check_protocol
from kick_hub.tasks.fit import fit_passage, kept, sample_fields, spread, warn_once

SPEC = SPECS["icsum"]


def prompt(record: dict) -> str:
    """The story, then the summarization instruction."""
    return SPEC.prompts["prompt"].format(story=record["story"])


def score(records: list[dict], outputs: list[str], protocol: str = "default") -> tuple[dict, list[dict]]:
    """``(results, per_example)`` of the summaries ``outputs`` (stripped first) for ``records``: ROUGE-1/2/L
    overall and ``per_bucket`` (story length; each with its ``n``), and per example ``rouge1``, ``rouge2``,
    ``rougeL``, ``score`` (ROUGE-L) and ``output``. Raises ValueError as ``scoring.text.rouge`` does."""
    stripped = [o.strip() for o in outputs]
    refs = [r["reference"] for r in records]
    results: dict = dict(rouge(stripped, refs))
    results["per_bucket"] = {}
    for b in sorted({r["bucket"] for r in records}):
        sel = [j for j, r in enumerate(records) if r["bucket"] == b]
        results["per_bucket"][b] = {**rouge([stripped[j] for j in sel], [refs[j] for j in sel]), "n": len(sel)}
    per = {t: rouge_per_example(stripped, refs, t) for t in ROUGE_TYPES}
    return results, [{**{t: per[t][i] for t in ROUGE_TYPES}, "score": per["rougeL"][i], "output": o}
                     for i, o in enumerate(stripped)]


def run(engine: Backend, records: list[dict], protocol: str = "default", judge=None, **_) -> tuple[dict, list[dict]]:
    """ROUGE overall and per bucket (and the judge's numbers, ``JudgeResult.scores``) over the stories whose prompt
    fits the context; samples record ``truncated_tokens`` (story tokens dropped), ``shortened``, the judge's fields
    (``JudgeResult.sample``) and, for stories not scored, ``skipped``."""
    check_protocol(SPEC, protocol)
    # llm-kick's prompts kept the @highlight reference lines in the story; reproduce that only when asked.
    stories = [r["story"] + ("\n\n" + r["reference"] if protocol == "llm-kick" else "") for r in records]
    fitted = [fit_passage(engine, lambda s: SPEC.prompts["prompt"].format(story=s), s, SPEC.max_new_tokens, SPEC.chat)
              for s in stories]
    idx = kept([p for p, _, _ in fitted])
    prompts = [fitted[i][0] for i in idx]
    scored_records = [records[i] for i in idx]
    scores, per = score(scored_records, engine.generate(prompts, SPEC.max_new_tokens, chat=SPEC.chat,
                                                        progress=SPEC.id), protocol)
    outputs = [e["output"] for e in per]
    judged = None
    if judge is not None:
        judged = judge.score([fitted[i][1] for i in idx], outputs, progress="judge icsum")
        scores.update(judged.scores())
    n = len(records)
    outputs_all, per_all = spread(outputs, idx, n, ""), spread(per, idx, n)
    judged_all = spread([judged.sample(j) for j in range(len(idx))], idx, n) if judged else None
    scored = set(idx)
    shortened = [i in scored and fitted[i][2] > 0 for i in range(n)]
    warn_once(SPEC.id, engine, n, sum(shortened), n - len(idx), "story tail dropped")
    samples = []
    for i, r in enumerate(records):
        p = fitted[i][0]
        sample = {"id": r["id"], "bucket": r["bucket"],
                  "prompt": p if p is not None else SPEC.prompts["prompt"].format(story=stories[i]),
                  "output": outputs_all[i], "reference": r["reference"],
                  **sample_fields(p, shortened[i], truncated_tokens=fitted[i][2])}
        if p is not None:
            sample["score"] = per_all[i]["score"]
            sample["rouge1"] = per_all[i]["rouge1"]
            if judged:
                sample.update(judged_all[i])
        samples.append(sample)
    return scores, samples
