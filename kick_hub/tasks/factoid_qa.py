"""Closed-book factoid QA (FreebaseQA): recall a fact from the weights.

Context: the question is the whole prompt and is never cut; one that does not fit the model's context with room for
``max_new_tokens`` is not scored (sample ``skipped``, counted in the output's config). See docs/context.md.
"""

from __future__ import annotations

from kick_hub.backends import Backend
from kick_hub.scoring.qa import contains, exact_match, score_factoid
from kick_hub.tasks import SPECS, check_protocol
from kick_hub.tasks.fit import fit_whole, kept, sample_fields, spread, warn_once

SPEC = SPECS["factoid-qa"]


def prompt(record: dict) -> str:
    """The question as the model reads it."""
    return SPEC.prompts["prompt"].format(question=record["question"])


def score(record: dict, output: str) -> float:
    """One example's score under the default protocol (the Space scores outputs one by one)."""
    return exact_match(output, record["answers"])


def run(engine: Backend, records: list[dict], protocol: str = "default", **_) -> tuple[dict, list[dict]]:
    """Exact match (and LLM-KICK's containment) over the questions that fit the context; samples of questions not
    scored carry ``skipped``."""
    check_protocol(SPEC, protocol)
    fitted = [fit_whole(engine, prompt(r), SPEC.max_new_tokens) for r in records]
    idx = kept(fitted)
    prompts = [fitted[i] for i in idx]
    outputs = engine.generate(prompts, SPEC.max_new_tokens, SPEC.stop, progress=SPEC.id)
    # LLM-KICK matched against the decoded text, which still contains the prompt; an empty continuation is no
    # answer, so it is scored as "" (never a hit on an answer that the question itself contains).
    texts = [p + o if o.strip() else "" for p, o in zip(prompts, outputs)] if protocol == "llm-kick" else outputs
    scores = score_factoid(texts, [records[i]["answers"] for i in idx], protocol)
    n = len(records)
    outputs_all, scores_all = spread(outputs, idx, n, ""), spread(scores.pop("per_example"), idx, n)
    warn_once(SPEC.id, engine, n, 0, n - len(idx), "")
    samples = []
    for i, r in enumerate(records):
        sample = {"id": r["id"], "prompt": prompt(r), "output": outputs_all[i], "reference": r["answers"]}
        sample.update(sample_fields(fitted[i], False))  # never shortened: fits whole or is skipped
        if fitted[i] is not None:
            sample["score"] = scores_all[i]
            if "contains" in scores:  # each example's value of every reported metric (kick_hub.scoring.stats)
                sample["contains"] = contains(outputs_all[i], r["answers"])
        samples.append(sample)
    return scores, samples
